"""Version pinning: a model's feature view at the view version it was trained on, with every group at the
version the model was trained on.

A newer v2 of a group (or of the view) must not leak into a model trained on v1, nor v1 into a model trained
on v2; and a model whose trained-on group versions are gone from the dbt project must be refused with the
group and version named. So upgrading and rolling back a model moves its features with it: whoever scores
a model (batch inference, the champion pointer the service follows) asks this module for its view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Protocol

from models_ml.definitions.catalog import Catalog, CatalogError, FeatureView


class TrainedOn(Protocol):
    """What pinning needs of a model version (the registry's ModelVersion has it): its lineage."""

    model_name: str
    version: int
    feature_view: str
    feature_view_version: int
    feature_group_versions: Mapping[str, int | None]
    features: Sequence[str]


class LineageError(ValueError):
    """A model's lineage no longer matches the dbt project; the message names the group and the fix."""


def pin_view(catalog: Catalog, version: TrainedOn) -> FeatureView:
    """The model's feature view with every group at the version the model was trained on (its lineage).

    Raises LineageError when the view, a group version or a selected feature is not in the catalog.
    """
    who = f"model {version.model_name} v{version.version}"
    try:
        view = catalog.view(version.feature_view)
    except CatalogError as error:
        raise LineageError(f"{who} was trained on feature view {version.feature_view!r}, which the dbt "
                              f"project no longer declares ({error})") from error
    trained_on = getattr(version, "feature_view_version", None)
    if trained_on is not None and int(trained_on) in catalog.versions_of_view(view.name):
        view = catalog.view(view.name, int(trained_on))
    # else: that view version is no longer declared; the current one, pinned to the model's groups, serves
    # it as long as it still selects every feature the model needs (checked below)
    lineage = dict(version.feature_group_versions)
    selected = {ref.group.name for ref in view.features}
    dropped = sorted(set(lineage) - selected)
    if dropped:
        raise LineageError(
            f"{who} was trained on feature groups {', '.join(f'{g} v{lineage[g]}' for g in dropped)}, which "
            f"feature view {view.name} (now v{view.version}) no longer selects: retrain the model on the view"
        )
    refs = []
    for ref in view.features:
        name = ref.group.name
        if name not in lineage:  # selected by a newer view version; this model never used it
            continue
        wanted = lineage[name]
        try:
            group = catalog.group(name, 0 if wanted is None else int(wanted))
        except CatalogError as error:
            raise LineageError(
                f"{who} was trained on feature group {name} v{wanted}, which is not in the catalog ({error}): "
                f"restore that dbt model version or promote a model trained on the current one"
            ) from error
        declared = {column.name for column in group.columns}
        absent = [f for f in ref.features if declared and f not in declared]
        if absent:
            raise LineageError(f"feature view {view.name} selects {absent} from {name}, but {name} v{wanted}, "
                                  f"which {who} was trained on, has no such columns")
        refs.append(dataclasses.replace(ref, group=group))
    pinned = dataclasses.replace(view, features=tuple(refs))
    produced = set(pinned.feature_columns)
    unknown = [f for f in version.features if f not in produced]
    if unknown:
        raise LineageError(f"{who} needs features {unknown} that feature view {view.name} no longer produces "
                              f"from its trained-on groups {lineage}")
    return pinned
