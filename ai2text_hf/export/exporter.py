"""``ai2text export``: a model folder in, an ONNX model folder with a parity report out.

The output folder holds ``model.onnx`` (the final graph: exported, then int8-quantized and/or
graph-optimised on request), the configuration, tokenizer and feature-extractor files, so
``ai2text transcribe --model OUTPUT`` and every other Transcriber user runs it on onnxruntime, and
``export_report.json`` with sizes and the parity against the PyTorch model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.loading import load_scoring_split
from ..decoding import DecodingOptions
from ..inference import Transcriber
from ..language_model_ai2text import LM_FOLDER
from ..onnx_model import ONNX_NAME
from .onnx import OPSET, export_onnx, optimize_onnx, quantize_onnx
from .parity import compare_models

REPORT_NAME = "export_report.json"
QUANTIZATIONS = ("int8",)
# Without a dataset, parity runs on the model's inputs of seeded noise: these many utterances of 1-6 s.
RANDOM_UTTERANCES = 8
# The export is traced on two inputs of these lengths (seconds): a padded batch, so the mask path is recorded.
TRACE_SECONDS = (2.0, 1.37)


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
) -> ExportResult:
    """Export ``model_path`` to ONNX in ``output_path`` and check it against the PyTorch model.

    Args:
        optimize: apply onnxruntime's offline graph optimisation to the final graph.
        quantize: ``"int8"`` for int8 dynamic quantization of the weight matrices.
        dataset, split, limit: a prepared dataset to check parity (and WER/CER) on; random features otherwise.
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
    }
    (output_dir / REPORT_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return ExportResult(output_dir=output_dir, report=report)


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
    return "\n".join(lines)
