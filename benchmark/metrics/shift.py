"""The rows of ``bench shift``: declared here (name, direction, version), computed by that command.

They need more than one generated and one real feature set (two photo halves, a noise floor,
paintings paired with their translations), so the evaluation loop skips them
(``computed_by="bench shift"``) and ``benchmark.analyses.shift`` produces them. Every row's ``low`` /
``high`` is a 95% interval: a percentile bootstrap (B = 1000, 200 for the Frechet distance) for
the distances, the gap closed and CKA; the 2.5/97.5 % of the 20 floor draws or of the 200
shuffles for the floor and the permutation baseline. ``n_real`` is photo half A's size,
``n_fake`` the set's.
"""

from __future__ import annotations

from benchmark.metrics import Metric
from benchmark.metrics.cka import VERSION as CKA_VERSION

VERSION = "shift-1"
ANALYSIS_LAYERS = ("inception:*", "effnet-lite0:*", "vgg19:*", "resnet152:*")

KID = Metric("shift_kid", None, ANALYSIS_LAYERS, higher_is_better=False, version=VERSION,
             params=(("kernel", "(x.y/d+1)^3"), ("estimator", "full-set unbiased MMD^2"), ("reference", "photo half A"),
                     ("bootstrap", 1000)),
             computed_by="bench shift")
FLOOR = Metric("shift_floor", None, ANALYSIS_LAYERS, higher_is_better=False, version=VERSION,
               params=(("draws", 20), ("set", "photo half B subsampled to n")), computed_by="bench shift")
FD = Metric("shift_fd", None, ANALYSIS_LAYERS, higher_is_better=False, version=VERSION,
            params=(("only_where", "n > dims"), ("bootstrap", 200)), computed_by="bench shift")
GAP = Metric("shift_gap", None, ANALYSIS_LAYERS, higher_is_better=True, version=VERSION,
             params=(("formula", "(D_orig - D_trans) / (D_orig - D_floor)"), ("distance", "shift_kid")),
             computed_by="bench shift")
CKA = Metric("cka", None, ANALYSIS_LAYERS, higher_is_better=True, version=CKA_VERSION,
             params=(("kernel", "linear"), ("hsic", "unbiased (Song et al. 2012)"), ("pairs", "painting, translation")),
             computed_by="bench shift")
CKA_PERM = Metric("cka_perm", None, ANALYSIS_LAYERS, higher_is_better=True, version=CKA_VERSION,
                  params=(("shuffles", 200),), computed_by="bench shift")

METRICS = (KID, FLOOR, FD, GAP, CKA, CKA_PERM)
