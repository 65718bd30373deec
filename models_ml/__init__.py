"""fti: a declarative, SQL-first ML system on the Feature / Training / Inference pipeline architecture."""

__version__ = "0.1.0"
