"""Experiment runner, profiles and reports for reproducing the paper's comparison."""
from ._paper import PAPER_TABLE2, PAPER_TABLE4_PLFT, paper_comparison_rows
from ._profiles import PROFILES, get_profile
from ._report import (load_results, plot_miou_vs_shots, plot_selection, selector_shots_table,
                      summary_table, wilcoxon_table, write_report)
from ._runner import SELECTOR_NAMES, Experiment, make_selector, run_experiment

__all__ = [
    "PAPER_TABLE2",
    "PAPER_TABLE4_PLFT",
    "PROFILES",
    "SELECTOR_NAMES",
    "Experiment",
    "get_profile",
    "load_results",
    "make_selector",
    "paper_comparison_rows",
    "plot_miou_vs_shots",
    "plot_selection",
    "run_experiment",
    "selector_shots_table",
    "summary_table",
    "wilcoxon_table",
    "write_report",
]
