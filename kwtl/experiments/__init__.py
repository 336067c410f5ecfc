"""Experiment runner, profiles and reports for reproducing the paper's comparison.

Tables, statistics, figures and the markdown report are built by private modules that
:func:`write_report` uses; selectors are named by :data:`kwtl.selection.SELECTORS`.
"""

from ._profiles import PROFILES, get_profile
from ._report import write_report
from ._tables import load_results, selector_shots_table
from ._runner import Experiment, run_experiment

__all__ = [
    "PROFILES",
    "Experiment",
    "get_profile",
    "load_results",
    "run_experiment",
    "selector_shots_table",
    "write_report",
]
