"""The ``augmentation`` recipe section: one flat key per setting, each family with its own probability.

Defined here, beside the augmenter that reads it, because ``data/`` cannot import ``training/``; the recipe
uses this class as its ``augmentation`` section. ``enabled: true`` alone applies the defaults below: the set
that was measured to cost little training throughput (benchmarks/bench_augment.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: Additive noise kinds of ``noise_sources``: coloured noise, babble of other train utterances, ``noise_dir``.
NOISE_SOURCES = ("white", "pink", "brown", "babble", "folder")
#: Channel simulations of ``codecs``: telephone band, G.711 μ-law, GSM 06.10, MP3, Opus.
CODECS = ("telephone", "mulaw", "gsm", "mp3", "opus")
#: Audio file endings searched in ``noise_dir`` (formats libsndfile decodes).
NOISE_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au")
#: Families in signal-chain order, each with a ``<family>_prob`` key.
FAMILIES = ("speed", "tempo", "trim", "pad", "room", "noise", "gain", "channel", "floor", "vtlp")


@dataclass
class Augmentation:
    """Waveform augmentation of train utterances in the on-the-fly data path (``prepare --on-the-fly``).

    Applied per utterance in this order: speed, tempo, trim, pad, room, noise, gain, channel, floor, then a
    clip to full scale; VTLP warps the log-mel features afterwards. Every draw comes from the run's seed, the
    epoch and the utterance id, so the audio does not depend on batch composition, workers or resumes.
    """

    enabled: bool = False  # master switch; evaluation is never augmented
    speed_prob: float = 0.5  # chance of a speed change (resampling: tempo and pitch move together, Kaldi-style)
    speed: list[float] = field(default_factory=lambda: [0.9, 1.1])  # speed factor range; > 1 is faster
    tempo_prob: float = 0.05  # chance of a time stretch that keeps the pitch (Rubber Band; the costliest family)
    tempo: list[float] = field(default_factory=lambda: [0.8, 1.25])  # stretch rate range; > 1 is faster
    trim_prob: float = 0.5  # chance the leading and trailing silence is cut, so speech starts at once
    trim_db: float = 40.0  # silence: frames this many dB below the utterance's loudest
    pad_prob: float = 0.3  # chance of an extra lead-in and tail, which the noise and noise floor then fill
    pad_seconds: list[float] = field(default_factory=lambda: [0.0, 0.3])  # lead-in and tail range, drawn per end
    room_prob: float = 0.2  # chance of reverberation by a simulated room (pyroomacoustics)
    room_rt60: list[float] = field(default_factory=lambda: [0.2, 0.7])  # reverberation time range of the rooms, s
    room_bank_size: int = 16  # rooms simulated once at start (the log says how long), each utterance hears one
    noise_prob: float = 0.5  # chance of additive noise
    noise_snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])  # speech-to-noise ratio range, dB
    noise_sources: list[str] = field(default_factory=lambda: ["white", "pink", "brown", "babble"])  # drawn uniformly
    noise_dir: str | None = None  # noise recordings searched recursively (e.g. MUSAN); list "folder" to use them
    babble_speakers: list[int] = field(default_factory=lambda: [2, 5])  # other utterances summed into babble
    babble_pool_size: int = 100  # train utterances held in memory for babble, chosen with the seed
    gain_prob: float = 0.5  # chance of a level change
    gain_db: list[float] = field(default_factory=lambda: [-25.0, 6.0])  # gain range; the final clip keeps loud ones
    channel_prob: float = 0.1  # chance of a channel or codec round trip (codecs cost the most after tempo)
    codecs: list[str] = field(default_factory=lambda: list(CODECS))  # drawn uniformly; see CODECS
    mp3_quality: list[float] = field(default_factory=lambda: [4.0, 9.5])  # LAME VBR quality range, 0 best-10 worst
    opus_kbps: list[float] = field(default_factory=lambda: [8.0, 24.0])  # Opus bitrate range
    floor_prob: float = 1.0  # chance of a noise floor: real audio is never exact digital silence
    floor_dbfs: list[float] = field(default_factory=lambda: [-85.0, -55.0])  # floor level range (white noise RMS)
    vtlp_prob: float = 0.3  # chance of vocal tract length perturbation (warps our log-mel axis; pitch kept)
    vtlp_warp: list[float] = field(default_factory=lambda: [0.9, 1.1])  # frequency warp factor range

    def check(self, check_paths: bool = True) -> None:
        """Raise ``ValueError`` naming the first impossible key; ``check_paths`` also looks into ``noise_dir``."""
        for family in FAMILIES:
            _probability(f"{family}_prob", getattr(self, f"{family}_prob"))
        _range("speed", self.speed, above=0.0)
        _range("tempo", self.tempo, above=0.0)
        _range("pad_seconds", self.pad_seconds, low=0.0)
        _range("room_rt60", self.room_rt60, above=0.0)
        _range("noise_snr_db", self.noise_snr_db)
        _range("babble_speakers", self.babble_speakers, low=1)
        _range("gain_db", self.gain_db)
        _range("mp3_quality", self.mp3_quality, low=0.0, high=10.0)
        _range("opus_kbps", self.opus_kbps, low=6.0, high=510.0)
        _range("floor_dbfs", self.floor_dbfs, high=0.0)
        _range("vtlp_warp", self.vtlp_warp, above=0.0)
        if not self.trim_db > 0:
            raise ValueError(f"augmentation.trim_db must be a positive number of dB, got {self.trim_db!r}")
        for name in ("room_bank_size", "babble_pool_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"augmentation.{name} must be a whole number of at least 1, got {value!r}")
        if any(not float(count).is_integer() for count in self.babble_speakers):
            raise ValueError(f"augmentation.babble_speakers must be whole numbers, got {list(self.babble_speakers)}")
        _choices("noise_sources", self.noise_sources, NOISE_SOURCES, needed=self.noise_prob > 0)
        _choices("codecs", self.codecs, CODECS, needed=self.channel_prob > 0)
        if "folder" in self.noise_sources and not self.noise_dir:
            raise ValueError(
                "augmentation.noise_sources lists 'folder' but augmentation.noise_dir is not set: give the folder "
                "of noise recordings (e.g. --augmentation.noise_dir /data/musan/noise) or drop 'folder'."
            )
        if self.noise_dir and "folder" not in self.noise_sources:
            raise ValueError(
                f"augmentation.noise_dir is {self.noise_dir} but augmentation.noise_sources does not list 'folder', "
                f"so it would never be used: add it (e.g. [{', '.join([*self.noise_sources, 'folder'])}])."
            )
        if check_paths and self.noise_dir and self.noise_prob > 0:
            noise_files(self.noise_dir)


def noise_files(folder: str | Path) -> list[Path]:
    """The audio files under ``folder`` (any depth, sorted); ``ValueError`` naming the key when there are none."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"augmentation.noise_dir {folder} is not a folder: give a folder of noise recordings.")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in NOISE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(
            f"augmentation.noise_dir {folder} holds no audio files ({', '.join(NOISE_EXTENSIONS)}, searched in "
            "every subfolder): point it at the recordings themselves."
        )
    return files


def _probability(name: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"augmentation.{name} is a probability between 0 and 1, got {value!r}")


def _range(
    name: str,
    pair: object,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
) -> None:
    """``pair`` is [low, high] with low <= high, inside the given bounds (``above``: strictly)."""
    numbers = isinstance(pair, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair
    )
    if not numbers or len(pair) != 2:
        raise ValueError(f"augmentation.{name} must be a range [low, high] of two numbers, got {pair!r}")
    if pair[0] > pair[1]:
        raise ValueError(f"augmentation.{name} is inverted: [low, high] needs low <= high, got {list(pair)}")
    too_low = (low is not None and pair[0] < low) or (above is not None and pair[0] <= above)
    if too_low or (high is not None and pair[1] > high):
        bounds = [f"above {above}" if above is not None else "", f"at least {low}" if low is not None else "",
                  f"at most {high}" if high is not None else ""]  # fmt: skip
        raise ValueError(f"augmentation.{name} values must be {' and '.join(b for b in bounds if b)}, got {list(pair)}")


def _choices(name: str, values: object, known: tuple[str, ...], needed: bool) -> None:
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"augmentation.{name} must be a list of names from {list(known)}, got {values!r}")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"augmentation.{name}: unknown {', '.join(map(repr, unknown))}; choose from {list(known)}")
    if needed and not values:
        raise ValueError(f"augmentation.{name} is empty while its probability is above 0: list at least one")
