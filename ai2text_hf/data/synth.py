"""Synthetic Vietnamese speech corpus rendered with espeak-ng.

This is the project's embedded default data: it needs no download, is reproducible bit for bit, and
is split so that the test set measures generalisation: test sentences never occur in train, and each
test utterance is spoken with a (voice, variant, speed, pitch, pitch range, word gap) combination that
train never uses, although every individual value of each does occur in train.

Each utterance is also "recorded" like real audio rather than left as espeak-ng's clean output: its
level, a coloured noise floor under the whole file (never digital silence) and the lengths of the
lead-in and tail are drawn per utterance, alike in every split.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import random
import re
import shutil
import struct
import subprocess
import time
import unicodedata
import zlib
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
import soxr
from scipy.fft import irfft, next_fast_len, rfft, rfftfreq
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

METADATA_COLUMNS = ("file_path", "transcript", "duration", "split", "speaker_id")
SPLITS = ("train", "val", "test")
_SILENCE_LEVEL = 1e-3  # espeak pads with digital silence; -60 dBFS keeps even weak fricative onsets
_PEAK_LIMIT_DB = -1.0  # the speech level is lowered where its peak would pass this: real recordings rarely clip
_NOISE_FLAT_BELOW_HZ = 50.0  # a 1/f^2 floor would otherwise be all sub-audio drift
#: SynthConfig fields that list the values of the voice grid (comma strings accepted by from_dict).
GRID_FIELDS = {"voices": str, "variants": str, "speeds": int, "pitches": int, "pitch_ranges": int, "word_gaps": int}
#: SynthConfig fields that are ``(low, high)`` ranges drawn from per utterance.
RANGE_FIELDS = ("speech_level_db", "noise_floor_db", "noise_slope", "lead_in", "tail")


class EspeakNotFoundError(RuntimeError):
    """espeak-ng is a system program, not a Python dependency, so say how to install it."""


@dataclass
class SynthConfig:
    """Every knob of the synthetic corpus; the defaults produce the ``make demo`` corpus."""

    seed: int = 1234
    """Seeds the sentence split, the reserved settings and the rendition assignment."""
    sample_rate: int = 16000
    """Output rate; espeak-ng renders at 22,050 Hz and is resampled with soxr."""
    val_sentences: int = 100
    """Sentences held out for validation (never in train)."""
    test_sentences: int = 300
    """Sentences held out for test (never in train); enough for a stable CER estimate."""
    train_renditions: int = 2
    """Distinct voice settings speaking each train sentence: more acoustic variety per transcript."""
    val_renditions: int = 1
    """Voice settings per val sentence, drawn from the reserved settings only."""
    test_renditions: int = 1
    """Voice settings per test sentence, drawn from the reserved settings only."""
    voices: tuple[str, ...] = ("vi", "vi-vn-x-central", "vi-vn-x-south")
    """espeak-ng Vietnamese voices: Northern, Central and Southern dialects."""
    variants: tuple[str, ...] = (
        "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
        "Nguyen", "Jacky", "Michael", "gustave", "travis", "victor", "ed", "Denis", "iven3",
        "f1", "f2", "f3", "f4", "f5", "Annie", "shelby",
        "klatt", "klatt2", "klatt3",
    )  # fmt: skip
    """Speaker variants (``espeak-ng --voices=variant``): formants, pitch, breathiness, jitter. Left out: whisper,
    croak, robots and echoes, heavy flutter (grandma, grandpa), narrow or inverted pitch spans that flatten the
    tones (Alex, aunty, linda, steph), and those that crash espeak-ng 1.51 at some speeds or ranges (Andrea,
    anika, rob)."""
    speeds: tuple[int, ...] = (130, 145, 160, 175, 190)
    """Speaking rates in words per minute (espeak ``-s``)."""
    pitches: tuple[int, ...] = (30, 40, 50, 60, 70)
    """Base pitches 0-99 (espeak ``-p``)."""
    pitch_ranges: tuple[int, ...] = (35, 50, 65, 85)
    """Pitch ranges 0-100 (SSML ``<prosody range>``; espeak's default is 50): how far tones and intonation move.
    Above 85, espeak-ng 1.51 crashes on the widest variants at low pitches."""
    word_gaps: tuple[int, ...] = (0, 1, 2)
    """Pauses between words (espeak ``-g``, in 10 ms at the default speed); every Vietnamese syllable is a word."""
    test_setting_share: float = 0.2
    """Share of voice-grid combinations reserved for val/test and never used in train."""
    speech_level_db: tuple[float, float] = (-32.0, -18.0)
    """RMS level of the speech in dBFS, drawn per utterance (lowered where the peak would pass -1 dBFS)."""
    noise_floor_db: tuple[float, float] = (-75.0, -50.0)
    """RMS level in dBFS of the noise under the whole utterance, drawn per utterance: no digital silence."""
    noise_slope: tuple[float, float] = (0.0, 2.0)
    """Spectral slope of that noise, drawn per utterance: power falls as 1/f^slope (0 white, 1 pink, 2 brown)."""
    lead_in: tuple[float, float] = (0.0, 0.8)
    """Seconds of noise floor before the speech starts, drawn per utterance and skewed towards short ones
    (low + (high - low) * u², u uniform): a quarter start within 1/16 of the span, some wait long."""
    tail: tuple[float, float] = (0.02, 0.4)
    """Seconds of noise floor after the speech ends, drawn like ``lead_in``."""
    max_sentences: int | None = None
    """Use only the first N sentences of the list, for quick runs and tests."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Concurrent espeak-ng processes; the output does not depend on it."""
    espeak_binary: str = "espeak-ng"
    """Name or path of the espeak-ng program."""

    def __post_init__(self) -> None:
        if not 0 < self.test_setting_share < 1:
            raise ValueError(f"test_setting_share must be in (0, 1), got {self.test_setting_share}")
        if min(self.train_renditions, self.val_renditions, self.test_renditions) < 1:
            raise ValueError("renditions must be >= 1")
        if min(self.val_sentences, self.test_sentences) < 0:
            raise ValueError("val_sentences and test_sentences must be >= 0")
        empty = [name for name in GRID_FIELDS if not getattr(self, name)]
        if empty:
            raise ValueError(f"{', '.join(empty)} must not be empty")
        bounds = {"pitches": (0, 99), "pitch_ranges": (0, 100), "word_gaps": (0, 100), "speeds": (80, 450)}
        for name, (low, high) in bounds.items():
            wrong = [value for value in getattr(self, name) if not low <= value <= high]
            if wrong:
                raise ValueError(f"{name} must lie in [{low}, {high}], got {wrong}")
        for name in RANGE_FIELDS:
            pair = getattr(self, name)
            if len(pair) != 2 or pair[0] > pair[1]:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {pair}")
        if self.speech_level_db[1] > _PEAK_LIMIT_DB or self.noise_floor_db[1] >= 0:
            raise ValueError("speech_level_db and noise_floor_db are dBFS levels: they must be below 0")
        if min(self.lead_in[0], self.tail[0], self.noise_slope[0]) < 0:
            raise ValueError("lead_in, tail and noise_slope must not be negative")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> SynthConfig:
        """Build from CLI-style options: ``None`` means "keep the default", lists or comma strings
        are accepted for the grid and range fields, and unknown keys are an error rather than silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown SynthConfig option(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            if value is None:
                continue
            if key in GRID_FIELDS or key in RANGE_FIELDS:
                items = value.split(",") if isinstance(value, str) else value
                cast = GRID_FIELDS.get(key, float)
                value = tuple(cast(str(item).strip()) for item in items if str(item).strip())
            kwargs[key] = value
        return cls(**kwargs)


@dataclass(frozen=True, order=True)
class VoiceSetting:
    """One point of the (voice, variant, speed, pitch, pitch range, word gap) grid: one synthetic "speaker"."""

    voice: str
    variant: str
    speed: int
    pitch: int
    pitch_range: int
    word_gap: int

    @property
    def speaker_id(self) -> str:
        return f"{self.voice}+{self.variant}_s{self.speed}_p{self.pitch}_r{self.pitch_range}_g{self.word_gap}"

    @property
    def tag(self) -> str:
        """File-name-safe form of the setting."""
        return f"{self.voice}-{self.variant}-s{self.speed}-p{self.pitch}-r{self.pitch_range}-g{self.word_gap}"

    def components(self) -> tuple[tuple[str, Any], ...]:
        return (
            ("voice", self.voice),
            ("variant", self.variant),
            ("speed", self.speed),
            ("pitch", self.pitch),
            ("pitch_range", self.pitch_range),
            ("word_gap", self.word_gap),
        )


@dataclass(frozen=True)
class RecordingConditions:
    """How one utterance is "recorded", drawn per utterance from the SynthConfig ranges of the same names."""

    speech_level_db: float
    noise_floor_db: float
    noise_slope: float
    lead_in: float
    tail: float


@dataclass(frozen=True)
class _Job:
    sentence_id: int
    text: str
    setting: VoiceSetting
    split: str
    conditions: RecordingConditions

    @property
    def file_path(self) -> str:
        return f"wavs/{self.split}/{self.sentence_id:06d}_{self.setting.tag}.wav"


def default_sentences_path() -> Path:
    """The sentence list shipped with the package."""
    return Path(__file__).resolve().parent.parent / "resources" / "sentences_vi.txt"


def _clean(text: str) -> str:
    """NFC because espeak-ng mispronounces decomposed diacritics; collapse whitespace for stable transcripts."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _dedupe(sentences: list[str]) -> list[str]:
    return list(dict.fromkeys(s for s in map(_clean, sentences) if s))


def read_sentences(path: str | Path) -> list[str]:
    """Read one sentence per line, or a TSV whose first column is the sentence (a first line that is
    literally ``sentence`` or ``text`` is a header). Returns NFC text, blank lines and duplicates dropped,
    order kept."""
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    first_column = [line.split("\t", 1)[0] for line in lines]
    nonblank = [text for text in first_column if text.strip()]
    if nonblank and nonblank[0].strip().lower() in ("sentence", "text"):
        nonblank = nonblank[1:]
    return _dedupe(nonblank)


def _espeak_binary(config: SynthConfig) -> str:
    binary = shutil.which(config.espeak_binary)
    if binary is None:
        raise EspeakNotFoundError(
            f"espeak-ng program {config.espeak_binary!r} not found on PATH; the synthetic corpus needs it. "
            "Install it with `apt-get install espeak-ng` (Debian/Ubuntu package espeak-ng)."
        )
    return binary


def _run(binary: str, *args: str) -> str:
    return subprocess.run([binary, *args], capture_output=True, text=True, check=True).stdout


def _check_voices(binary: str, config: SynthConfig) -> None:
    """espeak-ng silently falls back to the plain voice for an unknown variant, so check names up front."""
    variants = set(re.findall(r"!v/(\S+)", _run(binary, "--voices=variant")))
    voices = {line.split()[1] for line in _run(binary, "--voices").splitlines()[1:] if len(line.split()) > 1}
    missing = [v for v in config.voices if v not in voices] + [v for v in config.variants if v not in variants]
    if missing:
        raise ValueError(f"espeak-ng does not know these voices/variants: {', '.join(missing)}")


def _reserve_settings(config: SynthConfig) -> tuple[list[VoiceSetting], list[VoiceSetting]]:
    """Split the grid into train settings and val/test-only settings.

    Reservation is random but greedy: a combination is reserved only while train keeps at least one
    other combination with each of its values (voice, variant, speed, ...), so that test combinations
    are new while their components are all seen in training.
    """
    grid = [VoiceSetting(*combo) for combo in itertools.product(*(getattr(config, name) for name in GRID_FIELDS))]
    wanted = max(1, round(config.test_setting_share * len(grid)))
    left_in_train = Counter(c for setting in grid for c in setting.components())
    reserved: set[VoiceSetting] = set()
    for setting in random.Random(f"{config.seed}:settings").sample(grid, len(grid)):
        if len(reserved) == wanted:
            break
        if all(left_in_train[c] > 1 for c in setting.components()):
            reserved.add(setting)
            left_in_train.subtract(setting.components())
    if len(reserved) < wanted:
        raise ValueError(
            f"cannot reserve {wanted} of {len(grid)} voice settings for val/test while train keeps every "
            f"value of {', '.join(GRID_FIELDS)}; lower test_setting_share or enlarge the grid"
        )
    train = [s for s in grid if s not in reserved]
    seen = {c for s in train for c in s.components()}
    uncovered = [c for s in grid for c in s.components() if c not in seen]
    if uncovered:  # the greedy rule above should make this impossible
        raise RuntimeError(f"train settings miss {uncovered}")
    return train, sorted(reserved)


class _Cycler:
    """Deals a pool's settings in freshly shuffled rounds, so every setting is used about equally often."""

    def __init__(self, pool: list[VoiceSetting], rng: random.Random) -> None:
        self.pool = pool
        self.rng = rng
        self.queue: list[VoiceSetting] = []

    def take(self, exclude: set[VoiceSetting]) -> VoiceSetting | None:
        if all(s in exclude for s in self.pool):
            return None
        while True:
            for i, setting in enumerate(self.queue):
                if setting not in exclude:
                    return self.queue.pop(i)
            self.queue += self.rng.sample(self.pool, len(self.pool))


def _assign(
    sentence_ids: list[int],
    renditions: int,
    pool: list[VoiceSetting],
    voices: tuple[str, ...],
    rng: random.Random,
) -> list[tuple[int, VoiceSetting]]:
    """Give each sentence ``renditions`` distinct settings, rotating dialects so that they stay balanced."""
    if renditions > len(pool):
        raise ValueError(f"{renditions} renditions per sentence but only {len(pool)} voice settings available")
    dialects = [v for v in voices if any(s.voice == v for s in pool)]
    cyclers = {v: _Cycler([s for s in pool if s.voice == v], rng) for v in dialects}
    assigned = []
    for position, sentence_id in enumerate(sentence_ids):
        used: set[VoiceSetting] = set()
        for rendition in range(renditions):
            for offset in range(len(dialects)):
                setting = cyclers[dialects[(position + rendition + offset) % len(dialects)]].take(used)
                if setting is not None:
                    break
            used.add(setting)
            assigned.append((sentence_id, setting))
    return assigned


def _draw_conditions(config: SynthConfig, rng: random.Random) -> RecordingConditions:
    def skewed(low: float, high: float) -> float:
        return low + (high - low) * rng.random() ** 2

    return RecordingConditions(
        speech_level_db=rng.uniform(*config.speech_level_db),
        noise_floor_db=rng.uniform(*config.noise_floor_db),
        noise_slope=rng.uniform(*config.noise_slope),
        lead_in=skewed(*config.lead_in),
        tail=skewed(*config.tail),
    )


def _plan(sentences: list[str], config: SynthConfig) -> tuple[list[_Job], dict[str, int]]:
    """Decide every utterance (sentence, setting, split, recording conditions) before rendering anything, so the plan is
    independent of worker scheduling and reproducible from the seed."""
    n_heldout = config.val_sentences + config.test_sentences
    if n_heldout >= len(sentences):
        raise ValueError(
            f"{len(sentences)} sentences leave none for train after {config.val_sentences} val and "
            f"{config.test_sentences} test sentences"
        )
    order = random.Random(f"{config.seed}:sentences").sample(range(len(sentences)), len(sentences))
    split_ids = {
        "val": sorted(order[: config.val_sentences]),
        "test": sorted(order[config.val_sentences : n_heldout]),
        "train": sorted(order[n_heldout:]),
    }
    train_pool, reserved_pool = _reserve_settings(config)
    pools = {"train": train_pool, "val": reserved_pool, "test": reserved_pool}
    renditions = {
        "train": config.train_renditions,
        "val": config.val_renditions,
        "test": config.test_renditions,
    }
    jobs = []
    for split in SPLITS:
        rng = random.Random(f"{config.seed}:{split}")
        conditions_rng = random.Random(f"{config.seed}:{split}:conditions")
        for sentence_id, setting in _assign(split_ids[split], renditions[split], pools[split], config.voices, rng):
            conditions = _draw_conditions(config, conditions_rng)
            jobs.append(_Job(sentence_id, sentences[sentence_id], setting, split, conditions))
    settings = {"train": len(train_pool), "reserved_for_val_test": len(reserved_pool)}
    return jobs, settings


def _espeak_audio(binary: str, job: _Job) -> tuple[np.ndarray, int]:
    """Render one utterance; the text goes through stdin so no sentence can be mistaken for an option.

    The pitch range has no command-line option, so the text is wrapped in SSML (``-m``); at espeak's default
    range of 50 this renders the same samples as plain text."""
    s = job.setting
    voice = f"{s.voice}+{s.variant}"
    command = [binary, "-b", "1", "-m", "-v", voice, "-s", str(s.speed), "-p", str(s.pitch), "-g", str(s.word_gap)]
    ssml = f'<speak><prosody range="{s.pitch_range}">{escape(job.text)}</prosody></speak>'
    result = subprocess.run([*command, "--stdout"], check=False, input=ssml.encode("utf-8"), capture_output=True)
    wav = result.stdout
    # espeak-ng streams a canonical 44-byte PCM header whose size fields are placeholders, so read it by offset.
    if result.returncode != 0 or len(wav) < 44 or wav[:4] != b"RIFF" or wav[36:40] != b"data":
        detail = result.stderr.decode("utf-8", "replace").strip() or f"exit status {result.returncode}"
        raise RuntimeError(f"espeak-ng failed on sentence {job.text!r} with setting {s.speaker_id}: {detail}")
    channels, rate = struct.unpack_from("<HI", wav, 22)
    bits = struct.unpack_from("<H", wav, 34)[0]
    if channels != 1 or bits != 16:
        raise RuntimeError(f"unexpected espeak-ng output format: {channels} channel(s), {bits} bits")
    return np.frombuffer(wav[44 : 44 + (len(wav) - 44) // 2 * 2], dtype="<i2"), rate


def coloured_noise(length: int, slope: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """float32 Gaussian noise of unit RMS whose power falls as 1/f^``slope`` (0 white, 1 pink, 2 brown), flat below
    50 Hz."""
    # A few lines of scipy: not worth a dependency of its own (colorednoise, audiomentations) for the synthesiser.
    size = next_fast_len(length, real=True)
    spectrum = rfft(rng.standard_normal(size, dtype=np.float32))
    frequencies = np.maximum(rfftfreq(size, 1 / sample_rate).astype(np.float32), np.float32(_NOISE_FLAT_BELOW_HZ))
    spectrum *= frequencies ** np.float32(-slope / 2)
    noise = irfft(spectrum, size)[:length]
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def _amplitude(level_db: float) -> float:
    return 10 ** (level_db / 20)


def _record(speech: np.ndarray, conditions: RecordingConditions, rng: np.random.Generator, rate: int) -> np.ndarray:
    """Put trimmed speech at its level between its lead-in and tail, over a noise floor spanning the whole file."""
    rms = float(np.sqrt(np.mean(speech**2)))
    gain = min(_amplitude(conditions.speech_level_db) / rms, _amplitude(_PEAK_LIMIT_DB) / float(np.abs(speech).max()))
    lead, tail = round(conditions.lead_in * rate), round(conditions.tail * rate)
    audio = coloured_noise(lead + len(speech) + tail, conditions.noise_slope, rng, rate)
    audio *= _amplitude(conditions.noise_floor_db)
    audio[lead : lead + len(speech)] += gain * speech
    return audio


def _render(job: _Job, binary: str, config: SynthConfig, output_dir: Path) -> int:
    """Synthesise, trim, resample, record and write one utterance; returns its length in samples."""
    samples, rate = _espeak_audio(binary, job)
    audio = samples.astype(np.float32) / 32768.0
    voiced = np.flatnonzero(np.abs(audio) > _SILENCE_LEVEL)
    if voiced.size == 0:
        raise RuntimeError(
            f"espeak-ng produced silence for sentence {job.text!r} with setting {job.setting.speaker_id}"
        )
    speech = soxr.resample(audio[voiced[0] : voiced[-1] + 1], rate, config.sample_rate, quality="HQ")
    # Seeded by the file, not by the order of rendering, so the noise is the same on any number of workers.
    rng = np.random.default_rng([config.seed, zlib.crc32(job.file_path.encode("utf-8"))])
    audio = _record(speech, job.conditions, rng, config.sample_rate)
    pcm = np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    sf.write(output_dir / job.file_path, pcm, config.sample_rate, subtype="PCM_16")
    return len(pcm)


def synthesize_corpus(
    sentences: list[str] | str | Path,
    output_dir: str | Path,
    config: SynthConfig | None = None,
    progress: bool = True,
) -> Path:
    """Render the corpus into ``output_dir`` and return the path of its ``metadata.csv``.

    ``sentences`` is a list of sentences or the path of a sentence file (see :func:`read_sentences`).
    metadata.csv is written last, so a failed run never leaves a complete-looking corpus behind.
    """
    config = config or SynthConfig()
    binary = _espeak_binary(config)
    _check_voices(binary, config)
    texts = read_sentences(sentences) if isinstance(sentences, (str, Path)) else _dedupe(list(sentences))
    if config.max_sentences is not None:
        texts = texts[: config.max_sentences]
    jobs, settings = _plan(texts, config)

    output_dir = Path(output_dir)
    for split in SPLITS:
        (output_dir / "wavs" / split).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    lengths: list[int] = []
    with (
        ThreadPoolExecutor(max_workers=config.workers) as pool,
        tqdm(total=len(jobs), disable=not progress, desc="espeak-ng", unit="utt") as bar,
    ):
        futures = [pool.submit(_render, job, binary, config, output_dir) for job in jobs]
        try:
            for future in futures:
                lengths.append(future.result())
                bar.update()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    elapsed = time.perf_counter() - start

    durations = [n / config.sample_rate for n in lengths]
    metadata_path = output_dir / "metadata.csv"
    summary: dict[str, Any] = {
        "config": asdict(config),
        "espeak_ng_version": _run(binary, "--version").strip(),
        "sentences": {split: len({j.sentence_id for j in jobs if j.split == split}) for split in SPLITS},
        "utterances": {split: sum(j.split == split for j in jobs) for split in SPLITS},
        "hours": {
            split: round(sum(d for j, d in zip(jobs, durations) if j.split == split) / 3600, 3) for split in SPLITS
        },
        "voice_settings": settings,
    }
    (output_dir / "synth.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with metadata_path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(METADATA_COLUMNS)
        for job, duration in zip(jobs, durations):
            writer.writerow([job.file_path, job.text, f"{duration:.3f}", job.split, job.setting.speaker_id])
    total = sum(durations)
    logger.info(
        "synthesised %d utterances, %.2f h of audio in %.1f s (%.0f audio s per wall s)",
        len(jobs), total / 3600, elapsed, total / max(elapsed, 1e-9),
    )  # fmt: skip
    return metadata_path
