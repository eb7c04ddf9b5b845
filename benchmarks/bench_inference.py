"""Inference real-time factor, features included: our CTC model vs Wav2Vec2ForCTC of the same size.

The baseline is transformers' Wav2Vec2ForCTC with its default convolutional feature encoder, hidden
size and depth scaled to about the same parameter count, randomly initialised (speed does not depend
on the weights). Both transcribe the same waveforms: ours from raw audio through the log-mel
extractor, Wav2Vec2 from raw audio through its conv encoder.

Each model runs twice: in PyTorch, and exported to ONNX the way ``ai2text export`` does it (torch's
TorchScript exporter, dynamic batch and time axes) on onnxruntime's CPU provider, which is how an
exported folder is served and transcribed. Both models go through the same exporter, so each runtime
compares like with like; the last column is what a user gets from our export against the baseline as
transformers runs it. Our export is also timed int8-quantized (``ai2text export --quantize int8``).

A last table says what limits the main path (PyTorch, fp32, one thread): the model's floating-point
operations per second of audio against the rate this core reaches on one large matrix product, measured in
the same run.

    .venv/bin/python -m benchmarks.bench_inference [--model runs/demo/model]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

from ai2text_hf import AI2TextConfig, AI2TextFeatureExtractor, AI2TextForCTC
from ai2text_hf.export.onnx import export_onnx, quantize_onnx
from ai2text_hf.onnx_model import ONNX_NAME, OnnxCTCModel, session_options

from .common import best_time, demo_waveforms, forward_flops, matmul_gflops, print_table


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
    values, mask = padded_samples([np.zeros(32000, np.float32), np.zeros(21920, np.float32)])
    example = {"input_values": torch.from_numpy(values), "attention_mask": torch.from_numpy(mask)}
    return export_onnx(model, example, path)


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
    example = extractor(waves[:2], sampling_rate=16000, return_tensors="pt")  # padded: the mask path is traced
    example = {"input_features": example["input_features"], "attention_mask": example["attention_mask"].bool()}
    export_onnx(ours, example, exported / ONNX_NAME)
    quantized = exported / "int8"
    ours.config.save_pretrained(quantized)
    quantize_onnx(exported / ONNX_NAME, quantized / ONNX_NAME)
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

    torch_rows, onnx_rows, int8_rows = [], [], []
    for threads, batch in ((1, 1), (2, 8)):
        torch.set_num_threads(threads)
        options = session_options()  # the same settings as our OnnxCTCModel
        baseline_session = onnxruntime.InferenceSession(str(baseline_onnx), options, providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            t_ours = best_time(functools.partial(run_ours, ours, batch), repeats=2)
            t_base = best_time(functools.partial(run_baseline_torch, batch), repeats=2)
            t_ours_onnx = best_time(functools.partial(run_ours, OnnxCTCModel(exported), batch), repeats=2)
            t_base_onnx = best_time(functools.partial(run_baseline_onnx, baseline_session, batch), repeats=2)
            t_int8 = best_time(functools.partial(run_ours, OnnxCTCModel(quantized), batch), repeats=2)
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
        int8_rows.append(
            (
                setting,
                f"{t_int8 / audio_seconds:.4f}",
                f"{t_ours / t_int8:.2f}x",
                f"{t_base / t_int8:.1f}x",
                f"{t_base_onnx / t_int8:.1f}x",
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
    print_table(
        "Inference RTF of the int8 export (`ai2text export --quantize int8`) on onnxruntime, features included",
        int8_rows,
        ("setting", "ai2text int8 RTF", "vs ai2text PyTorch", "vs Wav2Vec2 PyTorch", "vs Wav2Vec2 ONNX"),
    )


def model_flops(model: AI2TextForCTC, features: list[dict]) -> float:
    """Floating-point operations of one forward pass over each of ``features``, one utterance at a time."""
    with torch.inference_mode():
        return sum(forward_flops(lambda inputs=inputs: model(**inputs).logits, model.config) for inputs in features)


def measure_ceiling(ours: AI2TextForCTC, extractor: AI2TextFeatureExtractor, waves: list[np.ndarray]) -> None:
    """The main path's time at one thread against its arithmetic: how far from this core's limit it runs."""
    torch.set_num_threads(1)
    audio_seconds = sum(len(w) for w in waves) / 16000
    features = [extractor(w, sampling_rate=16000, return_tensors="pt") for w in waves]

    def run_features():
        for w in waves:
            extractor(w, sampling_rate=16000, return_tensors="pt")

    def run_model():
        for inputs in features:
            ours(**inputs)

    with torch.inference_mode():
        t_features = best_time(run_features, repeats=2)
        t_model = best_time(run_model, repeats=2)
    peak = matmul_gflops(threads=1)
    flops_per_second = model_flops(ours, features) / audio_seconds
    floor, model_rtf = flops_per_second / (peak * 1e9), t_model / audio_seconds
    rows = [
        ("model arithmetic", f"{flops_per_second / 1e6:.0f} MFLOP per second of audio"),
        ("one core on a 1024x1024 fp32 matrix product", f"{peak:.0f} GFLOP/s"),
        ("model RTF if every operation ran at that rate", f"{floor:.4f}"),
        ("model RTF measured (PyTorch fp32, batch 1)", f"{model_rtf:.4f} ({floor / model_rtf:.0%} of that rate)"),
        ("feature extraction RTF measured", f"{t_features / audio_seconds:.4f}"),
    ]
    print_table(
        "What limits the main path: PyTorch fp32, 1 thread, batch 1, same audio",
        rows,
        ("quantity", "value"),
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
    measure_ceiling(ours, extractor, waves)


if __name__ == "__main__":
    main()
