"""Inference real-time factor, features included: our CTC model vs Wav2Vec2ForCTC of the same size.

The baseline is transformers' Wav2Vec2ForCTC with its default convolutional feature encoder, hidden
size and depth scaled to about the same parameter count, randomly initialised (speed does not depend
on the weights). Both transcribe the same waveforms: ours from raw audio through the log-mel
extractor, Wav2Vec2 from raw audio through its conv encoder.

Each model runs twice: in PyTorch, and exported to ONNX the way ``ai2text export`` does it (torch's
TorchScript exporter, dynamic batch and time axes) on onnxruntime's CPU provider, which is how an
exported folder is served and transcribed. Both models go through the same exporter, so each runtime
compares like with like; the last column is what a user gets from our export against the baseline as
transformers runs it.

    .venv/bin/python -m benchmarks.bench_inference [--model runs/demo/model]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

from ai2text_hf import AI2TextConfig, AI2TextFeatureExtractor, AI2TextForCTC
from ai2text_hf.export.onnx import export_onnx
from ai2text_hf.onnx_model import ONNX_NAME, OnnxCTCModel

from .common import best_time, demo_waveforms, print_table


def _params(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def wav2vec2_like(target_millions: float) -> Wav2Vec2ForCTC:
    """Smallest Wav2Vec2ForCTC (default conv encoder) whose size reaches ``target_millions``."""
    for hidden in range(96, 1024, 16):
        config = Wav2Vec2Config(
            vocab_size=96,
            hidden_size=hidden,
            num_hidden_layers=6,
            num_attention_heads=4,
            intermediate_size=4 * hidden,
            num_conv_pos_embeddings=64,
            num_conv_pos_embedding_groups=8,
        )
        model = Wav2Vec2ForCTC(config)
        if _params(model) >= target_millions:
            return model.eval()
    raise RuntimeError("no Wav2Vec2 size matched")


def export_wav2vec2(model: Wav2Vec2ForCTC, path: Path) -> Path:
    """The baseline through the same exporter as ours: raw samples and a mask in, logits out."""
    values = torch.randn(2, 32000)
    mask = torch.ones(2, 32000, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings, as for ours
        torch.onnx.export(
            model, (values, mask), str(path), dynamo=False, input_names=["input_values", "attention_mask"],
            output_names=["logits"], opset_version=17,
            dynamic_axes={"input_values": {0: "batch", 1: "samples"}, "attention_mask": {0: "batch", 1: "samples"}},
        )  # fmt: skip
    return path


def padded_samples(chunk: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    longest = max(len(w) for w in chunk)
    values = np.stack([np.pad(w, (0, longest - len(w))) for w in chunk]).astype(np.float32)
    mask = np.stack([np.arange(longest) < len(w) for w in chunk]).astype(np.int64)
    return values, mask


def measure(
    ours: AI2TextForCTC,
    extractor: AI2TextFeatureExtractor,
    baseline: Wav2Vec2ForCTC,
    waves: list[np.ndarray],
    exported: Path,
) -> None:
    """Time both models in PyTorch and, exported into ``exported``, on onnxruntime; print both tables."""
    import onnxruntime

    audio_seconds = sum(len(w) for w in waves) / 16000
    ours.config.save_pretrained(exported)
    export_onnx(ours, exported / ONNX_NAME)
    baseline_onnx = export_wav2vec2(baseline, exported / "wav2vec2.onnx")

    def run_ours(model, batch: int):
        for start in range(0, len(waves), batch):
            inputs = extractor(waves[start : start + batch], sampling_rate=16000, return_tensors="pt")
            model(**inputs)

    def run_baseline_torch(batch: int):
        for start in range(0, len(waves), batch):
            values, mask = padded_samples(waves[start : start + batch])
            baseline(input_values=torch.from_numpy(values), attention_mask=torch.from_numpy(mask))

    def run_baseline_onnx(session, batch: int):
        for start in range(0, len(waves), batch):
            values, mask = padded_samples(waves[start : start + batch])
            session.run(["logits"], {"input_values": values, "attention_mask": mask})

    torch_rows, onnx_rows = [], []
    for threads, batch in ((1, 1), (2, 8)):
        torch.set_num_threads(threads)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        baseline_session = onnxruntime.InferenceSession(str(baseline_onnx), options, providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            t_ours = best_time(functools.partial(run_ours, ours, batch), repeats=2)
            t_base = best_time(functools.partial(run_baseline_torch, batch), repeats=2)
            t_ours_onnx = best_time(functools.partial(run_ours, OnnxCTCModel(exported), batch), repeats=2)
            t_base_onnx = best_time(functools.partial(run_baseline_onnx, baseline_session, batch), repeats=2)
        setting = f"{threads} thread(s), batch {batch}"
        torch_rows.append(
            (
                setting,
                f"{t_ours / audio_seconds:.4f} ({_params(ours):.1f} M)",
                f"{t_base / audio_seconds:.4f} ({_params(baseline):.1f} M)",
                f"{t_base / t_ours:.1f}x",
            )
        )
        onnx_rows.append(
            (
                setting,
                f"{t_ours_onnx / audio_seconds:.4f}",
                f"{t_base_onnx / audio_seconds:.4f}",
                f"{t_base_onnx / t_ours_onnx:.1f}x",
                f"{t_base / t_ours_onnx:.1f}x",
            )
        )
    print_table(
        f"Inference RTF in PyTorch, features included, {len(waves)} utterances, {audio_seconds:.0f} s of audio",
        torch_rows,
        ("setting", "ai2text RTF", "Wav2Vec2ForCTC RTF", "speed-up"),
    )
    print_table(
        "Inference RTF on onnxruntime (both exported by torch.onnx, as `ai2text export` does), same audio",
        onnx_rows,
        ("setting", "ai2text RTF", "Wav2Vec2ForCTC RTF", "speed-up", "ai2text ONNX vs Wav2Vec2 PyTorch"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="a trained model folder (default: the demo architecture, random init)")
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args()
    if args.model:  # the model's own features: log-mels, and pitch columns when it was trained with them
        ours, extractor = AI2TextForCTC.from_pretrained(args.model), AI2TextFeatureExtractor.from_pretrained(args.model)
    else:  # the demo architecture: pitch columns on, as recipes/demo-cpu.yaml
        ours, extractor = AI2TextForCTC(AI2TextConfig(num_pitch_features=3)), AI2TextFeatureExtractor(pitch=True)
    baseline = wav2vec2_like(_params(ours))
    waves = demo_waveforms(args.count)
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as folder:
        measure(ours.eval(), extractor, baseline, waves, Path(folder))


if __name__ == "__main__":
    main()
