"""The feature pipeline's steps as plain functions: land raw data, build and test features, record the run.

Prefect wiring lives in flows/feature_pipeline.py; nothing here knows about Prefect.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import uuid
from dataclasses import asdict, dataclass, field
from types import ModuleType

import duckdb

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import Catalog
from models_ml.features.dbt_runner import DbtRun, build
from models_ml.features.landing import LandingReport

DEFAULT_EXAMPLE = "flights"

RUNS_TABLE = "ops.feature_pipeline_runs"
QUARANTINE_RELATION = "quarantine.quarantined_rows"


def connect(settings: Settings, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    settings.ensure_home()
    return duckdb.connect(str(settings.warehouse_path), read_only=read_only)


def example_loader(example: str = DEFAULT_EXAMPLE) -> ModuleType:
    """The raw-data loader of an example system, `examples/<example>/loader.py`.

    A loader provides `land_through(con, through, cache_dir)` (land every batch through that day not landed
    yet), `next_unlanded_day(con)` and `DBT_SELECTION` (the dbt selection its data feeds; None = all), so a
    new example needs a loader and SQL, not a change here.
    """
    try:
        return importlib.import_module(f"examples.{example}.loader")
    except ModuleNotFoundError as error:
        raise ValueError(f"no example {example!r} (expected a module examples/{example}/loader.py)") from error


def land_raw(
    settings: Settings, through: dt.date | None = None, example: str = DEFAULT_EXAMPLE
) -> tuple[dt.date, LandingReport]:
    """Land the example's raw data through `through` (default: the next day not landed yet); returns the
    day landed through and what was landed."""
    loader = example_loader(example)
    with connect(settings) as con:
        day = through or loader.next_unlanded_day(con)
        return day, loader.land_through(con, day, settings.home / "cache")


def build_features(settings: Settings, full_refresh: bool = False, select: str | None = None) -> DbtRun:
    """`dbt build`: staging, quarantine, features and labels, with their tests and unit tests.

    `select` limits the build to a dbt selection (an example's `DBT_SELECTION`); None builds everything.
    Raises DbtBuildError (naming each failing test with its failing rows) when anything fails; models
    downstream of a failure are skipped, so they are not published.
    """
    args = ["build"]
    if select:
        args += ["--select", *select.split()]
    if full_refresh:
        args.append("--full-refresh")
    return build(settings, args)


def relation_row_counts(settings: Settings, relations: list[str]) -> dict[str, int]:
    """Row counts of existing relations (missing ones are left out)."""
    counts: dict[str, int] = {}
    if not settings.warehouse_path.exists():
        return counts
    with connect(settings, read_only=True) as con:
        existing = {
            f"{s}.{t}" for s, t in con.execute("select table_schema, table_name from information_schema.tables").fetchall()
        }
        for relation in relations:
            if relation in existing:
                counts[relation] = int(con.execute(f"select count(*) from {relation}").fetchone()[0])
    return counts


def published_relations(catalog: Catalog) -> list[str]:
    """Every feature group and label relation the catalog knows."""
    relations = {g.qualified_relation for g in catalog.groups.values()}
    relations |= {v.label.qualified_relation for v in catalog.views.values()}
    return sorted(relations)


def quarantine_counts(settings: Settings) -> dict[str, int]:
    """Quarantined rows per `source_table/rule`."""
    if not settings.warehouse_path.exists():
        return {}
    with connect(settings, read_only=True) as con:
        try:
            rows = con.execute(
                f"select source_table || '/' || rule_broken, count(*) from {QUARANTINE_RELATION} group by all order by 1"
            ).fetchall()
        except duckdb.CatalogException:
            return {}
    return {k: int(v) for k, v in rows}


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
    with connect(settings) as con:
        con.execute("create schema if not exists ops")
        con.execute(
            f"""create table if not exists {RUNS_TABLE} (
                run_id varchar primary key, started_at timestamptz, finished_at timestamptz, status varchar,
                landed_through varchar, rows_landed json, rows_built json, rows_added json,
                rows_quarantined json, dbt_seconds double, dbt_node_seconds double, error varchar)"""
        )
        values = asdict(run)
        con.execute("begin transaction")
        con.execute(f"delete from {RUNS_TABLE} where run_id = ?", [run.run_id])
        con.execute(
            f"insert into {RUNS_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                values["run_id"], values["started_at"], values["finished_at"], values["status"],
                values["landed_through"], json.dumps(values["rows_landed"]), json.dumps(values["rows_built"]),
                json.dumps(values["rows_added"]), json.dumps(values["rows_quarantined"]),
                values["dbt_seconds"], values["dbt_node_seconds"], values["error"],
            ],
        )
        con.execute("commit")
