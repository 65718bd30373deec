"""The online inference service: an ASGI app (Starlette) served by uvicorn, one module per job.

* :mod:`.app`: the routes and their handlers, the app and ``serve`` (``fti serve`` runs it);
* :mod:`.schema`: the request model each served model's published request schema defines;
* :mod:`.scoring`: a loaded champion (:class:`~.scoring.ServedModel`) and how it scores requests;
* :mod:`.encode`: the model's input matrix and LightGBM's single-row path, without pandas;
* :mod:`.state`: what requests share with the watcher thread that swaps champions in and refreshes the
  store's freshness;
* :mod:`.metrics`: the Prometheus metrics; :mod:`.tuning`: the process settings that keep tail latency low.

**What it reads**: only the online store and the files published under ``FTI_HOME/models`` (the champion
pointer ``champion.json`` and the model directory it names, see
:mod:`models_ml.training.champion_pointer`). It never opens the warehouse nor parses the dbt project.
"""
