"""Online serving: the online store (embedded SQLite or Redis), its materialization from the warehouse,
the published champion pointer and the inference service.

The serving side (``service``, ``store`` readers, ``publish.read_pointer``) never opens the warehouse: it
reads only the online store and the files published under ``FTI_HOME/models``.
"""
