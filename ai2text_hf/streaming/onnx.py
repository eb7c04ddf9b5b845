"""The streaming encoder step on onnxruntime: a graph ``ai2text_hf.export.streaming`` wrote, shared by sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..modeling_ai2text import AI2TextForCTC

STATE_NAMES = ("context", "attention_cache", "conv_cache", "cache_mask")


def initial_state(model: AI2TextForCTC, cache_frames: int) -> dict[str, np.ndarray]:
    """The ONNX step's state at a stream's start: zeros, and a cache mask with nothing filled."""
    context, attention, conv = model.streaming_state()
    attention = attention.new_zeros(*attention.shape[:4], cache_frames, attention.shape[5])
    tensors = (context, attention, conv, torch.zeros(1, cache_frames, dtype=torch.bool))
    return {name: tensor.cpu().numpy() for name, tensor in zip(STATE_NAMES, tensors)}


class OnnxStreamingStep:
    """One exported step graph (an onnxruntime session, safe to run from several threads); each stream keeps its
    own state, starting from :attr:`initial`."""

    def __init__(self, path: str | Path, model: AI2TextForCTC, cache_frames: int, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        exported = self.session.get_inputs()[-1].shape[1]
        if exported != cache_frames:
            raise ValueError(
                f"{path} was exported for {exported} frames of left context, but these options give {cache_frames} "
                "(left_chunks x chunk frames): export it again with the same chunk_ms and left_chunks."
            )
        self.initial = initial_state(model, cache_frames)

    def run(self, features: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """A chunk's logits (1, frames, vocab) and the stream's next state."""
        logits, *next_state = self.session.run(None, {"features": features.astype(np.float32), **state})
        return logits, dict(zip(STATE_NAMES, next_state))
