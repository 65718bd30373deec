"""The dbt project builds on real data: contracts hold, timestamps are UTC timestamptz, keys are unique."""

from fti_testing import query

from models_ml.definitions.catalog import load_catalog
from models_ml.features.pipeline import published_relations


# The domains whose data `built_home` lands (conftest.py); the others' relations are built there but empty.
BUILT_DOMAINS = ["flights", "fraud"]


def test_every_feature_group_and_label_is_built_with_rows(built_home):
    catalog = load_catalog(built_home)
    relations = published_relations(catalog, domains=BUILT_DOMAINS)
    for relation in relations:
        (count,) = query(built_home, f"select count(*) from {relation}")[0]
        assert count > 0, relation
    for relation in set(published_relations(catalog)) - set(relations):  # other domains: built, no data
        assert query(built_home, f"select count(*) from {relation}") == [(0,)], relation


def test_every_time_column_is_timezone_aware(built_home):
    naive = query(
        built_home,
        """select table_schema, table_name, column_name from information_schema.columns
           where table_schema in ('features', 'labels', 'staging')
             and (column_name like '%\\_at' escape '\\') and data_type <> 'TIMESTAMP WITH TIME ZONE'""",
    )
    assert naive == []


def test_feature_groups_are_incremental_tables_with_enforced_contracts(built_home):
    catalog = load_catalog(built_home)
    import json

    manifest = json.loads(built_home.manifest_path.read_text())
    for group in catalog.groups.values():
        if group.external:  # read in place, not built (tests/training/test_external_group.py)
            continue
        node = manifest["nodes"][group.unique_id]
        assert node["config"]["materialized"] == "incremental", group.name
        assert node["config"]["contract"]["enforced"] is True, group.name
        assert all(c["data_type"] for c in node["columns"].values()), group.name


def test_labels_count_cancelled_flights_as_delayed(built_home):
    rows = query(
        built_home,
        """select count(*) filter (where is_cancelled and not is_delayed),
                  count(*) filter (where is_cancelled),
                  count(*) filter (where prediction_at <> scheduled_departure_at - interval 2 hours)
           from labels.label_flight__departure_delay""",
    )
    cancelled_not_delayed, cancelled, wrong_lead = rows[0]
    assert cancelled > 0
    assert cancelled_not_delayed == 0
    assert wrong_lead == 0


def test_delay_features_only_use_flights_that_had_departed(built_home):
    """No feature row of a carrier counts a flight that left after the row's event time."""
    leaks = query(
        built_home,
        """with f as (select carrier_code, event_at, flight_count_30d from features.fg_carrier__delay_stats_v1),
                departed as (select carrier_code, departed_at from staging.stg_nycflights__flights
                             where departed_at is not null)
           select count(*) from f
           where flight_count_30d <> (select count(*) from departed d where d.carrier_code = f.carrier_code
                                      and d.departed_at <= f.event_at
                                      and d.departed_at > f.event_at - interval 30 days)""",
    )
    assert leaks[0][0] == 0
