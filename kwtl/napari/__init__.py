"""kwtl in napari: annotate a ``kwtl select`` package and run the steps from widgets.

The plugin (npe2 manifest ``napari.yaml``, installed with ``pip install "kwtl[napari]"``)
adds two dock widgets to *Plugins > kwtl*:

* :class:`~kwtl.napari.AnnotateWidget` — open an annotation package: the source image with
  the chosen patches numbered as in the overview pictures, a Labels layer to draw the
  current patch's cells, previous/next, save (the mask goes exactly where
  ``selection.csv`` says; instance labels are kept) and "7 of 16 drawn";
* :class:`~kwtl.napari.StepsWidget` — ``select`` (with rounds: packages to exclude),
  ``finetune`` (one or several packages) and ``predict`` in a worker thread with a
  progress bar and a cancel button; results appear as layers.

Images open with napari's own readers; kwtl adds no reader or writer.
"""

from ._annotate import AnnotateWidget
from ._steps import StepsWidget

__all__ = ["AnnotateWidget", "StepsWidget"]
