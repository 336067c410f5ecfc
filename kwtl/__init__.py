"""kwtl — knowing what to label for few-shot microscopy cell segmentation.

The method of Dawoud et al. (WACV 2023) as scikit-learn-compatible components:
:mod:`kwtl.datasets` → :mod:`kwtl.pseudo_label` → :mod:`kwtl.models` →
:mod:`kwtl.selection` → :class:`kwtl.FewShotSegmentation` → :mod:`kwtl.metrics` /
:mod:`kwtl.model_selection`.
"""
__version__ = "0.1.0"

from ._few_shot import FewShotSegmentation  # noqa: E402
from ._oracle import Oracle  # noqa: E402

__all__ = ["FewShotSegmentation", "Oracle", "__version__"]
