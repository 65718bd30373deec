{#-
  `refuse_dropping_group_versions_in_use()`: a pre-hook of every flights feature group. It refuses the build
  if it would drop a feature group version that a model in use needs (registry.group_versions_in_use,
  written by the registry at every alias change: champion, challenger, and the champion a rollback returns
  to). dbt never drops a removed version's table, but the catalog would forget it and that model could no
  longer be scored; so the build fails here, before any group of this domain is built, naming the group,
  the model and the fix. Without the registry table (nothing trained in this warehouse) it does nothing.
-#}
{% macro refuse_dropping_group_versions_in_use() -%}
    {%- set in_use = adapter.get_relation(database=target_database(), schema='registry',
                                          identifier='group_versions_in_use') if execute else none -%}
    {%- if in_use is none -%}
    select 1
    {%- else -%}
    with declared (feature_group, group_version) as (
        values {% for node in graph.nodes.values() if node.resource_type == 'model' -%}
        ('{{ node.name }}', {{ node.version or 0 }}),
        {% endfor -%}
        {#- a dbt source table can be an external feature group (no version): declared while it is here -#}
        {%- for source in graph.sources.values() -%}
        ('{{ source.name }}', 0),
        {% endfor -%}
        ('', -1)
    ),
    gone as (
        select * from {{ in_use }} as u
        where not exists (
            select 1 from declared as d
            where d.feature_group = u.feature_group and d.group_version = coalesce(u.group_version, 0))
        order by model_name, version, role
        limit 1
    )
    {{ raise_error_for_each_row("'feature group ' || feature_group || ' v' || coalesce(group_version, 0) || ' is needed by '
                 || 'model ' || model_name || ' v' || version || ' (' || role || '), but the dbt project no '
                 || 'longer declares it: restore that model version, or move the model''s aliases off it '
                 || 'first (fti models promote / rollback)'", 'gone') }}
    {%- endif %}
{%- endmacro %}
