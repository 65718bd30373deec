"""The offline side of the feature store: the engine door (OfflineStore and its engines), the point-in-time join and feature retrieval shared by training and batch inference."""
