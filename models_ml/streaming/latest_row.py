"""The latest-row form of a windowed model, derived from its compiled SQL.

The online store keeps one row per entity, its latest; the model computes a row per entity per moment, each
with trailing windows. Evaluating every window over every moment of the history to keep only the last row
costs a window pass per window expression (DuckDB: about 2 ms each even over a few thousand rows, and the
card model has eleven). For the latest row ``L`` of an entity, a frame ``RANGE BETWEEN x PRECEDING AND
CURRENT ROW`` holds exactly the entity's rows with ``T >= L - x`` (every row is at or before ``L``), so
``agg(v) OVER w`` equals ``agg(v) FILTER (WHERE T >= L - x)`` grouped by entity: one hash aggregate.

The rewrite is mechanical, on the parsed SQL, so the model stays the one definition: add a window to the
model and the latest-row form has it too. It applies only where the equality holds, and otherwise says why
(the caller then runs the model as it is):

- one select holds the window functions; all of them order-insensitive aggregates (sum, count, min, max,
  avg) over the same ``PARTITION BY`` and one ascending ``ORDER BY`` column, framed ``RANGE ... PRECEDING``
  (or unbounded) ``AND CURRENT ROW``;
- its other output columns hold no window and are taken from the entity's latest row;
- what reads its rows afterwards only projects them (no filter, join, aggregate or window that could keep
  an earlier row or see the dropped ones).

The model's unique grain (entity, event time) makes "the latest row" one row; with ties at the latest time
the full form's pick is arbitrary too.
"""

from __future__ import annotations

from collections import defaultdict

import sqlglot
from sqlglot import exp

_AGGREGATES = (exp.Sum, exp.Count, exp.Max, exp.Min, exp.Avg)
_LATEST = "__fti_latest"
_TIME = "__fti_time"
DIALECT = "duckdb"


class NotLatestRowShape(ValueError):
    """The model's SQL is not of a shape whose latest row the rewrite can compute exactly."""


def latest_row_form(sql: str) -> str:
    """``sql`` rewritten to give one row per entity, its latest, equal to that row of ``sql``'s output."""
    tree = sqlglot.parse_one(sql, read=DIALECT)
    windowed = _windowed_select(tree)
    _check_only_projected_after(tree, windowed)
    windowed.replace(_grouped(windowed))
    return tree.sql(DIALECT)


def _is_window_call(node: exp.Expression) -> bool:
    """A window function call, not the named definition of a WINDOW clause."""
    return isinstance(node, exp.Window) and not isinstance(node.this, exp.Identifier)


def _window_calls(node: exp.Expression) -> list[exp.Window]:
    return [w for w in node.find_all(exp.Window) if _is_window_call(w)]


def _windowed_select(tree: exp.Expression) -> exp.Select:
    selects = {id(w.parent_select): w.parent_select for w in _window_calls(tree)}
    if len(selects) != 1:
        raise NotLatestRowShape(f"window functions in {len(selects)} selects (the rewrite needs exactly one)")
    (select,) = selects.values()
    for clause in ("group", "having", "qualify", "distinct", "limit", "order"):
        if select.args.get(clause):
            raise NotLatestRowShape(f"the windowed select has a {clause.upper()} clause")
    if any(isinstance(e, exp.Star) for e in select.expressions):
        raise NotLatestRowShape("the windowed select selects *: name its columns")
    return select


def _spec(call: exp.Window, named: dict[str, exp.Window]) -> exp.Window:
    """The window a call uses: its own OVER (...) or the named definition it refers to."""
    if call.args.get("partition_by") or call.args.get("order") or call.args.get("spec"):
        if isinstance(call.args.get("alias"), exp.Identifier):
            raise NotLatestRowShape(f"window {call.sql(DIALECT)} refines a named window")
        return call
    name = call.args.get("alias")
    if not isinstance(name, exp.Identifier) or name.name not in named:
        raise NotLatestRowShape(f"window {call.sql(DIALECT)} names no window the select defines")
    return named[name.name]


def _frame_start(call: exp.Window, spec: exp.Window) -> exp.Expression | None:
    """How far the frame reaches back from the current row's order value (None: unbounded)."""
    frame = spec.args.get("spec")
    if frame is None:  # ORDER BY without a frame: RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        return None
    if (str(frame.args.get("kind", "")).upper() != "RANGE" or str(frame.args.get("end", "")).upper() != "CURRENT ROW"
            or frame.args.get("end_side") or frame.args.get("exclude")
            or str(frame.args.get("start_side", "")).upper() != "PRECEDING"):
        raise NotLatestRowShape(f"window {call.sql(DIALECT)}: only RANGE ... PRECEDING AND CURRENT ROW frames")
    start = frame.args["start"]
    return None if isinstance(start, str) and start.upper() == "UNBOUNDED" else start


def _grouped(select: exp.Select) -> exp.Select:
    """The windowed select as a grouped select over its own rows, one row per partition."""
    named = {w.this.name: w for w in select.args.get("windows") or []}
    calls = _window_calls(select)
    specs = [_spec(call, named) for call in calls]
    keys = {tuple(p.sql(DIALECT) for p in s.args.get("partition_by") or []) for s in specs}
    orders = {tuple((o.this.sql(DIALECT), bool(o.args.get("desc"))) for o in s.args["order"].expressions)
              if s.args.get("order") else () for s in specs}
    if len(keys) != 1 or () in keys:
        raise NotLatestRowShape(f"the windows partition by {sorted(keys)}: they must share one PARTITION BY")
    if len(orders) != 1 or len(next(iter(orders))) != 1 or next(iter(orders))[0][1]:
        raise NotLatestRowShape(f"the windows order by {sorted(orders)}: they must share one ascending column")
    partition = specs[0].args["partition_by"]
    order = specs[0].args["order"].expressions[0].this

    # The inner select keeps the original FROM/JOIN/WHERE scope, so qualified names still resolve; it
    # carries every value the outer one needs under a private name, and each partition's latest time.
    inner = select.copy()
    inner.set("windows", None)
    carried: list[exp.Expression] = []
    def carry(value: exp.Expression) -> exp.Column:
        carried.append(exp.alias_(value.copy(), f"__fti_v{len(carried)}"))
        return exp.column(f"__fti_v{len(carried) - 1}")
    keys_out = [carry(p) for p in partition]
    outer_columns: list[exp.Expression] = []
    for projection in select.expressions:
        name = projection.alias_or_name
        if not name:
            raise NotLatestRowShape(f"output {projection.sql(DIALECT)} has no name")
        value = projection.this if isinstance(projection, exp.Alias) else projection
        windows = _window_calls(value)
        if not windows:
            outer_columns.append(exp.alias_(exp.func("arg_max_null", carry(value), exp.column(_TIME)), name))
            continue
        loose = [c for c in value.find_all(exp.Column) if not any(c.find_ancestor(exp.Window) is w for w in windows)]
        if loose:
            raise NotLatestRowShape(f"output {name} mixes a window with the row's own {loose[0].sql(DIALECT)}")
        rewritten = value.transform(
            lambda node: _filtered(node, _spec(node, named), carry) if _is_window_call(node) else node)
        outer_columns.append(exp.alias_(rewritten, name))
    inner.set("expressions", [*carried, exp.alias_(order.copy(), _TIME)])
    # Each partition's latest time by a grouped max joined back: a partitioned window max costs a sort.
    group_keys = ", ".join(k.sql(DIALECT) for k in keys_out)
    columns = ", ".join(c.sql(DIALECT) for c in outer_columns)
    return sqlglot.parse_one(
        f"with __fti_rows as materialized ({inner.sql(DIALECT)}) select {columns} from __fti_rows "
        f"join (select {group_keys}, max({_TIME}) as {_LATEST} from __fti_rows group by {group_keys}) "
        f"as __fti_latest_times using ({group_keys}) group by {group_keys}", read=DIALECT)


def _filtered(call: exp.Window, spec: exp.Window, carry) -> exp.Expression:
    """``agg(v) OVER w`` as ``agg(v') FILTER (WHERE time >= latest - reach)`` over the carried values."""
    aggregate = call.this
    if not isinstance(aggregate, _AGGREGATES) or aggregate.args.get("ignore_nulls"):
        raise NotLatestRowShape(f"window {call.sql(DIALECT)}: only sum, count, min, max and avg windows")
    argument = aggregate.this
    if isinstance(argument, exp.Distinct):
        raise NotLatestRowShape(f"window {call.sql(DIALECT)}: no DISTINCT aggregates")
    outer = aggregate.copy()
    if argument is not None and not isinstance(argument, exp.Star):
        outer.set("this", carry(argument))
    start = _frame_start(call, spec)
    if start is None:
        return outer
    reach = exp.GTE(this=exp.column(_TIME), expression=exp.Sub(this=exp.column(_LATEST), expression=exp.paren(start.copy())))
    return exp.Filter(this=outer, expression=exp.Where(this=reach))


def _check_only_projected_after(tree: exp.Expression, windowed: exp.Select) -> None:
    """Every select reading the windowed rows (through CTEs) only projects them."""
    cte = windowed.parent if isinstance(windowed.parent, exp.CTE) else None
    if cte is None:
        if windowed is not tree and windowed.find_ancestor(exp.Subquery) is not None:
            raise NotLatestRowShape("the windowed select is a subquery: make it a CTE")
        return
    readers: dict[str, list[exp.Expression]] = defaultdict(list)
    for select in tree.find_all(exp.Select):
        for table in select.find_all(exp.Table):
            if table.find_ancestor(exp.Select) is select:
                readers[table.name].append(select)
    pending, seen = [cte.alias], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for reader in readers.get(name, []):
            for clause in ("joins", "where", "group", "having", "qualify", "distinct", "limit", "windows"):
                if reader.args.get(clause):
                    raise NotLatestRowShape(f"a select reading {name} has a {clause.upper()} clause")
            if any(e.find(exp.AggFunc, exp.Window) for e in reader.expressions):
                raise NotLatestRowShape(f"a select reading {name} aggregates or windows its rows")
            if isinstance(reader.parent, exp.CTE):
                pending.append(reader.parent.alias)
            elif reader is not tree:
                raise NotLatestRowShape(f"{name} is read by a {type(reader.parent).__name__}")
