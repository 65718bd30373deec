"""Online inference: the online store, its materialization from the warehouse, and the serving app.

* ``store``: the online store's interface and its registry of stores by name; ``stores/``: one module per
  store (``sqlite`` embedded, ``redis``);
* ``materialize``: refresh the store from the offline feature groups, then republish the champion pointers;
* ``on_demand``: on-demand features of a request and the model's input row;
* ``serving/``: the HTTP service (app, request schema, scoring, metrics, the champion watcher, tuning);
* ``prediction_log``: every prediction, written off the request path, for monitoring.

The serving side never opens the warehouse: it reads only the online store and the files published under
``FTI_HOME/models``.
"""
