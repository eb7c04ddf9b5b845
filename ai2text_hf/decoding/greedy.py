"""Greedy (best path) CTC decoding: the most likely token of every frame."""

from __future__ import annotations

import torch

from .core import CTCDecoder


class GreedyDecoder(CTCDecoder):
    """Per-frame argmax over each utterance's valid frames: fast, and what training's metrics use."""

    name = "greedy"

    def best_paths(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        ids = log_probs.argmax(-1)
        return [row[:length] for row, length in zip(ids, lengths.tolist())]
