"""Downstream accuracy of a photo-trained classifier (``bench downstream``), declared as metrics.

The rows come from ``benchmark.analyses.downstream`` (they need class labels and a trained classifier,
not two feature sets), so ``compute`` is None and ``computed_by`` names the command. Layer ids:
``classifier:all`` for the whole set, ``classifier:<class>`` (e.g. ``classifier:dog``) for one
class. Every row carries n (images scored; n_real = training photos) and a Wilson 95% interval.
"""

from __future__ import annotations

from benchmark.metrics import Metric

VERSION = "accuracy-1"
COMMAND = "bench downstream"

ACCURACY = Metric("accuracy", None, ("classifier:all",), higher_is_better=True, version=VERSION, computed_by=COMMAND)
BALANCED = Metric("balanced_accuracy", None, ("classifier:all",), higher_is_better=True, version=VERSION,
                  computed_by=COMMAND)
PER_CLASS = Metric("class_accuracy", None, ("classifier:*",), higher_is_better=True, version=VERSION,
                   computed_by=COMMAND)
