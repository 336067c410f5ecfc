"""Parameter constraints shared by the selectors (``_parameter_constraints`` entries)."""

import numbers

from ..utils.validation import POSITIVE_INT, Interval, Options  # noqa: F401 (re-exported)

#: A float strictly between 0 and 1 (probabilities, thresholds).
OPEN_UNIT = Interval(numbers.Real, 0, 1, closed="neither")
#: ``dense``: exact per-patch scoring, whole-image maps, or chosen by overlap.
DENSE = ["boolean", Options(("auto",))]
#: The predicted-foreground measures.
MEASURES = ("fraction", "mean_proba")
