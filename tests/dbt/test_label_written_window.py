"""A daily run tests the fraud label rows it wrote (`meta.fti.written_after`), and uniqueness of the label's
key reads every row whose key a written row has; a run without the window tests the whole table.

The window is sound only if every row a run appends lies above a pre-run maximum of one of the declared
columns: shown on real micro-batches, where labels mature on old data (loaded long before) as well as on
newly loaded data. (The model never writes a key it holds, so a duplicate it could make is two written
rows, both read; `test_written_window.py` shows the key semi-join on a feature group.)
"""

from __future__ import annotations

import datetime as dt

import pytest
from fti_testing import land_fraud, project_copy, query, ticking_clock

from examples.fraud.generator import FraudConfig
from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import load_catalog
from models_ml.definitions.dbt_project import run_dbt
from models_ml.features.dbt_runner import DbtBuildError, build
from models_ml.features.pipeline import TEST_WRITTEN_WINDOW_VAR
from models_ml.offline.store import opened

UTC = dt.timezone.utc
LABEL = "labels.label_transaction__fraud"
CONFIG = FraudConfig(seed=29, n_transactions=6_000, start=dt.date(2024, 1, 1), days=8, label_maturity_days=3,
                     compromised_card_share=0.08, compromised_merchant_share=0.05, dirty_row_share=0.0)
DBT_VARS = {"fraud_label_maturity_days": 3}
WINDOW = {**DBT_VARS, TEST_WRITTEN_WINDOW_VAR: True}


def _build(settings, dbt_vars: dict) -> None:
    selection = load_catalog(settings).domain("fraud").dbt_selection
    build(settings, ["build", "--select", *selection.split()], dbt_vars=dbt_vars)


@pytest.mark.slow
def test_a_daily_run_tests_the_label_rows_it_wrote_and_every_row_of_their_keys(tmp_path):
    settings = load_settings(tmp_path / "home")
    clock = ticking_clock()
    land_fraud(settings, dt.datetime(2024, 1, 7, tzinfo=UTC), clock, config=CONFIG, batch="hour")
    _build(settings, DBT_VARS)

    # Every row the next run appends is above the maximum, before the run, of a written_after column.
    (matured_through, loaded_through), = query(settings, f"select max(label_matures_at), max(loaded_at) from {LABEL}")
    labelled = {row[0] for row in query(settings, f"select transaction_id from {LABEL}")}
    land_fraud(settings, dt.datetime(2024, 1, 7, 12, tzinfo=UTC), clock, config=CONFIG, batch="hour")
    _build(settings, WINDOW)
    rows = query(settings, f"select transaction_id, label_matures_at, loaded_at from {LABEL}")
    written = [(matures, loaded) for key, matures, loaded in rows if key not in labelled]
    assert len(rows) == len(labelled) + len(written) and written
    assert all(matures > matured_through or loaded > loaded_through for matures, loaded in written)
    assert any(loaded <= loaded_through for _, loaded in written)  # the load time alone would miss these

    # A second copy of an old label, which no written row shares a key with: the windowed run does not
    # re-read it, a whole-table run does.
    with opened(settings) as store:
        store.execute(f"insert into {LABEL} select * from {LABEL} order by label_matures_at limit 1")
    land_fraud(settings, dt.datetime(2024, 1, 7, 18, tzinfo=UTC), clock, config=CONFIG, batch="hour")
    _build(settings, WINDOW)
    with pytest.raises(DbtBuildError, match="unique_label_transaction__fraud_transaction_id"):
        _build(settings, DBT_VARS)

    # A row with no maturity time cannot be placed inside or outside the window: a windowed run reads it.
    with opened(settings) as store:
        store.execute(f"create or replace table {LABEL} as select distinct on (transaction_id) * from {LABEL}")
        store.execute(f"""insert into {LABEL} select * replace ('no-maturity' as transaction_id,
                          null as label_matures_at) from {LABEL} order by label_matures_at limit 1""")
    land_fraud(settings, dt.datetime(2024, 1, 8, tzinfo=UTC), clock, config=CONFIG, batch="hour")
    with pytest.raises(DbtBuildError, match="not_null_label_transaction__fraud_label_matures_at"):
        _build(settings, WINDOW)


def test_written_after_on_a_feature_group_fails_the_parse_naming_the_model(tmp_path, monkeypatch):
    """A feature group's tests are windowed by its event and created time; a written_after beside them
    would be ignored, so it is an error."""
    project_copy(tmp_path, monkeypatch, "models/features/fraud/_fraud__features.yml",
                 lambda yml: yml.replace("created_time: loaded_at\n",
                                         "created_time: loaded_at\n          written_after: [loaded_at]\n", 1))
    run = run_dbt(load_settings(tmp_path / "home"), ["parse"])
    assert not run.success
    assert "fg_card__activity: meta.fti.written_after is for models without an event and created time" in (
        run.exception or "")
