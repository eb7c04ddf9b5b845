"""The ``evaluate`` metric module: ``evaluate.load(METRIC_PATH)`` works offline."""

from pathlib import Path

METRIC_PATH = str(Path(__file__).resolve().parent)

__all__ = ["METRIC_PATH"]
