"""The one definition: the dbt models' own SQL, compiled as a full refresh, to run over a micro-batch.

`dbt compile --full-refresh` of the chosen models in a scratch home (it never opens the warehouse) gives
each model's SQL with its windows, casts and tie rules exactly as `dbt build` runs them; the relations it
reads (`ref(...)`) are named in the manifest, so the streaming updater swaps each for a local relation of
the same columns. Nothing about a window is written twice: change the model and both paths change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from models_ml.core.settings import Settings

_INTERVAL = re.compile(r"interval\s+'(\d+)\s+(microsecond|second|minute|hour|day)s?'", re.IGNORECASE)


class DefinitionError(RuntimeError):
    """A model could not be compiled or does not read the relations the streaming updater provides."""


@dataclass(frozen=True)
class CompiledModel:
    """One model's compiled SQL and the relations it reads (manifest relation name -> model name)."""

    name: str
    version: int | None
    relation: str  # the model's own table name, e.g. fg_card__activity_v1
    sql: str
    inputs: dict[str, str]

    def bound(self, relations: dict[str, str]) -> str:
        """The SQL with each input model (by name) read from ``relations[name]`` instead of the warehouse."""
        sql = self.sql
        for relation_name, model in self.inputs.items():
            if model not in relations:
                raise DefinitionError(f"model {self.name} reads {model}: give it a relation to read")
            sql = sql.replace(relation_name, relations[model])
        return sql

    @property
    def widest_window(self) -> dt.timedelta:
        """The longest interval literal in the SQL: how far back an event can still change a row."""
        lengths = [dt.timedelta(**{f"{unit.lower()}s": int(n)}) for n, unit in _INTERVAL.findall(self.sql)]
        if not lengths:
            raise DefinitionError(f"model {self.name} declares no window interval")
        return max(lengths)


def compile_models(settings: Settings, names: Sequence[str]) -> dict[str, CompiledModel]:
    """Compile ``names`` (model names, latest versions) as full refreshes, without touching the warehouse."""
    from models_ml.definitions.dbt_project import run_dbt

    scratch = Path(tempfile.mkdtemp(prefix="fti-stream-compile-"))
    try:
        scratch_settings = dataclasses.replace(settings, home=scratch / "home")
        run = run_dbt(scratch_settings, ["compile", "--full-refresh", "--select", " ".join(names)])
        if not run.success:
            raise DefinitionError(f"dbt compile of {', '.join(names)} failed: {run.exception or 'see dbt logs'}")
        manifest = json.loads(scratch_settings.manifest_path.read_text())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    nodes = manifest["nodes"]
    compiled: dict[str, CompiledModel] = {}
    for node in nodes.values():
        if node["resource_type"] != "model" or node["name"] not in names or not node.get("compiled_code"):
            continue
        latest = node.get("latest_version")
        if node.get("version") is not None and latest is not None and str(node["version"]) != str(latest):
            continue
        inputs = {nodes[p]["relation_name"]: nodes[p]["name"] for p in node["depends_on"]["nodes"] if p in nodes}
        version = int(node["version"]) if node.get("version") is not None else None
        compiled[node["name"]] = CompiledModel(node["name"], version, node["alias"], node["compiled_code"], inputs)
    missing = [n for n in names if n not in compiled]
    if missing:
        raise DefinitionError(f"no compiled model named {missing} in the dbt project")
    return compiled
