"""Scoring a model on a prepared dataset split."""

from .evaluate import evaluate_split

__all__ = ["evaluate_split"]
