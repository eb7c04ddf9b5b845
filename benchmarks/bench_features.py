"""Feature extraction speed: ours vs WhisperFeatureExtractor (numpy) and torchaudio's Kaldi fbank.

All three get the same unpadded audio (Whisper's 30-second padding is not applied, so it is compared
on the work it shares with ours). Reports audio-seconds per second and ratios, measured in one run.

    .venv/bin/python -m benchmarks.bench_features
"""

from __future__ import annotations

import torch
import torchaudio
from transformers import WhisperFeatureExtractor

from ai2text_hf import AI2TextFeatureExtractor

from .common import best_time, demo_waveforms, print_table


def main(count: int = 200) -> None:
    waves = demo_waveforms(count)
    audio_seconds = sum(len(w) for w in waves) / 16000
    ours = AI2TextFeatureExtractor()
    with_pitch = AI2TextFeatureExtractor(pitch=True)
    whisper = WhisperFeatureExtractor(feature_size=80)

    def run_ours_batched():
        for start in range(0, len(waves), 32):
            ours(waves[start : start + 32], sampling_rate=16000, padding=False)

    def run_ours_single():
        for w in waves:
            ours(w, sampling_rate=16000, padding=False)

    def run_pitch_single():
        for w in waves:
            with_pitch(w, sampling_rate=16000, padding=False)

    def run_whisper():
        for w in waves:
            whisper._np_extract_fbank_features(w[None, :], device="cpu")

    def run_kaldi():
        for w in waves:
            torchaudio.compliance.kaldi.fbank(torch.from_numpy(w)[None, :], num_mel_bins=80, sample_frequency=16000)

    results = {
        "ai2text (batches of 32)": best_time(run_ours_batched),
        "ai2text (one by one)": best_time(run_ours_single),
        "ai2text + pitch columns (one by one; the demo model's features)": best_time(run_pitch_single),
        "WhisperFeatureExtractor (numpy)": best_time(run_whisper),
        "torchaudio Kaldi fbank": best_time(run_kaldi),
    }
    baseline = results["WhisperFeatureExtractor (numpy)"]
    rows = [
        (name, f"{audio_seconds / t:,.0f}", f"{baseline / t:.2f}x") for name, t in results.items()
    ]
    print_table(
        f"Feature extraction, {count} utterances, {audio_seconds:.0f} s of audio",
        rows,
        ("extractor", "audio-s per s (x real time)", "vs Whisper"),
    )


if __name__ == "__main__":
    main()
