"""Preparation options: the checks' thresholds (``Checks``) and everything else ``prepare`` takes
(``PrepareOptions``), each field's default and help text defined once.

``ai2text prepare``'s arguments are generated from these fields (``ai2text_hf.cli.options``), the way the
Hugging Face examples build theirs from argument dataclasses, and ``prepare_dataset`` takes a
``PrepareOptions``. This module imports nothing heavy: the command line is built from it on every start.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike


#: Argument group of the checks' thresholds in ``ai2text prepare --help``.
CHECKS_GROUP = "checks (a row failing one is skipped, with its reason and fix in the report)"


def option(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field with its command-line help; ``cli`` holds argparse extras (``flags``, ``metavar``,
    ``choices``, ``action``, ``group``) for the generator, ``flags`` defaulting to ``--field-name``."""
    return field(default=default, metadata={"help": help, **cli})


def check(default: Any, help: str, **cli: Any) -> Any:
    """A threshold of the checks: an ``option`` in the checks' argument group."""
    return option(default, help, group=CHECKS_GROUP, **cli)


@dataclass(frozen=True)
class Checks:
    """Thresholds of the audio checks, recorded in the manifest (``filters``) with the dataset."""

    min_duration: float = check(0.5, "Skip shorter utterances, seconds.")
    max_duration: float = check(30.0, "Skip longer utterances, seconds.")
    duration_tolerance: float = check(0.1, "Skip a row whose CSV duration differs from the audio's by more, seconds.")
    silence_db: float = check(-60.0, "Skip clips quieter than this RMS level, dBFS.")
    max_clipped_share: float = check(
        0.01, "Skip clips with a larger share of samples at full scale (0.01 = 1%).", flags=("--max-clipped",)
    )
    # CTC can only give a transcript with more labels than the model has output frames an infinite loss.
    subsampling_factor: int = check(4, "The model's time reduction: decides which transcripts are too long for CTC.")


@dataclass(frozen=True, kw_only=True)
class PrepareOptions(Checks):
    """Everything ``prepare_dataset`` needs: the inputs, the output version folder, the checks' thresholds
    (inherited from ``Checks``), the features and how splits are made."""

    csv_path: PathLike | Sequence[PathLike] | None = option(
        None,
        "Metadata CSV with columns file_path,transcript[,duration,split,speaker_id,...extra columns]. Repeat it to "
        "combine corpora: each CSV's paths resolve against its own folder (or its --audio-root).",
        flags=("--csv",),
        action="append",
        metavar="CSV",
    )
    hf_dataset: PathLike | None = option(
        None,
        "Local Hugging Face dataset instead of a CSV: a save_to_disk folder, parquet file(s) or an audiofolder.",
    )
    output_dir: PathLike | None = option(
        None,
        "Dataset version folder to create, e.g. data/processed/v1 (not needed with --validate-only).",
        flags=("--output",),
    )
    audio_root: PathLike | Sequence[PathLike] | None = option(
        None,
        "Folder relative file paths resolve against (default: the CSV's or dataset's folder); paths leaving it "
        "are refused. Absolute paths in a CSV are taken as written unless --audio-root is given. With several "
        "--csv: give it once for all, or once per CSV in the same order.",
        action="append",
    )
    allow_outside_root: bool = option(False, "Accept file paths outside the audio root (trusted CSVs).")
    audio_column: str = option("audio", "--hf-dataset column holding the audio.")
    text_column: str = option("text", "--hf-dataset column holding the transcript.")
    speaker_column: str | None = option(None, "--hf-dataset column holding the speaker id (optional).")
    num_proc: int | None = option(None, "Processes for feature extraction (default: one; the command: CPU count).")
    batch_size: int = option(64, "Rows per feature-extraction batch.")
    tone_placement: str = option(
        "classic", "Tone mark placement for oa/oe/uy: classic 'hòa' or modern 'hoà'.", choices=("classic", "modern")
    )
    n_mels: int | None = option(None, "Mel bins (default 80); must match the recipe's n_mels.")
    pitch: bool = option(
        False,
        "Three pitch columns per frame (voicing, log-F0, its slope) after the mel bins, for a recipe with "
        "pitch: true such as recipes/demo-cpu.yaml (default: off, as in recipes). They let a model tell "
        "Vietnamese tones apart given a few hours of speech or more.",
    )
    pitch_norm_window: float | None = option(
        None,
        "With --pitch: centre the log-F0 on the voiced mean of this many seconds around each frame (default 1.5; "
        "0: the whole utterance); the recipe's pitch_norm_window (null for 0).",
        metavar="SECONDS",
    )
    n_fft: int | None = option(None, "FFT and window size in samples (default 400); the recipe's n_fft.")
    hop_length: int | None = option(None, "Feature hop in samples (default 160); the recipe's hop_length.")
    sample_rate: int | None = option(None, "Rate audio is resampled to (default 16000); the recipe's.")
    auto_split_ratios: str | Sequence[float] | None = option(
        None,
        "Ignore the split column and make a deterministic speaker-disjoint split, e.g. 0.9,0.05,0.05.",
        flags=("--auto-split",),
        metavar="TRAIN,VAL,TEST",
    )
    split_seed: int = option(0, "Seed of --auto-split and of the validation split carved from train.")
    validation_from_train: float = option(
        0.05,
        "When no row is in the validation split (VIVOS, a folder without splits), move this share of the train "
        "rows there, whole speakers at a time when speakers are known, chosen deterministically (--split-seed); "
        "0 turns it off. The report says when it happened.",
        metavar="FRACTION",
    )
    on_the_fly: bool = option(
        False,
        "Store 16 kHz audio (column 'audio') instead of features; the training collator computes features, so "
        "waveform augmentation can happen at training time.",
    )
    strict: bool = option(False, "Exit non-zero and write no dataset if any row has a problem.")
    validate_only: bool = option(False, "Only check the rows and write the report (--report); no dataset.")
    report_path: PathLike | None = option(
        None, "Also write report.json (one entry per row) here; required with --validate-only.", flags=("--report",)
    )
    overwrite: bool = option(False, "Replace an existing dataset version prepared differently.")

    def checks(self) -> Checks:
        """Just the thresholds (what the manifest records as ``filters``)."""
        return Checks(**{f.name: getattr(self, f.name) for f in fields(Checks)})

    def __post_init__(self) -> None:
        if not 0 <= self.validation_from_train < 1:
            raise ValueError(f"validation_from_train must be in [0, 1), not {self.validation_from_train}.")

    @property
    def csv_paths(self) -> list[Path]:
        """The metadata CSVs, absolute (one or several)."""
        given = self.csv_path
        if given is None:
            return []
        listed = [given] if isinstance(given, str | os.PathLike) else list(given)
        return [Path(path).absolute() for path in listed]

    @property
    def audio_roots(self) -> list[Path | None]:
        """The audio root of each CSV (None: the CSV's own folder); of the dataset for ``hf_dataset``."""
        given = self.audio_root
        listed = [] if given is None else [given] if isinstance(given, str | os.PathLike) else list(given)
        roots = [Path(path).absolute() for path in listed]
        count = max(len(self.csv_paths), 1)
        if len(roots) == 1:
            return roots * count
        if not roots:
            return [None] * count
        if len(roots) != count:
            raise ValueError(
                f"{len(roots)} --audio-root for {count} --csv: give one audio root for all CSVs, or one per CSV "
                "in the same order."
            )
        return roots

    def feature_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``AI2TextFeatureExtractor``: only those given (the rest keep its defaults)."""
        settings = {
            "feature_size": self.n_mels,
            "n_fft": self.n_fft,
            "win_length": self.n_fft,
            "hop_length": self.hop_length,
            "sampling_rate": self.sample_rate,
            "pitch": self.pitch or None,
        }
        settings = {key: value for key, value in settings.items() if value is not None}
        if self.pitch_norm_window is not None:
            settings["pitch_norm_window"] = self.pitch_norm_window or None  # 0: centre on the whole utterance
        return settings

    def request(self) -> dict[str, Any]:
        """Every option with its paths absolute: what an identical re-run is recognised by (no torch needed)."""
        values = asdict(self)
        values["csv_path"] = [str(path) for path in self.csv_paths]
        values["audio_root"] = [str(path) if path else None for path in self.audio_roots]
        for key in ("hf_dataset", "output_dir", "report_path"):
            values[key] = str(Path(values[key]).absolute()) if values[key] else None
        if not isinstance(self.auto_split_ratios, str | None):
            values["auto_split_ratios"] = list(self.auto_split_ratios)
        return values
