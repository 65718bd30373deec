"""Definitions: what the dbt project declares (feature groups, feature views, their training configs), version pinning and the on-demand function registry."""
