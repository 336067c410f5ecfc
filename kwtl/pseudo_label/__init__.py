"""Pseudo-labels for pseudo-label fine-tuning (paper §3.2).

:class:`PseudoLabeler` turns unlabelled target images into binary masks with classical image
processing (histogram equalisation + threshold + dilation as in the paper, Otsu, or k-means),
with per-dataset paper presets (:data:`PAPER_PRESETS`, :meth:`PseudoLabeler.for_dataset`) and an
automatic foreground-polarity rule (:func:`estimate_polarity`).
"""

from ._pseudo_label import PAPER_PRESETS, PseudoLabeler, estimate_polarity

__all__ = ["PAPER_PRESETS", "PseudoLabeler", "estimate_polarity"]
