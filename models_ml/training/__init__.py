"""The training pipeline: snapshots, time splits, LightGBM training, evaluation and the gate, the model registry and its champion pointer."""
