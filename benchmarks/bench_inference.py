"""Inference real-time factor, features included: our CTC model vs Wav2Vec2ForCTC of the same size.

The baseline is transformers' Wav2Vec2ForCTC with its default convolutional feature encoder, hidden
size and depth scaled to about the same parameter count, randomly initialised (speed does not depend
on the weights). Both transcribe the same waveforms: ours from raw audio through the log-mel
extractor, Wav2Vec2 from raw audio through its conv encoder.

    .venv/bin/python -m benchmarks.bench_inference [--model runs/demo/model]
"""

from __future__ import annotations

import argparse
import functools

import numpy as np
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

from ai2text_hf import AI2TextConfig, AI2TextFeatureExtractor, AI2TextForCTC

from .common import best_time, demo_waveforms, print_table


def _params(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def wav2vec2_like(target_millions: float) -> Wav2Vec2ForCTC:
    """Smallest Wav2Vec2ForCTC (default conv encoder) whose size reaches ``target_millions``."""
    for hidden in range(96, 1024, 16):
        config = Wav2Vec2Config(
            vocab_size=96, hidden_size=hidden, num_hidden_layers=6, num_attention_heads=4,
            intermediate_size=4 * hidden, num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=8,
        )
        model = Wav2Vec2ForCTC(config)
        if _params(model) >= target_millions:
            return model.eval()
    raise RuntimeError("no Wav2Vec2 size matched")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="a trained model folder (default: the demo architecture, random init)")
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args()
    ours = (AI2TextForCTC.from_pretrained(args.model) if args.model else AI2TextForCTC(AI2TextConfig())).eval()
    extractor = AI2TextFeatureExtractor()
    baseline = wav2vec2_like(_params(ours))
    waves = demo_waveforms(args.count)
    audio_seconds = sum(len(w) for w in waves) / 16000

    @torch.inference_mode()
    def run_ours(batch: int):
        for start in range(0, len(waves), batch):
            inputs = extractor(waves[start : start + batch], sampling_rate=16000, return_tensors="pt")
            ours(**inputs)

    @torch.inference_mode()
    def run_baseline(batch: int):
        for start in range(0, len(waves), batch):
            chunk = waves[start : start + batch]
            longest = max(len(w) for w in chunk)
            values = torch.from_numpy(np.stack([np.pad(w, (0, longest - len(w))) for w in chunk]))
            mask = torch.from_numpy(np.stack([np.arange(longest) < len(w) for w in chunk])).long()
            baseline(input_values=values, attention_mask=mask)

    rows = []
    for threads, batch in ((1, 1), (2, 8)):
        torch.set_num_threads(threads)
        t_ours = best_time(functools.partial(run_ours, batch), repeats=2)
        t_base = best_time(functools.partial(run_baseline, batch), repeats=2)
        rows.append(
            (
                f"{threads} thread(s), batch {batch}",
                f"{t_ours / audio_seconds:.4f} ({_params(ours):.1f} M)",
                f"{t_base / audio_seconds:.4f} ({_params(baseline):.1f} M)",
                f"{t_base / t_ours:.1f}x",
            )
        )
    print_table(
        f"Inference RTF, features included, {len(waves)} utterances, {audio_seconds:.0f} s of audio",
        rows,
        ("setting", "ai2text RTF", "Wav2Vec2ForCTC RTF", "speed-up"),
    )


if __name__ == "__main__":
    main()
