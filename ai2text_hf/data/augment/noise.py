"""Additive noise sources: coloured noise, babble of other train utterances, and a folder of noise recordings."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path

import colorednoise
import datasets
import numpy as np
import soundfile as sf
import soxr
from scipy.fft import next_fast_len

from ..audio import audio_array
from .options import noise_files
from .waveform import loop_to, mean_power

logger = logging.getLogger(__name__)

#: Spectral slope of each colour: power ∝ 1 / f ** exponent.
COLOUR_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
# Draws of a noise file before an utterance goes without: a folder whose every file fails still trains.
_MAX_TRIES = 8


def coloured_noise(colour: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f ** exponent (white 0, pink 1, brown 2)."""
    # Shaped at a length the FFT handles fast (an utterance's length may have large prime factors), then cut.
    size = next_fast_len(length, real=True)
    noise = colorednoise.powerlaw_psd_gaussian(COLOUR_EXPONENTS[colour], size, random_state=rng)
    return noise[:length].astype(np.float32)


class ColouredNoiseBank:
    """``seconds`` of each colour's noise, generated once from the seed; utterances read it at random offsets.

    Reading a stretch costs a copy, generating it an FFT of the utterance's length: the bank keeps additive noise
    and the noise floor cheap, and stationary noise loses nothing by being read at another offset.
    """

    def __init__(self, colours: Sequence[str], seconds: float, sample_rate: int, seed: int):
        self.noise = {}
        for colour in colours:
            rng = np.random.default_rng([seed, 0xC0, list(COLOUR_EXPONENTS).index(colour)])
            noise = coloured_noise(colour, int(seconds * sample_rate), rng)
            self.noise[colour] = noise / np.float32(np.sqrt(mean_power(noise)))  # unit power

    def segment(self, colour: str, length: int, rng: np.random.Generator) -> np.ndarray:
        noise = self.noise[colour]
        return loop_to(noise, length, int(rng.integers(len(noise))))


class BabblePool:
    """Train utterances held in memory, chosen once with the seed, for babble that no batch can change.

    Args:
        utterances: ``(id, 16 kHz waveform)`` pairs; silent ones are left out.
    """

    def __init__(self, utterances: Sequence[tuple[str, np.ndarray]]):
        kept = [(str(uid), np.asarray(wave, np.float32)) for uid, wave in utterances if mean_power(wave) > 0]
        self.ids = [uid for uid, _ in kept]
        self.waves = [wave / np.float32(np.sqrt(mean_power(wave))) for _, wave in kept]  # unit power each

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset | datasets.IterableDataset, size: int, seed: int) -> BabblePool:
        """``size`` utterances (``id``, ``audio``) of a prepared split, chosen with ``seed``; the first ``size`` of
        a stream (already shuffled with the run's seed)."""
        columns = dataset.select_columns(["id", "audio"])
        if isinstance(dataset, datasets.IterableDataset):
            rows = list(itertools.islice(columns, size))
        else:
            picked = np.random.default_rng([seed, 0xBAB]).choice(len(dataset), min(size, len(dataset)), replace=False)
            rows = columns.select(np.sort(picked)).with_format("numpy")
        return cls([(row["id"], audio_array(row["audio"])) for row in rows])

    def __len__(self) -> int:
        return len(self.waves)

    def babble(self, length: int, talkers: int, rng: np.random.Generator, exclude: str) -> np.ndarray:
        """``talkers`` pool utterances other than ``exclude``, each at a random offset, looped and summed."""
        total = np.zeros(length, np.float32)
        others = [i for i, uid in enumerate(self.ids) if uid != exclude]
        if not others:
            return total
        for index in rng.choice(others, size=min(talkers, len(others)), replace=False):
            wave = self.waves[index]
            total += loop_to(wave, length, int(rng.integers(len(wave))))
        return total


class NoiseFolder:
    """Noise recordings found recursively under a folder (e.g. MUSAN), read a segment at a time.

    Only the segment an utterance needs is decoded, at a random offset, and resampled when the file's rate
    differs. A file that fails to decode is skipped with a warning, never again tried in this process, and
    counted in :attr:`skipped`; the draw that found it moves on to another file, so which file an utterance
    gets never depends on what other utterances met before it.
    """

    def __init__(self, folder: str | Path, sample_rate: int):
        self.folder = Path(folder)
        self.files = noise_files(folder)
        self.sample_rate = sample_rate
        self.bad: set[int] = set()
        self._info: dict[int, tuple[int, int]] = {}  # index -> (frames, rate), read on first use

    @property
    def skipped(self) -> int:
        """Files that failed to decode in this process."""
        return len(self.bad)

    def segment(self, length: int, rng: np.random.Generator) -> np.ndarray | None:
        """``length`` samples from a random file at a random offset; None when every draw met a broken file."""
        for _ in range(_MAX_TRIES):
            index = int(rng.integers(len(self.files)))
            start = float(rng.random())
            if index in self.bad:
                continue
            try:
                return self._read(index, length, start)
            except Exception as error:  # any decoder failure means "skip this file", never a crash
                self.bad.add(index)
                logger.warning(
                    "Noise file %s could not be decoded (%s: %s): skipped from now on (%d unreadable noise file%s "
                    "of %d in %s so far).",
                    self.files[index], type(error).__name__, error, self.skipped, "" if self.skipped == 1 else "s",
                    len(self.files), self.folder,
                )  # fmt: skip
        return None

    def _read(self, index: int, length: int, start: float) -> np.ndarray:
        path = self.files[index]
        if index not in self._info:
            info = sf.info(str(path))
            if info.frames <= 0:
                raise ValueError("no audio frames")
            # Its last frames too, on first use: a truncated file fails here, for whichever utterance meets it
            # first, rather than at some offsets only (which would make a file's fate depend on draw order).
            if len(sf.read(str(path), start=max(0, info.frames - 64), dtype="float32")[0]) == 0:
                raise ValueError("its header promises more frames than it holds")
            self._info[index] = (info.frames, info.samplerate)
        frames, rate = self._info[index]
        needed = min(frames, int(np.ceil(length * rate / self.sample_rate)) + 1)
        offset = int(start * (frames - needed + 1))
        data, _ = sf.read(str(path), start=offset, frames=needed, dtype="float32", always_2d=True)
        if len(data) == 0:
            raise ValueError(f"no audio at frame {offset}")
        wave = data.mean(axis=1)
        if rate != self.sample_rate:
            wave = soxr.resample(wave, rate, self.sample_rate).astype(np.float32)
        return loop_to(wave, length, 0)
