"""Turning CTC posteriors into text."""

from .greedy import DecodedUtterance, greedy_decode

__all__ = ["DecodedUtterance", "greedy_decode"]
