"""Scoring a model on a prepared dataset split, reporting and comparing the results."""

from .compare import compare_files, format_comparison
from .evaluate import evaluate_split
from .report import format_report, load_results

__all__ = ["compare_files", "evaluate_split", "format_comparison", "format_report", "load_results"]
