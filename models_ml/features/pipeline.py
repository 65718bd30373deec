"""The feature pipeline, composed once: land raw data, build and test features with dbt, count, record the run.

:func:`run_feature_pipeline` calls the steps in order; the Prefect flow (flows/feature_pipeline.py) passes
its tasks, which call these same step functions, and adds only logging and the run's artifact. Nothing
here knows about Prefect. A run holds the home's lock (models_ml.core.home_lock) throughout, so it is the
only writer of the warehouse while it lands and builds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import importlib.metadata
import json
import os
import socket
import uuid
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType

from models_ml.core.home_lock import hold_home
from models_ml.core.settings import Settings
from models_ml.definitions.catalog import Catalog, CatalogError, Domain, load_catalog
from models_ml.definitions.dbt_project import DbtRun
from models_ml.features.dbt_runner import DbtBuildError, build
from models_ml.features.inbox import inbox_dir, land_inbox
from models_ml.features.row_checks import CHECK_WRITTEN_ROWS_VAR, row_rule_exclusions
from models_ml.features.landing import (
    RAW_SCHEMA,
    LandingReport,
    landed_by,
    ledger_by_table,
    on_behalf_of,
    unchanged_tables,
)
from models_ml.offline.store import (
    OfflineStore,
    OfflineStoreError,
    open_offline_store,
    opened,
)

RUNS_SCHEMA, RUNS_TABLE = "ops", "feature_pipeline_runs"
# Each domain's quarantine model (dbt macro `quarantined_rows`), a view: quarantine.quarantined_rows__<source>.
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
    settings: Settings, through: dt.date | None = None, domain: str | None = None, run_id: str | None = None
) -> tuple[dt.date, LandingReport]:
    """Land the domain's raw data through `through` (default: the next day not landed yet), each batch
    credited to run `run_id` in the ledger, then the files waiting in the domain's landing inbox (a streaming
    consumer's hand-offs); returns the day landed through and what was landed."""
    found, loader = domain_loader(settings, domain)
    with opened(settings) as store, on_behalf_of(store, run_id) if run_id else contextlib.nullcontext():
        day = through or loader.next_unlanded_day(store)
        report = loader.land_through(store, day, settings.home / "cache")
        report.batches.extend(land_inbox(store, inbox_dir(settings, found.name)).batches)
        return day, report


# dbt var: an incremental run's feature-group tests check only the rows it wrote (dbt macros/test_window.sql).
TEST_WRITTEN_WINDOW_VAR = "fti_test_written_window"


@dataclass(frozen=True)
class BuildScope:
    """What a build builds and checks again, decided from the domain's latest finished run (README, "What a
    daily run tests" and "What a daily run builds")."""

    # The latest finished run succeeded on these same project files: every row outside this run's window
    # passed these data tests, and the unit tests passed (they read fixtures and SQL, never the warehouse).
    proven: bool = False
    # With the same project files: the dbt selection of what data landed since can change (no view, every
    # test downstream); None builds the whole selection asked for.
    fed_by_new_data: str | None = None
    # Proven, on DuckDB: the `--exclude` terms of the row rules the build leaves out of dbt's selection, each
    # checked inside the model that writes its rows, before that model commits (models_ml.features.row_checks).
    row_rules_checked_in_models: tuple[str, ...] = ()


def build_scope(settings: Settings, select: str | None, full_refresh: bool = False) -> BuildScope:
    """A daily build of a domain whose latest finished run succeeded on the same project files tests only
    the rows it writes, runs no unit test (a unit test reads its fixtures and the model's SQL, never the
    warehouse, so it passes again) and builds only what data landed since that run can change
    (:func:`changed_by_landing`; a raw table is unchanged when its rows in the ledger are those the run
    recorded before it built). A full refresh, a build after a failed or killed run or on changed project
    files (a changed view rewrites its old rows; a new test never read them), or of a selection that is not
    one domain's, checks everything."""
    catalog = load_catalog(settings)
    domains = [d for d in catalog.domains.values() if d.dbt_selection == select]
    if full_refresh or len(domains) != 1:
        return BuildScope()
    with opened(settings, read_only=True) as store:
        if not store.exists(RUNS_SCHEMA, RUNS_TABLE):
            return BuildScope()
        recorded = "raw_tables" if "raw_tables" in (store.columns(RUNS_SCHEMA, RUNS_TABLE) or ()) else "null"
        latest = store.execute(f"select status, raw_state, {recorded} from {RUNS} where domain = ? "
                               f"and status <> 'running' order by started_at desc limit 1", [domains[0].name])
        if not latest or latest[0][0] != "succeeded":
            return BuildScope()
        if project_of(latest[0][1]) != project_checksum(settings):
            # changed files: a changed view recomputes every old row, and a new or tightened test never
            # read the old rows, so nothing outside this run's window is proven
            return BuildScope()
        built_from = json.loads(latest[0][2] or "null") or {}  # null: recorded before runs recorded them
        quiet = unchanged_tables(ledger_by_table(store), built_from) if built_from else set()
    return BuildScope(proven=True, fed_by_new_data=changed_by_landing(catalog, domains[0], quiet),
                      row_rules_checked_in_models=row_rules_checked_in_models(settings, catalog, domains[0]))


def row_rules_checked_in_models(settings: Settings, catalog: Catalog, domain: Domain) -> tuple[str, ...]:
    """The row rules a daily build of `domain` checks inside its models (DuckDB only: a failed check rolls
    the model's rows back), as `--exclude` terms; () when some test cannot be checked that way."""
    if settings.engine != "duckdb":
        return ()
    manifest = json.loads(settings.manifest_path.read_text())
    feeding = {(t.source, t.name) for t in catalog.source_tables
               if domain.name in t.feeds or t.source in domain.sources}
    sources = [uid for uid, node in (manifest.get("sources") or {}).items()
               if (node.get("source_name"), node.get("name")) in feeding]
    return row_rule_exclusions(manifest, sources)


def changed_by_landing(catalog: Catalog, domain: Domain, quiet_tables: Collection[str]) -> str | None:
    """The part of `domain`'s build that data landed since its last successful run can change, as a dbt
    selection (views included: :func:`dbt_build_command` leaves them out); None for the whole domain, when
    no table of the domain is quiet, or when no table that feeds it changed at all.

    It is everything downstream of a source table that feeds the domain and got rows since (or that
    landing does not track: an external group, a table written some other way), as far as it is the
    domain's. A model upstream only of `quiet_tables` (raw tables with no row landed since that run built)
    would read what it read then with the same SQL, so it would write what it wrote and its tests
    would pass as they passed; a view, with the same project files, is the view that run left, and the
    tests on it run when its data changed. This holds for models that read only their inputs (no clock, no
    randomness), as every model here does (README, "What a daily run builds")."""
    own = domain.dbt_selection.split()
    changed: dict[str, list[str]] = {}  # source -> selectors of its tables that feed the domain, changed
    feeding: dict[str, int] = {}  # source -> how many of its tables feed the domain
    leaves_out = False
    for table in catalog.source_tables:
        if domain.name not in table.feeds:
            continue
        feeding[table.source] = feeding.get(table.source, 0) + 1
        if table.schema == RAW_SCHEMA and table.identifier in quiet_tables:
            leaves_out = leaves_out or table.source in domain.sources
        else:
            changed.setdefault(table.source, []).append(table.selector)
    terms = []
    for source, selectors in changed.items():
        # a source whose every feeding table changed is one term: dbt's selection costs time per term
        parts = [f"source:{source}"] if len(selectors) == feeding[source] else selectors
        if source in domain.sources:
            terms += [f"{part}+" for part in parts]
        else:  # another domain's table, or one landing does not track: what of this domain it feeds
            terms += [f"{part}+,{term}" for part in parts for term in own]
    if not leaves_out or not terms:
        return None
    return " ".join(terms)


def dbt_build_command(
    select: str | None, full_refresh: bool, scope: BuildScope
) -> tuple[list[str], dict[str, bool] | None]:
    """The arguments and vars of the pipeline's `dbt build` (the benchmark times the same command).

    `--no-write-json`: the build writes no manifest.json or run_results.json (dbt writes the manifest twice
    per invocation, a large share of a daily run); the outcomes come back in-process, and the catalog
    re-parses whenever the project is newer than its manifest (models_ml.definitions.catalog.load_catalog).
    A build of only what new data changes (`scope.fed_by_new_data`) selects that, leaves views out and
    turns dbt's indirect test selection off: every test downstream is in the selection already, and
    excluding a view must not exclude the tests on it. `scope.row_rules_checked_in_models` leaves the row
    rules out too, and each model checks those of its rows before it commits (dbt macros/row_checks.sql).
    """
    args = ["build"]
    excluded = ["config.materialized:view"] if scope.fed_by_new_data else []
    excluded += scope.row_rules_checked_in_models
    if scope.fed_by_new_data or select:
        args += ["--select", *(scope.fed_by_new_data or select or "").split()]
    if excluded:
        args += ["--exclude", *excluded]
    if scope.fed_by_new_data:
        args += ["--indirect-selection", "empty"]
    if full_refresh:
        args.append("--full-refresh")
    args.append("--no-write-json")
    if not scope.proven:
        return args, None
    args += ["--exclude-resource-type", "unit_test"]
    # Every proven build passes the same vars, whatever it leaves out: changed vars make dbt parse the whole
    # project again (seconds), and a model's check runs only the tests left out of its build.
    return args, {TEST_WRITTEN_WINDOW_VAR: True, CHECK_WRITTEN_ROWS_VAR: True}


def build_features(settings: Settings, full_refresh: bool = False, select: str | None = None) -> DbtRun:
    """`dbt build`: staging, quarantine, features and labels, with their tests and unit tests.

    `select` limits the build to a dbt selection (a domain's: its sources and everything downstream); None
    builds everything. An incremental build of a domain whose previous run succeeded tests only the
    feature rows it wrote; on the same project files it also skips the unit tests, which passed, and builds
    only what data landed since feeds (:func:`build_scope`). Any other build builds the whole selection,
    tests whole tables and runs every unit test.
    Raises DbtBuildError (naming each failing test with its failing rows) when anything fails; models
    downstream of a failure are skipped, so they are not published.
    """
    args, dbt_vars = dbt_build_command(select, full_refresh, build_scope(settings, select, full_refresh))
    return build(settings, args, dbt_vars)


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
    relations = {g.qualified_relation for g in catalog.groups.values() if not g.external}  # external: not built
    relations |= {v.label.qualified_relation for v in catalog.views.values()}
    relations |= {v.inference_spine.qualified_relation for v in catalog.views.values() if v.inference_spine}
    return sorted(relations)


def quarantine_relations(store: OfflineStore) -> list[str]:
    """Every domain's quarantine view built in the warehouse, as ``schema.name``."""
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
    """What one feature-pipeline run did; one row of ops.feature_pipeline_runs.

    ``rows_landed``, ``rows_added`` and ``rows_quarantined`` count what this run did (new raw rows, rows
    added to each published table, rows newly quarantined); ``rows_built`` and ``quarantined_total`` are
    the tables' sizes after it. ``build`` says whether dbt ran ("built", "failed", or "skipped: …" with the
    reason). A run is recorded as ``running`` when it starts, so one that is killed leaves a row, which the
    next run marks ``killed`` with the batches the ledger says it landed.
    """

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
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    domain: str | None = None
    quarantined_total: dict[str, int] = field(default_factory=dict)
    build: str | None = None
    raw_state: str | None = None
    # raw table -> [batches, rows] in the ledger once this run had landed, what its build (if any) read
    raw_tables: dict[str, list[int]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """What the flow returns."""
        return {"run_id": self.run_id, "status": self.status, "landed_through": self.landed_through,
                "rows_landed": self.rows_landed, "rows_built": self.rows_built,
                "rows_quarantined": self.rows_quarantined, "quarantined_total": self.quarantined_total,
                "build": self.build}

    def as_markdown(self) -> str:
        lines = [
            f"# Feature pipeline run `{self.run_id}`: **{self.status}**",
            f"landed through {self.landed_through}; dbt build {self.build or 'not run'}"
            + (f", {self.dbt_seconds:.1f} s ({self.dbt_node_seconds:.1f} s in SQL)" if self.build == "built" else ""),
            "",
            "| table | rows | added this run |",
            "|---|---:|---:|",
        ]
        for table, rows in sorted(self.rows_built.items()):
            lines.append(f"| {table} | {rows:,} | {self.rows_added.get(table, 0):,} |")
        lines += ["", "| raw table | rows landed |", "|---|---:|"]
        lines += [f"| {t} | {n:,} |" for t, n in sorted(self.rows_landed.items())]
        lines += ["", "| quarantined (source/rule) | this run | in all |", "|---|---:|---:|"]
        lines += [f"| {t} | {self.rows_quarantined.get(t, 0):,} | {n:,} |"
                  for t, n in sorted(self.quarantined_total.items())]
        if self.error:
            lines += ["", "```", self.error, "```"]
        return "\n".join(lines)


RUNS = f"{RUNS_SCHEMA}.{RUNS_TABLE}"
RUN_COLUMNS = {
    "run_id": "varchar primary key", "started_at": "timestamptz", "finished_at": "timestamptz", "status": "varchar",
    "landed_through": "varchar", "rows_landed": "json", "rows_built": "json", "rows_added": "json",
    "rows_quarantined": "json", "dbt_seconds": "double", "dbt_node_seconds": "double", "error": "varchar",
    "pid": "bigint", "host": "varchar", "domain": "varchar", "quarantined_total": "json", "build": "varchar",
    "raw_state": "varchar", "raw_tables": "json",
}
_JSON_COLUMNS = [name for name, kind in RUN_COLUMNS.items() if kind == "json"]


def ensure_runs_table(store: OfflineStore) -> None:
    """Create ops.feature_pipeline_runs, or add the columns that a home's table from before lacks."""
    store.execute(f"create schema if not exists {RUNS_SCHEMA}")
    store.execute(f"create table if not exists {RUNS} ({', '.join(f'{n} {k}' for n, k in RUN_COLUMNS.items())})")
    present = set(store.columns(RUNS_SCHEMA, RUNS_TABLE) or ())
    for name, kind in RUN_COLUMNS.items():
        if name not in present:
            store.execute(f"alter table {RUNS} add column if not exists {name} {kind}")


def record_run(settings: Settings, run: FeaturePipelineRun) -> None:
    """Write the run to ops.feature_pipeline_runs (one row per run; re-recording a run replaces it)."""
    values = asdict(run)
    for name in _JSON_COLUMNS:
        values[name] = json.dumps(values[name])
    with opened(settings) as store:
        ensure_runs_table(store)
        with store.transaction():
            store.execute(f"delete from {RUNS} where run_id = ?", [run.run_id])
            store.execute(f"insert into {RUNS} ({', '.join(RUN_COLUMNS)}) values ({', '.join('?' * len(RUN_COLUMNS))})",
                          [values[name] for name in RUN_COLUMNS])


def settle_killed_runs(settings: Settings, noticed_by: str) -> list[str]:
    """Mark every run still recorded as ``running`` as ``killed`` and credit it with the batches the ledger
    says it landed; returns their ids.

    Called by a run holding the home's lock, so no such run can still be alive: it died without finishing.
    """
    now = dt.datetime.now(dt.timezone.utc)
    with opened(settings) as store:
        ensure_runs_table(store)
        stale = store.execute(f"select run_id, pid, host, rows_landed from {RUNS} where status = 'running'")
        for run_id, pid, host, recorded in stale:
            landed = landed_by(store, run_id)
            rows = landed.rows_landed() or json.loads(recorded or "{}")
            ids = sorted(b.batch_id for b in landed.batches)
            what = f"; it landed {len(ids)} batches ({ids[0]} .. {ids[-1]})" if ids else ""
            error = f"process {pid} on {host} ended without finishing (killed); found by run {noticed_by}{what}"
            store.execute(
                f"update {RUNS} set status = 'killed', finished_at = ?, rows_landed = ?, error = ? where run_id = ?",
                [now, json.dumps(rows), error, run_id])
    return [run_id for run_id, *_ in stale]


_NOT_PROJECT = {"target", "logs", "dbt_packages"}  # what dbt writes or installs, not what the project says


def project_checksum(settings: Settings) -> str:
    """A hash of what a build's outcome depends on besides the data: the dbt project's files, the profile
    and target it builds with, and the versions of dbt and its adapters. A changed model or test must be
    built even with no new data, and a daily run leaves out only what the same build would write again."""
    root = settings.dbt_project_dir
    paths = []
    for folder, folders, files in os.walk(root):
        folders[:] = [f for f in folders if f not in _NOT_PROJECT and not f.startswith(".")]
        paths += [Path(folder, name) for name in files]
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    profile = Path(settings.dbt_profiles_dir, "profiles.yml")
    digest.update(b"\0profile\0" + (profile.read_bytes() if profile.exists() else b"") + b"\0target\0"
                  + settings.dbt_target.encode())
    for package in _DBT_PACKAGES:
        digest.update(f"\0{package} {_installed_version(package)}".encode())
    return digest.hexdigest()[:16]


_DBT_PACKAGES = ("dbt-core", "dbt-adapters", "dbt-duckdb", "dbt-spark")


def _installed_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def landed_state(settings: Settings) -> tuple[str, dict[str, list[int]]]:
    """What a build works from: the landed batches (the ledger only grows) and the dbt project's files, as
    one line; and the batches and rows of each raw table."""
    with opened(settings) as store:
        tables = ledger_by_table(store)
    batches, rows = (sum(pair[i] for pair in tables.values()) for i in (0, 1))
    return f"{batches} batches, {rows} rows; project {project_checksum(settings)}", tables


def unchanged_since(settings: Settings, domain: Domain, state: str, run_id: str,
                    tables: dict[str, list[int]]) -> str | None:
    """The domain's latest earlier run when it succeeded from exactly ``state``, or on the same project
    files from the same rows of every raw table that feeds the domain (``tables``, as :func:`landed_state`
    gives them; only empty batches, or other domains' data, landed since): its build would be repeated for
    nothing. None when the features must be built."""
    with opened(settings) as store:
        ensure_runs_table(store)
        latest = store.execute(f"select run_id, status, raw_state, raw_tables from {RUNS} where domain = ? "
                               f"and run_id <> ? order by started_at desc limit 1", [domain.name, run_id])
    if not latest or latest[0][1] != "succeeded":
        return None
    previous_id, _, previous_state, recorded = latest[0]
    if previous_state == state:
        return previous_id
    feeding = [t for t in load_catalog(settings).source_tables if domain.name in t.feeds]
    if project_of(previous_state) != project_of(state) or any(t.schema != RAW_SCHEMA for t in feeding):
        return None  # other files, or a table landing does not track feeds the domain (it may have changed)
    names = {t.identifier for t in feeding}
    quiet = unchanged_tables(tables, json.loads(recorded or "null") or {}, among=names)
    return previous_id if quiet == names else None


def project_of(state: str | None) -> str:
    """The project checksum a recorded ``raw_state`` line ends with (:func:`landed_state`)."""
    return (state or "").rpartition("; project ")[2]


# --------------------------------------------------------------------------------------------------
# The composition


@dataclass(frozen=True)
class FeatureSteps:
    """The steps :func:`run_feature_pipeline` calls; a flow passes its tasks, which wrap these same functions."""

    land: Callable[[Settings, dt.date | None, str | None, str | None], tuple[dt.date, LandingReport]] = land_raw
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
    """Land `domain`'s raw data (default: the only domain there is) through `through` (default: the next
    day not landed), build the features its data feeds, and record the run in ops.feature_pipeline_runs,
    failed or not.

    The run holds the home (models_ml.core.home_lock) from start to end: a second writer fails at once
    (HomeBusy) and records nothing. The run is recorded ``running`` at its start and again after landing;
    runs that were killed are marked so first. When nothing new was landed and nothing changed since the
    domain's last successful run, dbt is not run (``build`` says so). A failing dbt test raises
    DbtBuildError after the run (status ``failed``, the error) is recorded; ``on_finish`` sees every run
    once it is recorded (the flow's artifact).
    """
    found, _ = domain_loader(settings, domain)  # a wrong name fails here, before anything runs or is recorded
    with hold_home(settings, "feature pipeline") as holder:
        run = FeaturePipelineRun(domain=found.name, pid=holder.pid, host=holder.host)
        settle_killed_runs(settings, run.run_id)
        record_run(settings, run)
        before, quarantined_before = steps.count(settings)
        try:
            day, landed = steps.land(settings, through, found.name, run.run_id)
            run.landed_through, run.rows_landed = day.isoformat(), landed.rows_landed()
            run.raw_state, run.raw_tables = landed_state(settings)
            record_run(settings, run)
            previous = None if full_refresh or landed.total_rows else unchanged_since(
                settings, found, run.raw_state, run.run_id, run.raw_tables)
            if previous:
                run.build = f"skipped: nothing new since run {previous}"
            else:
                run.build = "failed"
                dbt = steps.build(settings, full_refresh, found.dbt_selection)
                run.build, run.dbt_seconds, run.dbt_node_seconds = "built", dbt.seconds, dbt.node_seconds()
            run.status = "succeeded"
        except BaseException as error:  # recorded, whatever it was (a failing test names itself)
            run.status = "failed"
            run.error = str(error) if isinstance(error, DbtBuildError) else f"{type(error).__name__}: {error}"
            raise
        finally:
            run.rows_built, run.quarantined_total = steps.count(settings)
            run.rows_added = {t: n - before.get(t, 0) for t, n in run.rows_built.items()}
            run.rows_quarantined = {t: n - quarantined_before.get(t, 0) for t, n in run.quarantined_total.items()
                                    if n != quarantined_before.get(t, 0)}
            run.finished_at = dt.datetime.now(dt.timezone.utc)
            record_run(settings, run)
            if on_finish is not None:
                on_finish(run)
    return run
