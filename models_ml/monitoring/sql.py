"""Small pieces of the SQL the monitoring statements are written in (standard SQL, run through the store)."""

from __future__ import annotations


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def exact_sum(expression: str) -> str:
    """``sum(expression)`` as fixed-point decimals, back as a double: exact, so the same in whatever order
    the engine's threads add the rows (a sum of doubles is not), and a re-run writes the same value."""
    return f"cast(sum(cast({expression} as decimal(38, 18))) as double)"
