"""Waveform augmentation for the on-the-fly data path (train split only), as the training guide configures it.

Each utterance gets its own random stream derived from ``(seed, epoch, utterance id)``, so an epoch's
augmented audio is the same however batches are composed, on any number of workers, and after a resume.
Tempo changes (speed perturbation, time stretch) change the length; the caller passes ``fits`` so an
utterance whose transcript would no longer fit the CTC frames keeps its original tempo instead.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import librosa
import numpy as np
import soxr

#: Augmentation types of the guide's ``augmentation.types``.
TYPES = ("noise", "volume", "shift", "stretch")


class WaveformAugmenter:
    """Applies each enabled type with probability ``prob``, plus speed perturbation when ``speed_perturb`` is set.

    Args:
        types: subset of :data:`TYPES`.
        prob: chance that each type is applied to an utterance.
        noise_snr_db: [low, high] signal-to-noise ratio of added white noise.
        volume_db: [low, high] gain.
        shift_ms: the start moves by up to this much silence (inserted before or appended after the speech,
            so no speech is ever cut).
        stretch: [low, high] time-stretch rate (phase vocoder, pitch kept); > 1 is faster, hence shorter.
        speed_perturb: speed factors drawn uniformly per utterance (Kaldi-style: resampling, so pitch moves
            too); 1.0 in the list keeps some utterances unchanged.
        sample_rate: of the waveforms.
        seed: base seed (the run's).
    """

    def __init__(
        self,
        types: Sequence[str] = TYPES,
        prob: float = 0.5,
        noise_snr_db: Sequence[float] = (10.0, 30.0),
        volume_db: Sequence[float] = (-6.0, 6.0),
        shift_ms: float = 100.0,
        stretch: Sequence[float] = (0.9, 1.1),
        speed_perturb: Sequence[float] = (),
        sample_rate: int = 16000,
        seed: int = 0,
    ):
        unknown = sorted(set(types) - set(TYPES))
        if unknown:
            raise ValueError(f"Unknown augmentation type(s) {unknown}: augmentation.types takes {list(TYPES)}.")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"augmentation.prob must be between 0 and 1, got {prob}")
        for name, pair in (("noise_snr_db", noise_snr_db), ("volume_db", volume_db), ("stretch", stretch)):
            if len(pair) != 2 or pair[0] > pair[1]:
                raise ValueError(f"augmentation.{name} must be [low, high], got {list(pair)}")
        if min(stretch) <= 0 or any(factor <= 0 for factor in speed_perturb):
            raise ValueError("augmentation.stretch and augmentation.speed_perturb factors must be positive")
        self.types = tuple(types)
        self.prob = prob
        self.noise_snr_db = tuple(noise_snr_db)
        self.volume_db = tuple(volume_db)
        self.shift_ms = shift_ms
        self.stretch = tuple(stretch)
        self.speed_perturb = tuple(speed_perturb)
        self.sample_rate = sample_rate
        self.seed = seed

    def rng(self, epoch: int, utterance_id: str) -> np.random.Generator:
        """The random stream of one utterance in one epoch."""
        return np.random.default_rng([self.seed, epoch, zlib.crc32(utterance_id.encode("utf-8"))])

    def __call__(
        self,
        wave: np.ndarray,
        rng: np.random.Generator,
        fits: Callable[[int], bool] | None = None,
    ) -> np.ndarray:
        """An augmented copy of ``wave``; ``fits(num_samples)`` says whether a tempo-changed length is usable."""
        wave = np.asarray(wave, dtype=np.float32)
        # Draw every decision up front, so one utterance's randomness never depends on another's path.
        speed = float(rng.choice(self.speed_perturb)) if self.speed_perturb else 1.0
        applied = {name: rng.random() < self.prob for name in TYPES if name in self.types}
        rate = float(rng.uniform(*self.stretch))
        gain_db = float(rng.uniform(*self.volume_db))
        snr_db = float(rng.uniform(*self.noise_snr_db))
        shift = int(round(rng.uniform(-1.0, 1.0) * self.shift_ms * self.sample_rate / 1000))

        tempo = speed_perturb(wave, speed, self.sample_rate) if speed != 1.0 else wave
        if applied.get("stretch"):
            tempo = time_stretch(tempo, rate)
        if fits is None or fits(len(tempo)):
            wave = tempo
        if applied.get("shift"):
            wave = shift_with_silence(wave, shift)
        if applied.get("volume"):
            wave = apply_gain(wave, gain_db)
        if applied.get("noise"):
            wave = add_noise(wave, snr_db, rng)
        return wave


def speed_perturb(wave: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play ``factor`` times faster (length / factor, pitch scaled too): read at ``factor × rate``, resample back."""
    return soxr.resample(wave, sample_rate * factor, sample_rate, quality="HQ").astype(np.float32)


def time_stretch(wave: np.ndarray, rate: float) -> np.ndarray:
    """``rate`` times faster at the same pitch (librosa's phase vocoder)."""
    return librosa.effects.time_stretch(wave, rate=rate).astype(np.float32)


def shift_with_silence(wave: np.ndarray, samples: int) -> np.ndarray:
    """Move the speech later (``samples`` > 0: silence before) or earlier in the frame (silence after)."""
    silence = np.zeros(abs(samples), dtype=np.float32)
    return np.concatenate([silence, wave] if samples > 0 else [wave, silence])


def apply_gain(wave: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db``, clipped to [-1, 1] as real full-scale audio would be."""
    return np.clip(wave * np.float32(10 ** (gain_db / 20)), -1.0, 1.0)


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` below the utterance's mean power (none for digital silence)."""
    power = float(np.mean(np.square(wave, dtype=np.float64)))
    if power == 0.0:
        return wave
    noise = rng.standard_normal(len(wave)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)
