"""The augmenter: one utterance through the signal chain, every draw from its own seeded stream."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable

import numpy as np

from .channel import apply_codec
from .noise import COLOUR_EXPONENTS, BabblePool, ColouredNoiseBank, NoiseFolder
from .options import FAMILIES, Augmentation
from .room import RoomBank
from .waveform import add_floor, apply_gain, mix_at_snr, pad, speed_perturb, time_stretch, trim_silence

logger = logging.getLogger(__name__)

# Seconds of each noise colour generated at start (white also makes the noise floor).
_COLOURED_SECONDS = 30.0


class WaveformAugmenter:
    """Applies each family of ``options`` with its own probability, in signal-chain order.

    speed → tempo → trim → pad → room → noise → gain → channel → floor → clip to full scale. Padding comes
    before the room and the noise, so a lead-in holds noise and a tail holds reverberation, as a recording's
    would. Each family draws from its own stream of ``(seed, epoch, utterance id, family)``: an utterance's
    audio in an epoch is the same whatever the batch, the worker or the resume, and changing one family's
    probability leaves the others' draws alone.

    Args:
        options: the recipe's ``augmentation`` section (checked here).
        sample_rate: of the waveforms.
        seed: the run's seed; it also picks the simulated rooms.
        babble: train utterances for babble noise (needed when ``noise_sources`` lists ``babble``).
    """

    def __init__(
        self, options: Augmentation, sample_rate: int = 16000, seed: int = 0, babble: BabblePool | None = None
    ):
        options.check()
        self.options = options
        self.sample_rate = sample_rate
        self.seed = seed
        noise = options.noise_prob > 0
        if noise and "babble" in options.noise_sources and not babble:
            raise ValueError(
                "augmentation.noise_sources lists 'babble' but no train utterances were given for it: drop 'babble' "
                "or give the augmenter a BabblePool."
            )
        self.babble = babble
        self.noise_folder = NoiseFolder(options.noise_dir, sample_rate) if noise and options.noise_dir else None
        self.rooms = (
            RoomBank(options.room_bank_size, options.room_rt60, sample_rate, seed) if options.room_prob else None
        )
        colours = {"white", *(source for source in options.noise_sources if source in COLOUR_EXPONENTS)}
        self.colours = ColouredNoiseBank(colours, _COLOURED_SECONDS, sample_rate, seed)

    def stream(self, epoch: int, utterance_id: str, family: str) -> np.random.Generator:
        """The random stream of one family for one utterance in one epoch."""
        key = zlib.crc32(utterance_id.encode("utf-8"))
        return np.random.default_rng([self.seed, epoch, key, FAMILIES.index(family)])

    def _drawn(self, family: str, epoch: int, utterance_id: str) -> np.random.Generator | None:
        """The family's stream when it applies to this utterance (its first draw decides), else None."""
        probability = getattr(self.options, f"{family}_prob")
        if probability == 0:
            return None
        rng = self.stream(epoch, utterance_id, family)
        return rng if rng.random() < probability else None

    @property
    def skipped_noise_files(self) -> int:
        """Noise files that failed to decode in this process."""
        return self.noise_folder.skipped if self.noise_folder else 0

    def describe(self) -> str:
        """The families in use with their probabilities, for the log."""
        used = [f"{family} {getattr(self.options, f'{family}_prob'):g}" for family in FAMILIES]
        return ", ".join(entry for entry in used if not entry.endswith(" 0")) or "no family"

    def warp_factor(self, epoch: int, utterance_id: str) -> float | None:
        """The utterance's VTLP warp factor this epoch, or None when VTLP does not apply to it."""
        rng = self._drawn("vtlp", epoch, utterance_id)
        return float(rng.uniform(*self.options.vtlp_warp)) if rng else None

    def __call__(
        self, wave: np.ndarray, epoch: int, utterance_id: str, fits: Callable[[int], bool] | None = None
    ) -> np.ndarray:
        """An augmented copy of ``wave``; ``fits(num_samples)`` says whether a shorter or longer length still
        holds the transcript (a speed, tempo or trim that would not is skipped for this utterance)."""
        options, rate = self.options, self.sample_rate
        original = wave = np.asarray(wave, dtype=np.float32)
        if rng := self._drawn("speed", epoch, utterance_id):
            wave = speed_perturb(wave, float(rng.uniform(*options.speed)), rate)
        if rng := self._drawn("tempo", epoch, utterance_id):
            wave = time_stretch(wave, float(rng.uniform(*options.tempo)), rate)
        if fits is not None and len(wave) != len(original) and not fits(len(wave)):
            wave = original
        if self._drawn("trim", epoch, utterance_id):
            trimmed = trim_silence(wave, options.trim_db)
            if fits is None or fits(len(trimmed)):
                wave = trimmed
        speech_samples = max(1, len(wave))
        if rng := self._drawn("pad", epoch, utterance_id):
            lead, tail = (int(rng.uniform(*options.pad_seconds) * rate) for _ in range(2))
            wave = pad(wave, lead, tail)
        if self.rooms and (rng := self._drawn("room", epoch, utterance_id)):
            wave = self.rooms.reverberate(wave, rng)
        if rng := self._drawn("noise", epoch, utterance_id):
            # The SNR is the speech's: its energy over its own length, not diluted by the padding.
            speech_power = float(np.sum(np.square(wave, dtype=np.float64))) / speech_samples
            wave = self._add_noise(wave, speech_power, rng, utterance_id)
        if rng := self._drawn("gain", epoch, utterance_id):
            wave = apply_gain(wave, float(rng.uniform(*options.gain_db)))
        if rng := self._drawn("channel", epoch, utterance_id):
            codec = options.codecs[int(rng.integers(len(options.codecs)))]
            wave = apply_codec(codec, wave, rate, rng, options)
        if rng := self._drawn("floor", epoch, utterance_id):
            level = float(rng.uniform(*options.floor_dbfs))
            wave = add_floor(wave, self.colours.segment("white", len(wave), rng), level)
        return np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False)

    def _add_noise(
        self, wave: np.ndarray, speech_power: float, rng: np.random.Generator, utterance_id: str
    ) -> np.ndarray:
        options = self.options
        source = options.noise_sources[int(rng.integers(len(options.noise_sources)))]
        snr_db = float(rng.uniform(*options.noise_snr_db))
        if source in COLOUR_EXPONENTS:
            noise = self.colours.segment(source, len(wave), rng)
        elif source == "babble":
            low, high = options.babble_speakers
            noise = self.babble.babble(len(wave), int(rng.integers(low, high + 1)), rng, exclude=utterance_id)
        else:
            noise = self.noise_folder.segment(len(wave), rng)
            if noise is None:
                return wave
        return mix_at_snr(wave, noise, snr_db, speech_power)
