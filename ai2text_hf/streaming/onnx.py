"""The streaming encoder step on onnxruntime: a graph ``ai2text_hf.export.streaming`` wrote, shared by sessions.

The graph says what it was exported for in its metadata (``chunk_frames``, ``left_chunks``) and its state inputs
have fixed shapes, so a step needs neither the PyTorch model nor its weights: an exported folder streams alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..onnx_model import ONNX_TYPES, session_options

STATE_NAMES = ("context", "attention_cache", "conv_cache", "cache_mask")
# An exported model folder's streaming step (``ai2text export`` writes it for a model trained to stream).
STEP_NAME = "streaming_step.onnx"


class OnnxStreamingStep:
    """One exported step graph (an onnxruntime session, safe to run from several threads); each stream keeps its
    own state, starting from :attr:`initial`."""

    def __init__(self, path: str | Path):
        import onnxruntime

        self.path = Path(path)
        options = session_options()
        # A step is a few frames: too small to split across threads; concurrent streams (the server) use the cores.
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.chunk_frames = int(metadata["chunk_frames"]) if "chunk_frames" in metadata else None
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.cache_frames = int(inputs["cache_mask"].shape[1])
        self.initial = {  # zeros, and a cache mask with nothing filled
            name: np.zeros(inputs[name].shape, dtype=ONNX_TYPES[inputs[name].type]) for name in STATE_NAMES
        }

    def check(self, chunk_frames: int, cache_frames: int) -> None:
        """Raise unless the graph was exported for chunks of ``chunk_frames`` and ``cache_frames`` of left context."""
        if cache_frames != self.cache_frames or self.chunk_frames not in (None, chunk_frames):
            exported = f"{self.chunk_frames} frames per chunk, " if self.chunk_frames else ""
            raise ValueError(
                f"{self.path} was exported for {exported}{self.cache_frames} frames of left context, but these options "
                f"give {chunk_frames} and {cache_frames} (left_chunks x chunk frames): export it again with the same "
                "chunk_ms and left_chunks."
            )

    def run(self, features: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """A chunk's logits (1, frames, vocab) and the stream's next state."""
        logits, *next_state = self.session.run(None, {"features": features.astype(np.float32), **state})
        return logits, dict(zip(STATE_NAMES, next_state))
