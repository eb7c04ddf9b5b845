"""Room reverberation: a bank of simulated impulse responses, built once from the seed, applied by convolution."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import pyroomacoustics as pra
from scipy.signal import fftconvolve

from .waveform import mean_power

logger = logging.getLogger(__name__)

# Image sources with more reflections than bring them 45 dB down are left out: past that they only lengthen
# the simulation (its cost grows with the cube of the order), not what a recogniser hears.
_DECAY_DB = 45.0
# Samples kept before the direct path's peak: the half-width of pyroomacoustics' fractional-delay filter.
_PRE_PEAK = 40


def simulate_rir(rt60: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Impulse response of a random shoebox room reverberating for ``rt60`` seconds (image source method).

    The image source method rather than pyroomacoustics' ray tracing: its tail is random in C++ code that no
    seed reaches, and the bank must be the same in every run with the same seed.
    """
    dims = np.array([rng.uniform(3.0, 8.0), rng.uniform(3.0, 6.0), rng.uniform(2.5, 3.5)])
    try:
        absorption, max_order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # a reverberation time too short for this room's size: as dry as walls can make it
        absorption, max_order = 0.99, 1
    absorption = min(absorption, 0.99)
    order_cap = int(np.ceil(_DECAY_DB / (-10 * np.log10(1 - absorption))))
    room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=min(max_order, order_cap))
    margin = np.array([0.5, 0.5, 0.5])
    room.add_source(rng.uniform(margin, dims - margin))
    room.add_microphone(rng.uniform(margin, dims - margin))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float32)
    return rir[max(0, int(np.argmax(np.abs(rir))) - _PRE_PEAK) :]


class RoomBank:
    """``count`` simulated rooms with reverberation times drawn from ``rt60``; logs how long the bank took."""

    def __init__(self, count: int, rt60: Sequence[float], sample_rate: int, seed: int):
        rng = np.random.default_rng([seed, 0x5200])
        start = time.perf_counter()
        self.rirs = [simulate_rir(float(rng.uniform(*rt60)), rng, sample_rate) for _ in range(count)]
        self.build_seconds = time.perf_counter() - start
        logger.info(
            "Room reverberation: %d rooms simulated (RT60 %.2f-%.2f s) in %.1f s.",
            count, rt60[0], rt60[1], self.build_seconds,
        )  # fmt: skip

    def reverberate(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``wave`` as heard in one of the rooms, same length and mean power (gain is another family's job)."""
        rir = self.rirs[int(rng.integers(len(self.rirs)))]
        wet = fftconvolve(wave, rir)[: len(wave)].astype(np.float32)
        before, after = mean_power(wave), mean_power(wet)
        return wet * np.float32(np.sqrt(before / after)) if after > 0 else wet
