"""Streaming options: light (no torch), so the command line builds its arguments from them on every start."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.options import option

STREAMING_RECIPE = "recipes/streaming-cpu.yaml"


@dataclass
class StreamingOptions:
    """How a stream is cut into encoder steps and utterances."""

    chunk_ms: int = option(640, "Audio per encoder step, ms (a multiple of the model's 40 ms output frame).")
    left_chunks: int | None = option(
        None, "Chunks of left context each step attends to (default: the model's attention_left_chunks)."
    )
    endpoint_silence_ms: int = option(800, "Trailing silence after speech that ends an utterance, ms.")
    vad: bool = option(
        False,
        "Detect the trailing silence with silero-vad (speech probability under 0.5); otherwise a run of CTC blanks "
        "after the last letter counts as silence.",
    )
    max_utterance_s: float = option(30.0, "An utterance that runs this long without a pause is finalised anyway.")
    onnx_step: str | None = option(
        None,
        "An ONNX encoder step exported for the same chunk_ms and left_chunks, run on onnxruntime (about twice as "
        "fast as PyTorch on a CPU). Default: the model folder's streaming_step.onnx (ai2text export writes it) when "
        "it was exported for these chunks, else PyTorch steps.",
    )
