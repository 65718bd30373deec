"""Monitoring: how a registered model's inputs and score drift from its training reference, and how it
performs once outcomes arrive, computed in the engine.

* :mod:`.tables`: the ``monitoring`` schema (references, reference profiles, feature drift, performance);
* :mod:`.profile`: a table of model inputs as value counts per feature, the one shape every statistic reads;
* :mod:`.reference`: a model version's reference, its training snapshot's train split scored once;
* :mod:`.current`: what the model saw since, its batch predictions with their features, per day;
* :mod:`.drift`: PSI, KS, missing-rate change and out-of-range share per feature and window, in SQL;
* :mod:`.online`: the online prediction log as current data, per hour;
* :mod:`.performance`: batch predictions joined to their outcomes as they arrive: ROC-AUC, PR-AUC, log loss,
  Brier, ECE per day and slice;
* :mod:`.summary`: the per-feature summary `fti monitor drift` prints;
* :mod:`.sql`: the small SQL helpers the statements share;
* :mod:`.pipeline`: the compositions behind ``fti monitor drift`` and ``fti monitor performance``.
"""
