"""The streaming encoder step as ONNX: one chunk in, its logits and the stream's next state out.

The graph is :meth:`AI2TextForCTC.forward_chunk` with a cache of fixed size (``left_chunks * chunk`` frames) and a
mask of its filled entries, so every input but the chunk's own length has a fixed shape (as WeNet's and sherpa's
streaming exports do); a runtime keeps the four state tensors between calls (``StreamingOptions.onnx_step`` runs
it in streaming sessions through :class:`~ai2text_hf.streaming.onnx.OnnxStreamingStep`).
Parity: the ONNX steps against the PyTorch steps over the same stream (:func:`streaming_parity`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..modeling_ai2text import AI2TextForCTC
from ..streaming.onnx import STATE_NAMES, OnnxStreamingStep
from .onnx import OPSET, quantize_onnx


class _StreamingStep(torch.nn.Module):
    """``forward_chunk`` with a fixed-size cache and its mask, by position (what the exporter traces)."""

    def __init__(self, model: AI2TextForCTC, cache_frames: int):
        super().__init__()
        self.model = model
        self.cache_frames = cache_frames

    def forward(self, features, context, attention_cache, conv_cache, cache_mask):
        logits, context, attention_cache, conv_cache = self.model.forward_chunk(
            features, context, attention_cache, conv_cache, self.cache_frames, cache_mask
        )
        filled = torch.cat([cache_mask, cache_mask.new_ones(1, logits.shape[1])], dim=1)[:, -self.cache_frames :]
        return logits, context, attention_cache, conv_cache, filled


def export_streaming_onnx(
    model: AI2TextForCTC, path: str | Path, chunk_frames: int, left_chunks: int, quantize: bool = False
) -> Path:
    """Write the streaming step of ``model`` for chunks of ``chunk_frames`` output frames and ``left_chunks`` of left
    context to ``path`` (int8 dynamic quantization with ``quantize``, as ``ai2text export --quantize int8``).

    Inputs: ``features`` (1, frames, columns), up to ``subsampling_factor * chunk_frames`` frames (the last chunk of
    a stream may be shorter), and the state (:attr:`OnnxStreamingStep.initial` at the start); outputs: ``logits`` and
    the next state. The graph records ``chunk_frames`` and ``left_chunks`` in its metadata.
    """
    if left_chunks < 1:
        raise ValueError(f"left_chunks must be at least 1 for the ONNX step (a cache to carry), got {left_chunks}")
    path = Path(path)
    cache_frames = left_chunks * chunk_frames
    model = model.cpu().eval()
    step = _StreamingStep(model, cache_frames).eval()
    context, attention, conv = model.streaming_state()
    attention = attention.new_zeros(*attention.shape[:4], cache_frames, attention.shape[5])  # fixed size, masked
    state = dict(zip(STATE_NAMES, (context, attention, conv, torch.zeros(1, cache_frames, dtype=torch.bool))))
    columns = model.config.n_mels + model.config.num_pitch_features
    features = torch.randn(1, model.config.subsampling_factor * chunk_frames, columns)
    target = path.with_suffix(".float.onnx") if quantize else path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shapes read as numbers: the graph is checked below
        torch.onnx.export(
            step,
            (features, *state.values()),
            str(target),
            dynamo=False,
            input_names=["features", *STATE_NAMES],
            output_names=["logits", *(f"next_{name}" for name in STATE_NAMES)],
            dynamic_axes={"features": {1: "frames"}, "logits": {1: "logit_frames"}},
            opset_version=OPSET,
        )
    if quantize:
        quantize_onnx(target, path)
        target.unlink()
    import onnx

    graph = onnx.load(str(path))  # what the step was exported for, read back by OnnxStreamingStep
    onnx.helper.set_model_props(graph, {"chunk_frames": str(chunk_frames), "left_chunks": str(left_chunks)})
    onnx.save(graph, str(path))
    return path


def streaming_parity(
    model: AI2TextForCTC, path: str | Path, chunk_frames: int, left_chunks: int, features: torch.Tensor
) -> dict[str, float]:
    """The ONNX steps against the PyTorch steps over one stream of ``features`` (1, frames, columns): the largest
    logit difference, and the share of frames whose best token agrees."""
    cache_frames = left_chunks * chunk_frames
    step = OnnxStreamingStep(path)
    step.check(chunk_frames, cache_frames)
    onnx_state = step.initial
    state = model.streaming_state()
    size = model.config.subsampling_factor * chunk_frames
    ours, theirs = [], []
    with torch.inference_mode():
        for start in range(0, features.shape[1], size):
            chunk = features[:, start : start + size]
            logits, *state = model.forward_chunk(chunk, *state, cache_frames)
            ours.append(logits[0].numpy())
            logits, onnx_state = step.run(chunk.numpy(), onnx_state)
            theirs.append(logits[0])
    ours_all, theirs_all = np.concatenate(ours), np.concatenate(theirs)
    return {
        "max_abs_logit_diff": float(np.abs(ours_all - theirs_all).max()),
        "argmax_agreement": float((ours_all.argmax(-1) == theirs_all.argmax(-1)).mean()),
        "frames": int(len(ours_all)),
    }
