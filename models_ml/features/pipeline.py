"""The feature pipeline, composed once: land raw data, build and test features with dbt, count, record the run.

:func:`run_feature_pipeline` calls the steps in order; the Prefect flow (flows/feature_pipeline.py) passes
its tasks, which call these same step functions, and adds only logging and the run's artifact. Nothing
here knows about Prefect.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import uuid
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from types import ModuleType

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import Catalog, CatalogError, Domain, load_catalog
from models_ml.definitions.dbt_project import DbtRun
from models_ml.features.dbt_runner import DbtBuildError, build
from models_ml.features.landing import LandingReport
from models_ml.offline.store import (
    OfflineStore,
    OfflineStoreError,
    open_offline_store,
    opened,
)

RUNS_SCHEMA, RUNS_TABLE = "ops", "feature_pipeline_runs"
# Each domain's quarantine model (dbt macro `quarantined_rows`) is built as quarantine.quarantined_rows__<source>.
QUARANTINE_SCHEMA, QUARANTINE_PREFIX = "quarantine", "quarantined_rows__"


def domain_loader(settings: Settings, domain: str | None = None) -> tuple[Domain, ModuleType]:
    """A domain (by name; without one, the only domain there is) and its loader module.

    A domain is declared with its dbt sources (source-level ``meta.fti: {domain, loader}``); the loader is
    any importable module providing ``land_through(store, through, cache_dir)`` (land every batch through
    that day not landed yet; idempotent) and ``next_unlanded_day(store)``. So a new domain needs SQL, YAML
    and a loader, not a change here (README, "Add a domain").
    """
    found = load_catalog(settings).domain(domain)
    try:
        loader = importlib.import_module(found.loader)
    except ModuleNotFoundError as error:
        raise CatalogError(f"domain {found.name}: its loader module {found.loader!r} cannot be imported "
                           f"({error}); fix `meta.fti.loader` of its sources") from error
    missing = [name for name in ("land_through", "next_unlanded_day") if not callable(getattr(loader, name, None))]
    if missing:
        raise CatalogError(f"domain {found.name}: loader {found.loader} lacks {', '.join(missing)} "
                           f"(see the loader contract in README, \"Add a domain\")")
    return found, loader


# --------------------------------------------------------------------------------------------------
# The steps


def land_raw(
    settings: Settings, through: dt.date | None = None, domain: str | None = None
) -> tuple[dt.date, LandingReport]:
    """Land the domain's raw data through `through` (default: the next day not landed yet); returns the
    day landed through and what was landed."""
    _, loader = domain_loader(settings, domain)
    with opened(settings) as store:
        day = through or loader.next_unlanded_day(store)
        return day, loader.land_through(store, day, settings.home / "cache")


def build_features(settings: Settings, full_refresh: bool = False, select: str | None = None) -> DbtRun:
    """`dbt build`: staging, quarantine, features and labels, with their tests and unit tests.

    `select` limits the build to a dbt selection (a domain's: its sources and everything downstream); None
    builds everything.
    Raises DbtBuildError (naming each failing test with its failing rows) when anything fails; models
    downstream of a failure are skipped, so they are not published.
    """
    args = ["build"]
    if select:
        args += ["--select", *select.split()]
    if full_refresh:
        args.append("--full-refresh")
    return build(settings, args)


def relation_row_counts(store: OfflineStore, relations: list[str]) -> dict[str, int]:
    """Row counts of the existing relations among ``schema.name`` strings, either part optionally quoted
    (missing ones are left out)."""
    counts: dict[str, int] = {}
    for relation in relations:
        schema, name = (part.strip('"') for part in relation.split(".", 1))
        if store.exists(schema, name):
            counts[relation] = int(store.table(schema, name).count().to_pyarrow().as_py())
    return counts


def published_relations(catalog: Catalog, domains: Collection[str] | None = None) -> list[str]:
    """Every feature group, label and inference spine relation the catalog knows; with ``domains``, only
    those their sources feed."""
    if domains is not None:
        return sorted({r for d in domains for r in catalog.domain_relations.get(catalog.domain(d).name, ())})
    relations = {g.qualified_relation for g in catalog.groups.values()}
    relations |= {v.label.qualified_relation for v in catalog.views.values()}
    relations |= {v.inference_spine.qualified_relation for v in catalog.views.values() if v.inference_spine}
    return sorted(relations)


def quarantine_relations(store: OfflineStore) -> list[str]:
    """Every domain's quarantine table built in the warehouse, as ``schema.name``."""
    return sorted(f"{schema}.{name}" for schema, name in store.relations()
                  if schema == QUARANTINE_SCHEMA and name.startswith(QUARANTINE_PREFIX))


def quarantine_counts(store: OfflineStore) -> dict[str, int]:
    """Quarantined rows per `source_table/rule`, over every domain (empty before any was built)."""
    relations = quarantine_relations(store)
    if not relations:
        return {}
    union = " union all ".join(f"select source_table, rule_broken from {r}" for r in relations)
    rows = store.execute(f"select source_table || '/' || rule_broken, count(*) from ({union}) group by 1 order by 1")
    return {k: int(v) for k, v in rows}


def count_rows(settings: Settings, relations: list[str] | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """Rows per published relation (default: every one the catalog knows) and quarantined rows per rule,
    read-only; both empty before anything was landed."""
    relations = published_relations(load_catalog(settings)) if relations is None else relations
    try:
        store = open_offline_store(settings, read_only=True)
    except OfflineStoreError:  # no warehouse yet: nothing to count
        return {}, {}
    with store:
        return relation_row_counts(store, relations), quarantine_counts(store)


@dataclass
class FeaturePipelineRun:
    """What one feature-pipeline run did; one row of ops.feature_pipeline_runs."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    finished_at: dt.datetime | None = None
    status: str = "running"
    landed_through: str | None = None
    rows_landed: dict[str, int] = field(default_factory=dict)
    rows_built: dict[str, int] = field(default_factory=dict)
    rows_added: dict[str, int] = field(default_factory=dict)
    rows_quarantined: dict[str, int] = field(default_factory=dict)
    dbt_seconds: float = 0.0
    dbt_node_seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict:
        """What the flow returns."""
        return {"run_id": self.run_id, "landed_through": self.landed_through, "rows_landed": self.rows_landed,
                "rows_built": self.rows_built, "rows_quarantined": self.rows_quarantined}

    def as_markdown(self) -> str:
        lines = [
            f"# Feature pipeline run `{self.run_id}`: **{self.status}**",
            f"landed through {self.landed_through}; dbt {self.dbt_seconds:.1f} s "
            f"({self.dbt_node_seconds:.1f} s in SQL)",
            "",
            "| table | rows | added this run |",
            "|---|---:|---:|",
        ]
        for table, rows in sorted(self.rows_built.items()):
            lines.append(f"| {table} | {rows:,} | {self.rows_added.get(table, 0):,} |")
        lines += ["", "| raw table | rows landed |", "|---|---:|"]
        lines += [f"| {t} | {n:,} |" for t, n in sorted(self.rows_landed.items())]
        lines += ["", "| quarantined (source/rule) | rows |", "|---|---:|"]
        lines += [f"| {t} | {n:,} |" for t, n in sorted(self.rows_quarantined.items())]
        if self.error:
            lines += ["", "```", self.error, "```"]
        return "\n".join(lines)


def record_run(settings: Settings, run: FeaturePipelineRun) -> None:
    """Append the run to ops.feature_pipeline_runs (one row per run; re-recording a run replaces it)."""
    table = f"{RUNS_SCHEMA}.{RUNS_TABLE}"
    values = asdict(run)
    with opened(settings) as store:
        store.execute(f"create schema if not exists {RUNS_SCHEMA}")
        store.execute(
            f"""create table if not exists {table} (
                run_id varchar primary key, started_at timestamptz, finished_at timestamptz, status varchar,
                landed_through varchar, rows_landed json, rows_built json, rows_added json,
                rows_quarantined json, dbt_seconds double, dbt_node_seconds double, error varchar)"""
        )
        with store.transaction():
            store.execute(f"delete from {table} where run_id = ?", [run.run_id])
            store.execute(
                f"insert into {table} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    values["run_id"], values["started_at"], values["finished_at"], values["status"],
                    values["landed_through"], json.dumps(values["rows_landed"]), json.dumps(values["rows_built"]),
                    json.dumps(values["rows_added"]), json.dumps(values["rows_quarantined"]),
                    values["dbt_seconds"], values["dbt_node_seconds"], values["error"],
                ],
            )


# --------------------------------------------------------------------------------------------------
# The composition


@dataclass(frozen=True)
class FeatureSteps:
    """The steps :func:`run_feature_pipeline` calls; a flow passes its tasks, which wrap these same functions."""

    land: Callable[[Settings, dt.date | None, str | None], tuple[dt.date, LandingReport]] = land_raw
    build: Callable[[Settings, bool, str | None], DbtRun] = build_features
    count: Callable[[Settings], tuple[dict[str, int], dict[str, int]]] = count_rows


def run_feature_pipeline(
    settings: Settings,
    through: dt.date | None = None,
    *,
    full_refresh: bool = False,
    domain: str | None = None,
    steps: FeatureSteps = FeatureSteps(),
    on_finish: Callable[[FeaturePipelineRun], None] | None = None,
) -> FeaturePipelineRun:
    """Land `domain`'s raw data (default: the only domain there is) through `through` (default: the next day not landed), build the features
    its data feeds, and record the run in ops.feature_pipeline_runs, failed or not.

    A failing dbt test raises DbtBuildError after the run (status ``failed``, the error) is recorded;
    ``on_finish`` sees every run once it is recorded (the flow's artifact).
    """
    found, _ = domain_loader(settings, domain)  # a wrong name fails here, before anything runs or is recorded
    run = FeaturePipelineRun()
    before, _ = steps.count(settings)
    try:
        day, landed = steps.land(settings, through, found.name)
        run.landed_through, run.rows_landed = day.isoformat(), landed.rows_landed()
        dbt = steps.build(settings, full_refresh, found.dbt_selection)
        run.dbt_seconds, run.dbt_node_seconds = dbt.seconds, dbt.node_seconds()
        run.status = "succeeded"
    except DbtBuildError as error:
        run.status, run.error = "failed", str(error)
        raise
    finally:
        run.rows_built, run.rows_quarantined = steps.count(settings)
        run.rows_added = {t: n - before.get(t, 0) for t, n in run.rows_built.items()}
        run.finished_at = dt.datetime.now(dt.timezone.utc)
        record_run(settings, run)
        if on_finish is not None:
            on_finish(run)
    return run
