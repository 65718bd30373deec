"""The online stores, one module each; registered by name in :data:`models_ml.inference.online.store.STORES`."""
