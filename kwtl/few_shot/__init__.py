"""The method's home: the whole method as one estimator, and one function per step.

* :class:`FewShotSegmentation` — the paper's method as a scikit-learn meta-estimator:
  source pre-training, pseudo-label fine-tuning, selection, the oracle, support
  fine-tuning;
* :func:`pseudo_label_fine_tune` — the target-side BatchNorm switch and pseudo-label
  fine-tuning (PLFT);
* :func:`fine_tune` — support fine-tuning on annotated patches;
* :class:`Oracle` — the only door to the target masks; it records every reveal.

The estimator, the lab workflow (:mod:`kwtl.workflow`) and the benchmark drivers all call
these step functions; the workflow adds only progress, checkpoints and files.
"""

from ._estimator import FewShotSegmentation
from ._oracle import Oracle
from ._preflight import check_before_training
from ._steps import fine_tune, plft_patches, pseudo_label_fine_tune

__all__ = [
    "FewShotSegmentation",
    "Oracle",
    "check_before_training",
    "fine_tune",
    "plft_patches",
    "pseudo_label_fine_tune",
]
