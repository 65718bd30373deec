"""Champion against challenger on the outcomes that have arrived: the rows, the test, the verdict.

Three places hold a challenger's scores, and each says which test applies (:mod:`.statistics`):

* **shadow**: the prediction log's ``shadow`` rows, each paired with the champion answer it shadowed
  (``shadow_of``: the same request, scored by both) -> the **paired** test;
* **batch**: ``predictions.<model>__challenger`` beside ``predictions.<model>``, paired on the spine rows
  both scored (the label's entity keys and event time) -> the **paired** test;
* **canary**: the log's ``canary`` rows (the challenger answered its share of entities) against the
  champion's answers over the same span, different entities -> the **sequential** test (mSPRT), one look
  per UTC day of the prediction time, so that looking daily keeps its error rate.

Outcomes come from the view's label model by the one join that says how a prediction finds its outcome
(:func:`models_ml.inference.batch.outcomes.join_outcomes`); rows whose outcome has not arrived are left out
and counted. **One outcome is one observation**: an entity requested many times online counts once per arm
(its latest prediction); a load test's repeats of the same request would otherwise pass for evidence.
The metric compared is each row's log loss (a proper score: it rewards calibration and ranking), with the
ROC-AUC and Brier score of each arm beside it and each version's test-split figures from the registry.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models_ml.core.settings import Settings
from models_ml.decisions import statistics as st
from models_ml.definitions.catalog import FeatureView, load_catalog
from models_ml.definitions.pinning import pin_view
from models_ml.inference.batch.outcomes import join_outcomes
from models_ml.inference.batch.predict import SCORE, predictions_relation
from models_ml.inference.online.prediction_log import CANARY, CHAMPION, SHADOW, read_prediction_log
from models_ml.offline.store import OfflineStore, opened
from models_ml.training import registry
from models_ml.training.evaluate import brier_score, roc_auc

BATCH = "batch"
SOURCES = (SHADOW, CANARY, BATCH)
PAIRED_TEST, SEQUENTIAL_TEST = "paired t test and bootstrap", "mSPRT (always valid under daily looks)"
_UTC = dt.timezone.utc
_A, _B, _Y, _AT = "__fti_champion", "__fti_challenger", "__fti_y", "__fti_at"
_SCORED_A, _SCORED_B = "__fti_champion_scored_at", "__fti_challenger_scored_at"
SCORED_APART = dt.timedelta(hours=1)  # batch pairs scored further apart than this get a warning


class ComparisonError(ValueError):
    """Nothing to compare (no challenger, no rows of this source); the message says what to do."""


@dataclass(frozen=True)
class Arm:
    """One model's labelled rows: its version, rows scored and labelled, and its metrics on them."""

    version: int
    scored: int
    labelled: int
    log_loss: float | None
    roc_auc: float | None
    brier: float | None
    test_split: Mapping[str, float | None]  # the version's figures on its test split (registry)


@dataclass(frozen=True)
class Look:
    """The comparison as it stood at the end of one UTC day: rows so far, the difference and its interval."""

    day: dt.date
    champion_rows: int
    challenger_rows: int
    difference: float
    interval: st.Interval
    significant: bool


@dataclass(frozen=True)
class Comparison:
    model_name: str
    source: str
    test: str
    champion: Arm
    challenger: Arm
    result: st.PairedResult | st.SequentialResult
    looks: list[Look]
    interval: st.Interval  # the one the verdict reads
    verdict: str
    reason: str
    spans: dict[str, Any] = field(default_factory=dict)  # first and last prediction time compared
    warnings: tuple[str, ...] = ()  # what weakens the comparison (e.g. batch pairs scored far apart)


@dataclass(frozen=True)
class _Rows:
    """Labelled rows as arrays: prediction time, outcome, score per arm (paired: one row both scored)."""

    at: np.ndarray
    y: np.ndarray
    score: np.ndarray


# -- the rows -------------------------------------------------------------------------------------------


def _label_view(settings: Settings, champion: registry.ModelVersion) -> FeatureView:
    return pin_view(load_catalog(settings), champion)


def _labelled(store: OfflineStore, view: FeatureView, scored: ir.Table, scores: list[str]) -> pa.Table:
    """``scored`` (entity keys, ``_AT``, score columns) joined to its outcomes, the rows with one only."""
    label = view.label
    joined = join_outcomes(store, view, scored, lambda outcomes: {_Y: outcomes[label.target].cast("float64")})
    joined = joined.filter(joined[_Y].notnull())
    return store.to_arrow(joined.select(_AT, _Y, *scores).order_by(_AT))


def _batch_pairs(store: OfflineStore, view: FeatureView, model_name: str, champion: int,
                 challenger: int) -> tuple[pa.Table, int, int]:
    label = view.label
    keys = [*label.entity, label.event_time]
    tables, built = [], store.relations()
    for alias, version, column, when in ((registry.CHAMPION, champion, _A, _SCORED_A),
                                         (registry.CHALLENGER, challenger, _B, _SCORED_B)):
        relation = predictions_relation(model_name, alias)
        if relation not in built:
            raise ComparisonError(f"{model_name}: no batch predictions of the {alias} ({relation[0]}.{relation[1]}); "
                                  f"score a window with `fti predict {model_name} --alias {alias} ...` first")
        table = store.table(*relation)
        table = table.filter(table.model_version == version)
        tables.append(table.select(*keys, **{column: table[SCORE], when: table.scored_at}))
    counts = [int(store.to_arrow(t.aggregate(n=t.count()))["n"][0].as_py()) for t in tables]
    pairs = tables[0].join(tables[1], keys)
    pairs = pairs.select(*label.entity, **{_AT: pairs[label.event_time], _A: pairs[_A], _B: pairs[_B],
                                           _SCORED_A: pairs[_SCORED_A], _SCORED_B: pairs[_SCORED_B]})
    return _labelled(store, view, pairs, [_A, _B, _SCORED_A, _SCORED_B]), counts[0], counts[1]


def _scored_apart(pairs: pa.Table) -> str | None:
    """A warning when pairs were scored far apart: a point-in-time join run later sees data that landed
    late (event time before the prediction time, loaded after the first run), so its features differ and
    the pair no longer compares the models alone."""
    if pairs.num_rows == 0:
        return None
    a = pairs[_SCORED_A].cast(pa.timestamp("us", tz="UTC")).to_numpy(zero_copy_only=False)
    b = pairs[_SCORED_B].cast(pa.timestamp("us", tz="UTC")).to_numpy(zero_copy_only=False)
    apart = np.abs(a - b) > np.timedelta64(int(SCORED_APART.total_seconds()), "s")
    if not apart.any():
        return None
    return (f"{int(apart.sum()):,} of {pairs.num_rows:,} pairs were scored more than {SCORED_APART} apart: the later "
            f"run's features include data that landed in between, so those pairs compare more than the models; "
            f"score the window with both aliases one after the other (`fti predict --alias champion`, then "
            f"`--alias challenger`)")


def _log_rows(settings: Settings, model_name: str) -> pa.Table:
    path = settings.prediction_log_path
    if not path.exists():
        raise ComparisonError(f"{model_name}: no prediction log at {path}: serve the challenger first "
                              f"(`fti serve --shadow` or `--canary SHARE`)")
    log = read_prediction_log(path)
    return log.filter(pc.equal(log["model_name"], model_name))


def _arm(log: pa.Table, variant: str, version: int) -> pa.Table:
    return log.filter(pc.and_(pc.equal(log["variant"], variant), pc.equal(log["model_version"], version)))


def _latest_per_entity(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each entity (rows come oldest first)."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest[row["entity"]] = row
    return list(latest.values())


def _scored_memtable(store: OfflineStore, view: FeatureView, rows: list[dict[str, Any]],
                     scores: list[str]) -> ir.Table:
    """Log rows as a table the engine joins to outcomes: entity keys typed as the label's, ``_AT``, scores."""
    label = view.label
    outcomes = store.table(label.schema, label.relation)
    entities = [json.loads(r["entity"]) for r in rows]
    data: dict[str, Any] = {k: [e.get(k) for e in entities] for k in label.entity}
    data[_AT] = pa.array([dt.datetime.fromisoformat(r["as_of"]).astimezone(_UTC) for r in rows],
                         pa.timestamp("us", tz="UTC"))
    for column in scores:
        data[column] = pa.array([r[column] for r in rows], pa.float64())
    table = ibis.memtable(pa.table(data))
    return table.mutate(**{k: table[k].cast(outcomes[k].type()) for k in label.entity})


def _shadow_pairs(store: OfflineStore, view: FeatureView, log: pa.Table, champion: int,
                  challenger: int) -> tuple[pa.Table, int, int]:
    answers = {r["prediction_id"]: r for r in _arm(log, CHAMPION, champion).to_pylist()}
    shadows = _arm(log, SHADOW, challenger).to_pylist()
    pairs = [{**answers[s["shadow_of"]], _A: answers[s["shadow_of"]]["score"], _B: s["score"]}
             for s in shadows if s["shadow_of"] in answers]
    if not pairs:
        raise ComparisonError(f"no shadow scores of v{challenger} paired with answers of v{champion} in the "
                              f"prediction log: serve with `fti serve --shadow` while v{challenger} is challenger")
    pairs = _latest_per_entity(pairs)
    return _labelled(store, view, _scored_memtable(store, view, pairs, [_A, _B]), [_A, _B]), len(pairs), len(pairs)


def _canary_arms(store: OfflineStore, view: FeatureView, log: pa.Table, champion: int,
                 challenger: int) -> tuple[pa.Table, pa.Table, int, int]:
    canary = _arm(log, CANARY, challenger)
    if canary.num_rows == 0:
        raise ComparisonError(f"no canary answers of v{challenger} in the prediction log: serve with "
                              f"`fti serve --canary SHARE` while v{challenger} is challenger")
    first, last = canary["requested_at"][0].as_py(), canary["requested_at"][-1].as_py()
    answers = _arm(log, CHAMPION, champion)
    answers = answers.filter(pc.and_(pc.greater_equal(answers["requested_at"], first),
                                     pc.less_equal(answers["requested_at"], last)))
    arms = []
    for table, column in ((answers, _A), (canary, _B)):
        rows = _latest_per_entity([{**r, column: r["score"]} for r in table.to_pylist()])
        arms.append((_labelled(store, view, _scored_memtable(store, view, rows, [column]), [column])
                     if rows else None, len(rows)))
    (a, na), (b, nb) = arms
    if a is None:
        raise ComparisonError(f"no champion answers of v{champion} while the canary ran ({first} to {last})")
    return a, b, na, nb


# -- the test -------------------------------------------------------------------------------------------


def _arrays(table: pa.Table, column: str) -> _Rows:
    at = table[_AT].cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us")).to_numpy()
    return _Rows(at.astype("datetime64[D]"), table[_Y].to_numpy(), table[column].to_numpy())


def _days(*rows: _Rows) -> list[np.datetime64]:
    return sorted(set().union(*(set(r.at.tolist()) for r in rows)))


def _paired(a: _Rows, b: _Rows, alpha: float) -> tuple[st.PairedResult, list[Look], st.Interval]:
    la, lb = st.row_log_loss(a.y, a.score), st.row_log_loss(b.y, b.score)
    result = st.paired_test(la, lb, alpha=alpha)
    looks = []
    for day in _days(a):
        upto = a.at <= np.datetime64(day)
        look = st.paired_test(la[upto], lb[upto], alpha=alpha, resamples=0)
        looks.append(Look(day, int(upto.sum()), int(upto.sum()), look.difference, look.t_interval, look.significant))
    hull = st.Interval(min(result.t_interval.low, result.bootstrap_interval.low),
                       max(result.t_interval.high, result.bootstrap_interval.high))
    return result, looks, hull


def _sequential(a: _Rows, b: _Rows, alpha: float, mixture_sd: float
                ) -> tuple[st.SequentialResult, list[Look], st.Interval, bool]:
    la, lb = st.row_log_loss(a.y, a.score), st.row_log_loss(b.y, b.score)
    results, days = [], _days(a, b)
    for day in days:
        d = np.datetime64(day)
        results.append(st.msprt(la[a.at <= d], lb[b.at <= d], alpha=alpha, mixture_sd=mixture_sd))
    intervals = st.running_intersection([r.interval for r in results])
    crossed, looks = False, []
    for day, r, interval in zip(days, results, intervals):
        crossed = crossed or r.significant  # the test stops the first time the ratio crosses 1/alpha
        looks.append(Look(day, r.champion_rows, r.challenger_rows, r.difference, interval, crossed))
    return results[-1], looks, intervals[-1], crossed


def _metrics(version: int, scored: int, rows: _Rows, test_split: Mapping[str, float | None]) -> Arm:
    labelled = len(rows.y)
    return Arm(version, scored, labelled,
               float(st.row_log_loss(rows.y, rows.score).mean()) if labelled else None,
               roc_auc(rows.y, rows.score) if labelled else None,
               brier_score(rows.y, rows.score) if labelled else None, test_split)


def _test_split(settings: Settings, model_name: str, version: int) -> dict[str, float | None]:
    metrics = registry.get_metrics(settings, model_name, version).get("test", {})
    return {k: metrics.get(k) for k in ("log_loss", "roc_auc", "brier")}


def _reason(verdict: str, rows: int, interval: st.Interval, significant: bool) -> str:
    if rows < st.MIN_ROWS:
        return f"{rows} rows with an outcome; at least {st.MIN_ROWS} per model are needed"
    if verdict == st.PROMOTE:
        return "the challenger's log loss is lower, the whole interval below zero"
    if verdict == st.KEEP:
        return "the challenger's log loss is higher, the whole interval above zero"
    if not significant:
        return "the difference is not significant yet: wait for more outcomes"
    return "significant, but the interval still spans zero"


def compare(settings: Settings, model_name: str, source: str | None = None, *, alpha: float = 0.05,
            mixture_sd: float = 0.01) -> Comparison:
    """Champion against challenger of ``model_name`` on ``source`` (shadow, canary or batch; None: the first of
    them that has rows, in that order)."""
    if source is not None and source not in SOURCES:
        raise ComparisonError(f"source {source!r} is not one of {', '.join(SOURCES)}")
    aliases = registry.get_aliases(settings, model_name)
    if registry.CHAMPION not in aliases or registry.CHALLENGER not in aliases:
        raise ComparisonError(f"{model_name} needs a champion and a challenger to compare (aliases: "
                              f"{', '.join(f'{k} v{v}' for k, v in aliases.items()) or 'none'}); make one "
                              f"challenger with `fti models promote {model_name} N --alias challenger`")
    champion, challenger = aliases[registry.CHAMPION], aliases[registry.CHALLENGER]
    view = _label_view(settings, registry.get_version(settings, model_name, champion))
    splits = {v: _test_split(settings, model_name, v) for v in (champion, challenger)}  # before the store opens
    errors = []
    with opened(settings, read_only=True) as store:
        for candidate in [source] if source else list(SOURCES):
            try:
                gathered = _gather(settings, store, view, model_name, candidate, champion, challenger)
            except ComparisonError as error:
                errors.append(str(error))
                continue
            return _decide(model_name, candidate, champion, challenger, splits, gathered, alpha, mixture_sd)
    raise ComparisonError(errors[0] if len(errors) == 1 else
                          f"{model_name}: nothing to compare v{champion} and v{challenger} on: " + "; ".join(errors))


def _gather(settings: Settings, store: OfflineStore, view: FeatureView, model_name: str, source: str,
            champion: int, challenger: int) -> tuple[_Rows, _Rows, int, int, tuple[str, ...]]:
    if source == BATCH:
        pairs, na, nb = _batch_pairs(store, view, model_name, champion, challenger)
        apart = _scored_apart(pairs)
        return _arrays(pairs, _A), _arrays(pairs, _B), na, nb, (apart,) if apart else ()
    log = _log_rows(settings, model_name)
    if source == SHADOW:
        pairs, na, nb = _shadow_pairs(store, view, log, champion, challenger)
        return _arrays(pairs, _A), _arrays(pairs, _B), na, nb, ()
    a, b, na, nb = _canary_arms(store, view, log, champion, challenger)
    return _arrays(a, _A), _arrays(b, _B) if b is not None else _Rows(*(np.array([]),) * 3), na, nb, ()


def _decide(model_name: str, source: str, champion: int, challenger: int,
            splits: Mapping[int, Mapping[str, float | None]], gathered: tuple[_Rows, _Rows, int, int, tuple[str, ...]],
            alpha: float, mixture_sd: float) -> Comparison:
    a, b, na, nb, warnings = gathered
    if source == CANARY:
        result, looks, interval, significant = _sequential(a, b, alpha, mixture_sd)
        test, rows = SEQUENTIAL_TEST, min(len(a.y), len(b.y))
    else:
        result, looks, interval = _paired(a, b, alpha)
        test, rows, significant = PAIRED_TEST, len(a.y), result.significant
    verdict = st.verdict(significant, interval, rows)
    spans = {"first": str(looks[0].day) if looks else None, "last": str(looks[-1].day) if looks else None}
    return Comparison(model_name, source, test,
                      _metrics(champion, na, a, splits[champion]), _metrics(challenger, nb, b, splits[challenger]),
                      result, looks, interval, verdict, _reason(verdict, rows, interval, significant), spans,
                      warnings)
