"""Cross-validation for the paper's leave-one-dataset-out protocol."""

from ._split import LeaveOneDatasetOut, authors_splits, benchmark_to_Xy

__all__ = ["LeaveOneDatasetOut", "authors_splits", "benchmark_to_Xy"]
