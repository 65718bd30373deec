"""Paths stored inside a home (registry rows, champion pointers) are relative to it, so a home can move.

A home is copied, moved or restored from a backup as one folder; whatever it records about its own files must
survive that. So the stored form of a path under the home is relative to the home, and it is resolved against
the home it is read from. Homes written before this rule hold absolute paths; those are migrated on read: an
absolute path that names a file of another home is taken to mean the same relative path under this one, when
that exists.
"""

from __future__ import annotations

from pathlib import Path


def to_stored(home: Path, path: Path) -> str:
    """``path`` as a home stores it: relative to ``home`` (POSIX separators) when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path(home).resolve()).as_posix()
    except ValueError:
        return str(path)


def from_stored(home: Path, stored: str) -> Path:
    """The path a home recorded as ``stored``, as it is under ``home`` now (see the module docstring)."""
    path, home = Path(stored), Path(home)
    if not path.is_absolute():
        return home / path
    if path.is_relative_to(home):
        return path
    parts = path.parts[1:]
    for start in range(len(parts)):  # longest tail first: the old home's own layout, not a shorter look-alike
        candidate = home.joinpath(*parts[start:])
        if candidate.exists():
            return candidate
    return path

