"""Typed settings read once from the environment, so no other module reads environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    """Where everything a run writes lives (`home`) and where the dbt project is."""

    home: Path
    dbt_project_dir: Path
    dbt_profiles_dir: Path
    dbt_target: str = "dev"
    # The engine behind the offline store (models_ml.offline.store.BACKENDS): "duckdb", the embedded default.
    offline_store: str = "duckdb"
    # Online serving (issue 5). The online store: "sqlite" (embedded, a file under online/) or "redis".
    online_store: str = "sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "fti"
    # The inference service binds to loopback unless told otherwise.
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

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
        """Where the inference service logs every prediction (SQLite, WAL mode; read by monitoring)."""
        return self.online_dir / "prediction_log.sqlite"

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
    return Settings(
        home=chosen.expanduser().resolve(),
        dbt_project_dir=root / "dbt_project",
        dbt_profiles_dir=root,
        dbt_target=env.get("FTI_DBT_TARGET", "dev"),
        offline_store=env.get("FTI_OFFLINE_STORE", "duckdb"),
        online_store=env.get("FTI_ONLINE_STORE", "sqlite"),
        redis_url=env.get("FTI_REDIS_URL", "redis://127.0.0.1:6379/0"),
        redis_prefix=env.get("FTI_REDIS_PREFIX", "fti"),
        serve_host=env.get("FTI_SERVE_HOST", "127.0.0.1"),
        serve_port=int(env.get("FTI_SERVE_PORT", "8000")),
    )
