"""Small waveform edits of the chain: tempo, trimming, padding, level, noise floor and mixing at an SNR."""

from __future__ import annotations

import numpy as np
import pedalboard
import soxr


def speed_perturb(wave: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play ``factor`` times faster (length / factor, pitch scaled too): read at ``factor × rate``, resample back."""
    return soxr.resample(wave, sample_rate * factor, sample_rate, quality="HQ").astype(np.float32)


def time_stretch(wave: np.ndarray, rate: float, sample_rate: int) -> np.ndarray:
    """``rate`` times faster at the same pitch (Rubber Band, through pedalboard).

    Its faster engine, for augmentation's per-utterance budget; not librosa's phase vocoder, which compiles
    itself with numba for seconds in every new process, DataLoader workers included.
    """
    return pedalboard.time_stretch(wave[None, :], sample_rate, rate, high_quality=False)[0]


def trim_silence(wave: np.ndarray, top_db: float, frame: int = 400, hop: int = 100) -> np.ndarray:
    """Without the leading and trailing frames (``frame`` samples every ``hop``) ``top_db`` below the loudest.

    Written out rather than librosa's ``effects.trim``, which compiles itself with numba for seconds in every
    new process (DataLoader workers included) to do the same few lines.
    """
    if len(wave) < frame or not np.any(wave):
        return wave
    power = np.mean(np.square(np.lib.stride_tricks.sliding_window_view(wave, frame)[::hop], dtype=np.float64), 1)
    loud = np.flatnonzero(power > power.max() * 10 ** (-top_db / 10))
    return wave[loud[0] * hop : loud[-1] * hop + frame]


def pad(wave: np.ndarray, lead: int, tail: int) -> np.ndarray:
    """``lead`` zeros before and ``tail`` after: room for reverberation, noise and the noise floor to fill."""
    return np.pad(wave, (lead, tail))


def apply_gain(wave: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db`` (the chain clips to full scale once, at its end, as an ADC would)."""
    return wave * np.float32(10 ** (gain_db / 20))


def add_floor(wave: np.ndarray, noise: np.ndarray, level_dbfs: float) -> np.ndarray:
    """``noise`` (white, unit RMS) at ``level_dbfs`` RMS re full scale 1.0: a microphone's and converter's own."""
    return wave + noise * np.float32(10 ** (level_dbfs / 20))


def mean_power(wave: np.ndarray) -> float:
    return float(np.mean(np.square(wave, dtype=np.float64))) if len(wave) else 0.0


def mix_at_snr(wave: np.ndarray, noise: np.ndarray, snr_db: float, speech_power: float) -> np.ndarray:
    """``wave`` plus ``noise`` scaled so that ``speech_power`` is ``snr_db`` above the noise's mean power.

    Nothing is added to digital silence (``speech_power`` 0) or with a silent noise.
    """
    noise_power = mean_power(noise)
    if speech_power == 0.0 or noise_power == 0.0:
        return wave
    scale = np.sqrt(speech_power / noise_power / 10 ** (snr_db / 10))
    return (wave + noise * scale).astype(np.float32)


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-extend to ``length`` samples (codecs add encoder delay and frame padding at the end)."""
    return wave[:length] if len(wave) >= length else np.pad(wave, (0, length - len(wave)))


def loop_to(wave: np.ndarray, length: int, offset: int) -> np.ndarray:
    """``length`` samples of ``wave`` repeated end to end, starting at ``offset`` (a view when no repeat is
    needed: callers never write into it)."""
    offset %= len(wave)
    if offset + length <= len(wave):
        return wave[offset : offset + length]
    pieces, remaining = [wave[offset:]], length - (len(wave) - offset)
    while remaining > 0:
        pieces.append(wave[:remaining])
        remaining -= len(pieces[-1])
    return np.concatenate(pieces)
