"""kwtl — knowing what to label for few-shot microscopy cell segmentation.

The method of Dawoud et al. (WACV 2023) as scikit-learn-compatible components:
:mod:`kwtl.datasets` → :mod:`kwtl.pseudo_label` → :mod:`kwtl.models` →
:mod:`kwtl.selection` → :mod:`kwtl.few_shot` (:class:`kwtl.FewShotSegmentation`) →
:mod:`kwtl.metrics` / :mod:`kwtl.model_selection`.
"""

from ._version import __version__
from .few_shot import FewShotSegmentation, Oracle

__all__ = ["FewShotSegmentation", "Oracle", "__version__"]
