"""trailing_aggregates takes only the aggregates whose window value is the aggregate of the frame's rows
(its incremental join relies on it), and says so in one line naming the column. Its values are checked by
the models' unit tests (full and incremental) and by the incremental-equals-full-refresh tests."""

from fti_testing import dbt_messages, project_copy

from models_ml.core.settings import load_settings
from models_ml.definitions.dbt_project import run_dbt


def test_an_aggregate_it_cannot_join_fails_the_compile_naming_the_column(tmp_path, monkeypatch):
    project_copy(tmp_path, monkeypatch, "models/features/fraud/fg_card__activity_v1.sql",
                 lambda sql: sql.replace("['amount_cents_max_30d', 'max',", "['amount_cents_max_30d', 'avg',"))
    run = run_dbt(load_settings(tmp_path / "home"), ["compile", "--select", "fg_card__activity"])
    messages = dbt_messages(run)
    assert not run.success
    assert ("trailing_aggregates: amount_cents_max_30d uses avg; use sum, count, min or max (and derive means "
            "and shares from them)") in messages
