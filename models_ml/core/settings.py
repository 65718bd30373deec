"""Typed settings read once from the environment, so no other module reads environment variables."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    """Where everything a run writes lives (`home`) and where the dbt project is."""

    home: Path
    dbt_project_dir: Path
    dbt_profiles_dir: Path
    dbt_target: str = "dev"
    # The engine fti builds features and joins them on (FTI_ENGINE): "duckdb", embedded, the default; or
    # "spark" (the `spark` extra), which makes Spark the default offline store and dbt target.
    engine: str = "duckdb"
    # Spark's master (FTI_SPARK_MASTER): local[N] runs Spark in this process, with its warehouse under
    # home/spark; an sc://host:port URL connects to a Spark Connect server (its warehouse is the server's).
    spark_master: str = "local[2]"
    # The engine behind the offline store (models_ml.offline.store.BACKENDS): the engine's by default.
    offline_store: str = "duckdb"
    # The online store by name (models_ml.inference.online.store.STORES): "sqlite" (embedded, a file under
    # online/) or "redis"; each store's options (keywords of its class) under its name. Read-only.
    online_store: str = "sqlite"
    online_stores: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _online_stores({}))
    # The inference service binds to loopback unless told otherwise.
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    # How long a writing command waits for another one holding the home (models_ml.core.home_lock); 0 fails
    # at once with the holder's name.
    lock_wait_seconds: float = 0.0
    # DuckDB's memory limit for the warehouse's connections (FTI_DUCKDB_MEMORY_LIMIT, e.g. "1GB"): past it,
    # sorts, joins and windows spill to a temporary folder beside the file. None: DuckDB's default (80 % of RAM).
    duckdb_memory_limit: str | None = None
    # Batch scoring with the model's trees compiled to C (models_ml.inference.batch.compiled_trees), the same
    # scores as LightGBM's; FTI_COMPILED_TREES=0 keeps LightGBM's own prediction.
    compiled_trees: bool = True
    # The level of dbt's own log file, home/dbt/logs/dbt.log (FTI_DBT_LOG_LEVEL_FILE): dbt's default, debug,
    # writes every statement of every node (about 5 % of a daily flights build in paired runs, 5.26 against
    # 4.98 s); the compiled SQL is in home/dbt/target either way. "info" keeps each node's start, result and
    # timing.
    dbt_log_level_file: str = "info"
    # The prediction log's file (FTI_PREDICTION_LOG); None: online/prediction_log.sqlite in the home.
    prediction_log: Path | None = None

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def spark_dir(self) -> Path:
        """A local Spark session's warehouse, metastore and logs (see offline.spark_store.session_config)."""
        return self.home / "spark"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def compiled_trees_dir(self) -> Path:
        """Compiled models (shared libraries keyed by their source's hash): a cache, safe to delete."""
        return self.home / "cache" / "compiled_trees"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def online_dir(self) -> Path:
        return self.home / "online"

    @property
    def online_store_path(self) -> Path:
        """The embedded online store (SQLite, WAL mode): latest feature values per entity."""
        return self.online_dir / "online_store.sqlite"

    @property
    def prediction_log_path(self) -> Path:
        """Where the inference service logs every prediction (SQLite, WAL mode; read by monitoring):
        online/prediction_log.sqlite, or the file FTI_PREDICTION_LOG names (another disk, say)."""
        return self.prediction_log or self.online_dir / "prediction_log.sqlite"

    def with_online_store(self, name: str, **options: Any) -> Settings:
        """These settings with ``name`` as the online store and ``options`` laid over its own."""
        stores = {**self.online_stores, name: {**self.online_stores.get(name, {}), **options}}
        return dataclasses.replace(self, online_store=name, online_stores=stores)

    @property
    def dbt_target_dir(self) -> Path:
        """dbt's target/ (manifest, compiled SQL, run results) per home, so homes never share artefacts."""
        return self.home / "dbt" / "target"

    @property
    def dbt_log_dir(self) -> Path:
        return self.home / "dbt" / "logs"

    @property
    def manifest_path(self) -> Path:
        return self.dbt_target_dir / "manifest.json"

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home


def load_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Read `FTI_HOME` (default `./.fti`) and the dbt locations; an explicit `home` wins."""
    env = os.environ
    root = Path(env.get("FTI_PROJECT_ROOT", PROJECT_ROOT))
    chosen = Path(home) if home is not None else Path(env.get("FTI_HOME", ".fti"))
    engine = _engine(env)
    return Settings(
        home=chosen.expanduser().resolve(),
        dbt_project_dir=root / "dbt_project",
        dbt_profiles_dir=root,
        dbt_target=env.get("FTI_DBT_TARGET", ENGINE_DBT_TARGETS[engine]),
        engine=engine,
        spark_master=_spark_master(env),
        offline_store=env.get("FTI_OFFLINE_STORE", engine),
        online_store=env.get("FTI_ONLINE_STORE", "sqlite"),
        online_stores=_online_stores(env),
        serve_host=env.get("FTI_SERVE_HOST", "127.0.0.1"),
        serve_port=int(env.get("FTI_SERVE_PORT", "8000")),
        lock_wait_seconds=_seconds(env, "FTI_LOCK_WAIT_SECONDS"),
        duckdb_memory_limit=_memory_limit(env, "FTI_DUCKDB_MEMORY_LIMIT"),
        compiled_trees=yes_no(env, "FTI_COMPILED_TREES", default=True),
        dbt_log_level_file=_choice(env, "FTI_DBT_LOG_LEVEL_FILE", DBT_LOG_LEVELS, default="info"),
        prediction_log=Path(env["FTI_PREDICTION_LOG"]).expanduser().resolve() if env.get("FTI_PREDICTION_LOG")
        else None,
    )


class SettingsError(ValueError):
    """An environment variable holds a value fti cannot use; the message names it and the fix."""


#: each engine fti runs on, and the profiles.yml target dbt builds on it with
ENGINE_DBT_TARGETS = {"duckdb": "dev", "spark": "spark"}


def _engine(env: Mapping[str, str]) -> str:
    raw = env.get("FTI_ENGINE", "").strip()
    engine = raw.lower() or "duckdb"
    if engine not in ENGINE_DBT_TARGETS:
        raise SettingsError(f"FTI_ENGINE={raw!r} is not an engine fti runs on; set it to "
                            f"{' or '.join(ENGINE_DBT_TARGETS)} (or leave it unset for duckdb)")
    return engine


def _spark_master(env: Mapping[str, str]) -> str:
    """local, local[N], local[*], or a Spark Connect URL: other masters (yarn, k8s, spark://) need a
    cluster's own configuration, which a Spark Connect server holds."""
    raw = env.get("FTI_SPARK_MASTER", "").strip()
    if not raw:
        return "local[2]"
    if raw.startswith("sc://") or re.fullmatch(r"local(\[(\*|[1-9][0-9]*)\])?", raw):
        return raw
    raise SettingsError(f"FTI_SPARK_MASTER={raw!r} is not a Spark master fti can start; set it to local[N] "
                        f"(Spark in this process) or sc://host:15002 (a Spark Connect server)")


_MEMORY = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


def _memory_limit(env: Mapping[str, str], name: str) -> str | None:
    """An amount of memory as DuckDB reads it ("1GB", "512MiB"); None when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not _MEMORY.fullmatch(raw):
        raise SettingsError(f"{name}={raw!r} is not an amount of memory; set it to e.g. 1GB or 512MiB (or unset it)")
    return raw


def yes_no(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no setting of the environment (any part of the system reads its switches through this):
    1/true/yes/on or 0/false/no/off; ``default`` when unset."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a yes/no value; set it to 1 or 0 (or unset it)")


DBT_LOG_LEVELS = ("debug", "info", "warn", "error", "none")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    """One of ``choices`` (case-insensitive); ``default`` when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() not in choices:
        raise SettingsError(f"{name}={raw!r} is not one of {', '.join(choices)}; set it to one (or unset it for "
                            f"{default})")
    return raw.lower()


def _seconds(env: Mapping[str, str], name: str, default: float = 0.0) -> float:
    """A non-negative number of seconds from ``name``."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise SettingsError(f"{name}={raw!r} is not a non-negative number of seconds; set it to 0 (fail at once) "
                            f"or a positive number such as 30")
    return value


def _online_stores(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Each online store's options, from the environment where it sets them."""
    return {
        "sqlite": {},  # its file is online_store_path, under home
        "redis": {"url": env.get("FTI_REDIS_URL", "redis://127.0.0.1:6379/0"),
                  "prefix": env.get("FTI_REDIS_PREFIX", "fti")},
    }
