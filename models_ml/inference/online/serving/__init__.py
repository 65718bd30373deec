"""The online inference service: an ASGI app (Starlette) served by uvicorn, one module per job.

* :mod:`.app`: the routes and their handlers, and the app;
* :mod:`.workers`: ``serve`` (``fti serve`` runs it): the app in one process, or in several on one port;
* :mod:`.schema`: the request model each served model's published request schema defines;
* :mod:`.scoring`: a loaded champion (:class:`~.scoring.ServedModel`) and how it scores requests;
* :mod:`.encode`: the model's input matrix and LightGBM's single-row path, without pandas;
* :mod:`.state`: what requests share with the watcher thread that swaps champions in and refreshes the
  store's freshness;
* :mod:`.metrics`: the Prometheus metrics; :mod:`.tuning`: the process settings that keep tail latency low;
* :mod:`.config`: the limits (body, head, connections, in-flight requests, timeouts, prediction-log retention)
  and the optional bearer token, from the environment or ``fti serve`` flags;
* :mod:`.server`: uvicorn's configuration and the guards its httptools protocol lacks (head size, request
  read timeout, idle new connections).

**What it reads**: only the online store and the files published under ``FTI_HOME/models`` (the champion
pointer ``champion.json`` and the model directory it names, see
:mod:`models_ml.training.champion_pointer`). It never opens the warehouse nor parses the dbt project.
"""
