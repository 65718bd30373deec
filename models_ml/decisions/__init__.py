"""Deciding between champion and challenger: the statistics (:mod:`.statistics`), the comparison of their
scores on the outcomes that have arrived (:mod:`.compare`) and the report a person reads (:mod:`.report`)."""
