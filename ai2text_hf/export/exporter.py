"""``ai2text export``: a model folder in, an ONNX model folder with a parity report out.

The output folder holds ``model.onnx`` (the final graph: exported, then int8-quantized and/or
graph-optimised on request), the configuration, tokenizer and feature-extractor files, so
``ai2text transcribe --model OUTPUT`` and every other Transcriber user runs it on onnxruntime, and
``export_report.json`` with sizes and the parity against the PyTorch model. A model trained to stream also gets
its encoder step (``streaming_step.onnx``, quantized alike) for one chunk size, with the parity of the ONNX steps
against the PyTorch steps: ``ai2text transcribe --stream`` and the server's ``/stream`` run it from the folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.loading import load_scoring_split
from ..decoding import DecodingOptions
from ..inference import Transcriber
from ..language_model_ai2text import LM_FOLDER
from ..onnx_model import ONNX_NAME
from ..streaming import StreamingNotSupportedError, StreamingOptions, StreamingRecognizer
from ..streaming.onnx import STEP_NAME
from .onnx import OPSET, export_onnx, optimize_onnx, quantize_onnx
from .parity import compare_models
from .streaming import export_streaming_onnx, streaming_parity

REPORT_NAME = "export_report.json"
QUANTIZATIONS = ("int8",)
# Without a dataset, parity runs on the model's inputs of seeded noise: these many utterances of 1-6 s.
RANDOM_UTTERANCES = 8
# The export is traced on two inputs of these lengths (seconds): a padded batch, so the mask path is recorded.
TRACE_SECONDS = (2.0, 1.37)
# The streaming step's parity runs over the parity inputs joined into one stream of at most this many input frames.
STREAM_PARITY_FRAMES = 6000


@dataclass
class ExportResult:
    output_dir: Path
    report: dict


def _parity_inputs(
    transcriber: Transcriber, dataset: str | Path | None, split: str, limit: int | None
) -> tuple[list[np.ndarray], list[str] | None, str]:
    """Model inputs (and reference texts) to compare the two models on, and a line saying what they are."""
    if dataset is None:
        rng = np.random.default_rng(0)
        rate = transcriber.feature_extractor.sampling_rate
        noise = [
            0.1 * rng.standard_normal(int(rng.uniform(1.0, 6.0) * rate)).astype(np.float32)
            for _ in range(RANDOM_UTTERANCES)
        ]
        return transcriber.inputs(noise), None, f"{RANDOM_UTTERANCES} random noise inputs (no --dataset given)"
    rows = load_scoring_split(
        dataset, split, transcriber.feature_extractor, transcriber.folder.architecture, limit, "check parity on"
    ).dataset
    inputs = [np.asarray(f, dtype=np.float32) for f in rows[:]["input_features"]]
    return inputs, list(rows["text"]), f"{dataset} split {split} ({len(rows)} utterances)"


def _trace_example(transcriber: Transcriber) -> dict:
    """The model's arguments for a padded batch of two noise inputs of different lengths, to trace the export on."""
    rng = np.random.default_rng(0)
    rate = transcriber.feature_extractor.sampling_rate
    noise = [0.1 * rng.standard_normal(int(seconds * rate)).astype(np.float32) for seconds in TRACE_SECONDS]
    return transcriber.model_arguments(transcriber.inputs(noise))[0]


def export_model(
    model_path: str | Path,
    output_path: str | Path,
    optimize: bool = False,
    quantize: str | None = None,
    dataset: str | Path | None = None,
    split: str = "test",
    limit: int | None = None,
    stream_chunk_ms: int | None = None,
) -> ExportResult:
    """Export ``model_path`` to ONNX in ``output_path`` and check it against the PyTorch model.

    Args:
        optimize: apply onnxruntime's offline graph optimisation to the final graph.
        quantize: ``"int8"`` for int8 dynamic quantization of the weight matrices.
        dataset, split, limit: a prepared dataset to check parity (and WER/CER) on; random features otherwise.
        stream_chunk_ms: the chunk size the streaming step is exported for (a model trained to stream only;
            default :class:`StreamingOptions`'), with the model's own ``attention_left_chunks``.
    """
    model_dir, output_dir = Path(model_path), Path(output_path)
    if quantize not in (None, *QUANTIZATIONS):
        raise ValueError(f"Unknown quantization {quantize!r}: choose one of {', '.join(QUANTIZATIONS)}.")
    if (model_dir / ONNX_NAME).is_file():
        raise ValueError(f"{model_dir} is already an ONNX export: point --model at the PyTorch model folder.")
    if output_dir.resolve() == model_dir.resolve():
        raise ValueError("--output must be another folder than --model: the export does not replace the model.")
    if (output_dir / "config.json").is_file() and not (output_dir / REPORT_NAME).is_file():
        raise FileExistsError(f"{output_dir} holds a model folder that is not an export; choose an empty --output.")
    # Checks the folder; its model is the one exported. Parity compares greedy texts (what the model alone says).
    reference = Transcriber(model_dir, device="cpu", decoding=DecodingOptions())
    features, references, described = _parity_inputs(reference, dataset, split, limit)  # bad data: before writing
    streaming = _streaming_recognizer(reference, stream_chunk_ms)  # a bad chunk size: before writing too
    output_dir.mkdir(parents=True, exist_ok=True)
    reference.model.config.save_pretrained(str(output_dir))
    reference.folder.save_processing(output_dir)
    if (model_dir / LM_FOLDER).is_dir():  # the export decodes with the model's LM by default, as the model does
        shutil.copytree(model_dir / LM_FOLDER, output_dir / LM_FOLDER, dirs_exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        graph = export_onnx(reference.model, _trace_example(reference), Path(tmp) / "exported.onnx")
        if quantize:
            graph = quantize_onnx(graph, Path(tmp) / "quantized.onnx")
        if optimize:
            graph = optimize_onnx(graph, Path(tmp) / "optimized.onnx")
        shutil.move(graph, output_dir / ONNX_NAME)

    exported = Transcriber(output_dir, decoding=DecodingOptions())
    weights = sorted(reference.folder.path.glob("*.safetensors"))
    report = {
        "model": str(model_dir),
        "architecture": reference.folder.architecture,
        "format": "onnx",
        "opset": OPSET,
        "quantize": quantize,
        "optimize": optimize,
        "pytorch_bytes": sum(w.stat().st_size for w in weights),
        "onnx_bytes": (output_dir / ONNX_NAME).stat().st_size,
        "parity_data": described,
        "parity": compare_models(reference, exported, features, references),
        "streaming": streaming and _export_streaming_step(streaming, output_dir / STEP_NAME, quantize, features),
    }
    (output_dir / REPORT_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return ExportResult(output_dir=output_dir, report=report)


def _streaming_recognizer(reference: Transcriber, chunk_ms: int | None) -> StreamingRecognizer | None:
    """The PyTorch streaming recognizer whose step is exported, None for a model that cannot stream (then
    ``chunk_ms`` must not be given); a chunk size the model cannot take raises."""
    options = StreamingOptions() if chunk_ms is None else StreamingOptions(chunk_ms=chunk_ms)
    try:
        return StreamingRecognizer(reference.folder, options)
    except StreamingNotSupportedError:
        if chunk_ms is not None:
            raise
        return None


def _export_streaming_step(
    recognizer: StreamingRecognizer, path: Path, quantize: str | None, features: list[np.ndarray]
) -> dict:
    """Write the streaming step to ``path``; its parity with the PyTorch steps over ``features`` as one stream."""
    export_streaming_onnx(recognizer.model, path, recognizer.chunk_frames, recognizer.left_chunks, bool(quantize))
    stream = torch.from_numpy(np.concatenate(features)[:STREAM_PARITY_FRAMES])[None]
    parity = streaming_parity(recognizer.model, path, recognizer.chunk_frames, recognizer.left_chunks, stream)
    return {
        "file": STEP_NAME,
        "chunk_ms": recognizer.options.chunk_ms,
        "left_chunks": recognizer.left_chunks,
        "onnx_bytes": path.stat().st_size,
        "parity": parity,
    }


def format_export_report(report: dict) -> str:
    """The report as the lines ``ai2text export`` prints."""
    parity = report["parity"]
    lines = [
        f"ONNX (opset {report['opset']}, quantize={report['quantize'] or 'none'}, optimize={report['optimize']}): "
        f"{report['onnx_bytes'] / 1e6:.1f} MB vs {report['pytorch_bytes'] / 1e6:.1f} MB of PyTorch weights",
        f"Parity on {report['parity_data']}:",
        f"  max |logit difference|   {parity['max_abs_logit_diff']:.2e}",
        f"  identical greedy texts   {parity['identical_transcripts']}/{parity['utterances']}",
        f"  model time               PyTorch {parity['pytorch_seconds']:.3f} s, "
        f"ONNX {parity['exported_seconds']:.3f} s ({parity['speedup']:.2f}x)",
    ]
    if "wer_delta" in parity:
        lines.append(
            f"  WER {100 * parity['pytorch']['wer']:.2f}% -> {100 * parity['exported']['wer']:.2f}% "
            f"({100 * parity['wer_delta']:+.2f} pt), CER {100 * parity['pytorch']['cer']:.2f}% -> "
            f"{100 * parity['exported']['cer']:.2f}% ({100 * parity['cer_delta']:+.2f} pt)"
        )
    streaming = report.get("streaming")
    if streaming:
        step = streaming["parity"]
        lines.append(
            f"Streaming step {streaming['file']} ({streaming['chunk_ms']} ms chunks, {streaming['left_chunks']} left): "
            f"max |logit difference| {step['max_abs_logit_diff']:.2e}, same best token on "
            f"{100 * step['argmax_agreement']:.1f}% of {step['frames']} frames"
        )
    return "\n".join(lines)
