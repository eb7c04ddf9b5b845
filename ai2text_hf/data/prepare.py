"""Data preparation: metadata CSV + audio files → a versioned, validated DatasetDict of log-mel features.

A prepared version folder holds::

    dataset_dict.json, train/, val/, test/   DatasetDict.save_to_disk (every split present, maybe empty)
    report.json      one entry per CSV data row, in order: kept/skipped, reason codes, how to fix
    stats.json       files / hours / speakers per split
    manifest.json    settings, alphabet, source checksum, counts: what a model trained on it must match

Features are computed once here, not on the fly in training, so every epoch reads memory-mapped
arrays instead of decoding and resampling audio again. A bad row never stops the run: it is skipped
with a stable reason code so the user can fix the CSV in one go.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import datasets
import numpy as np

from .. import __version__
from ..feature_extraction_ai2text import AI2TextFeatureExtractor
from ..normalization_vi import VIETNAMESE_ALPHABET, normalize_text, unknown_characters
from .audio import AudioDecodeError, audio_info, load_audio

SPLITS = ("train", "val", "test")
#: Accepted spellings of the split column (lower-cased, stripped); an empty cell means train.
SPLIT_ALIASES = {"": "train", "train": "train", "val": "val", "validation": "val", "dev": "val", "test": "test"}
METADATA_COLUMNS = ("file_path", "transcript", "duration", "split", "speaker_id")
REQUIRED_COLUMNS = ("file_path", "transcript")
#: Bumped when the folder layout or columns change, so old versions are refused instead of misread.
FORMAT_VERSION = 1
#: Time reduction of the model's convolutional front end (AI2TextConfig.subsampling_factor default).
DEFAULT_SUBSAMPLING_FACTOR = 4

# Stable reason codes: scripts and the CLI match on them, so never rename one.
MISSING_FILE = "missing_file"
UNDECODABLE_FILE = "undecodable_file"
EMPTY_FILE = "empty_file"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
EMPTY_TRANSCRIPT = "empty_transcript"
UNKNOWN_CHARACTERS = "unknown_characters"
TRANSCRIPT_TOO_LONG = "transcript_too_long"
UNKNOWN_SPLIT = "unknown_split"
BAD_DURATION = "bad_duration"
MALFORMED_ROW = "malformed_row"

_INTERNAL_COLUMNS = ["_reasons", "_fixes"]


@dataclass(frozen=True)
class PrepareResult:
    """What ``prepare_dataset`` produced; ``summary()`` is the table printed when ``progress`` is on."""

    output_dir: Path
    total_rows: int
    counts: dict[str, int]  # kept files per split
    hours: dict[str, float]
    skipped_rows: int
    skipped_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def report_path(self) -> Path:
        return self.output_dir / "report.json"

    @property
    def stats_path(self) -> Path:
        return self.output_dir / "stats.json"

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / "manifest.json"

    def summary(self) -> str:
        lines = [f"Prepared {self.output_dir}: kept {sum(self.counts.values())} of {self.total_rows} rows"]
        lines.append(f"  {'split':<8}{'files':>8}{'hours':>10}")
        for split in SPLITS:
            lines.append(f"  {split:<8}{self.counts[split]:>8}{self.hours[split]:>10.3f}")
        if self.skipped_rows:
            lines.append(f"  skipped {self.skipped_rows} rows (a row may have several reasons; see report.json):")
            for reason, count in sorted(self.skipped_by_reason.items(), key=lambda item: (-item[1], item[0])):
                lines.append(f"    {reason:<22}{count:>6}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Row checks. Each returns (reason_code, fix_sentence) problems so a new check is one more function.
# ---------------------------------------------------------------------------------------------------

Problem = tuple[str, str]


def _check_split(value: str) -> tuple[str, list[Problem]]:
    split = SPLIT_ALIASES.get(value.strip().lower())
    if split is None:
        return value, [(UNKNOWN_SPLIT, f"Set split to train, val (or validation/dev) or test instead of {value!r}.")]
    return split, []


def _check_declared_duration(value: str) -> list[Problem]:
    """The CSV duration is only a hint (we measure the audio), but a garbage value means a garbled row."""
    if not value.strip():
        return []
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        return [(BAD_DURATION, f"Make duration a non-negative number of seconds or leave it empty (got {value!r}).")]
    return []


def _check_text(transcript: str, text: str) -> list[Problem]:
    if not text.strip():
        what = "is empty" if not transcript.strip() else "has nothing left after normalisation"
        return [(EMPTY_TRANSCRIPT, f"The transcript {what}: write what is said in the audio, or drop the row.")]
    unknown = unknown_characters(text)
    if unknown:
        shown = ", ".join(f"{char!r} (U+{ord(char):04X})" for char in unknown)
        return [(UNKNOWN_CHARACTERS, f"Remove or spell out in Vietnamese the characters {shown}: only the "
                 "Vietnamese alphabet and spaces are allowed after normalisation.")]
    return []


def ctc_min_frames(text: str) -> int:
    """Fewest logit frames CTC needs for ``text``: one per label, plus a blank between repeated labels."""
    return len(text) + sum(a == b for a, b in zip(text, text[1:]))


def _check_audio(
    path: str,
    text: str,
    decode: bool,
    feature_extractor: AI2TextFeatureExtractor,
    min_duration: float,
    max_duration: float,
    subsampling_factor: int,
) -> tuple[list[Problem], float, np.ndarray | None]:
    """Screen the header first (cheap, and never decodes a 3-hour file), then decode only rows still kept."""
    if not path:
        return [(MISSING_FILE, "Fill in file_path for this row.")], 0.0, None
    try:
        duration = audio_info(path).duration
    except AudioDecodeError as error:
        return [_audio_problem(error)], 0.0, None
    if duration < min_duration:
        return [(TOO_SHORT, f"The clip lasts {duration:.3f} s, under min_duration={min_duration} s: "
                 "use a longer recording or lower min_duration.")], duration, None
    if duration > max_duration:
        return [(TOO_LONG, f"The clip lasts {duration:.1f} s, over max_duration={max_duration} s: "
                 "cut it into shorter utterances or raise max_duration.")], duration, None
    if not decode:
        return [], duration, None
    try:
        wave, duration = load_audio(path, target_sr=feature_extractor.sampling_rate)
    except AudioDecodeError as error:
        return [_audio_problem(error)], duration, None
    needed = ctc_min_frames(text)
    available = int(feature_extractor.num_frames(len(wave))) // subsampling_factor
    if needed > available:
        return [(TRANSCRIPT_TOO_LONG, f"The transcript needs {needed} output frames but {duration:.2f} s of "
                 f"audio gives {available}: check that transcript and audio match.")], duration, None
    return [], duration, wave


def _audio_problem(error: AudioDecodeError) -> Problem:
    fixes = {
        MISSING_FILE: f"Check the path (resolved to {error.path}); relative paths resolve against the CSV's "
        "folder or audio_root.",
        EMPTY_FILE: f"Re-export or re-download {error.path} (it has no audio), or drop the row.",
        UNDECODABLE_FILE: f"Convert {error.path} to 16 kHz mono WAV/FLAC (e.g. `ffmpeg -i in -ac 1 -ar 16000 "
        "out.wav`), or drop the row.",
    }
    return error.reason, fixes[error.reason]


def _probe_and_featurize(
    batch: dict[str, list],
    *,
    feature_extractor: AI2TextFeatureExtractor,
    min_duration: float,
    max_duration: float,
    subsampling_factor: int,
) -> dict[str, list]:
    """``Dataset.map`` body: audio checks + log-mel features; audio lives only for one batch (bounded memory)."""
    reasons = [list(codes) for codes in batch["_reasons"]]
    fixes = [list(sentences) for sentences in batch["_fixes"]]
    durations: list[float] = []
    waves: list[np.ndarray] = []
    kept_rows: list[int] = []
    for i, (path, text) in enumerate(zip(batch["file_path"], batch["text"])):
        problems, duration, wave = _check_audio(
            path, text, not reasons[i], feature_extractor, min_duration, max_duration, subsampling_factor
        )
        durations.append(duration)
        reasons[i] += [code for code, _ in problems]
        fixes[i] += [fix for _, fix in problems]
        if wave is not None:
            waves.append(wave)
            kept_rows.append(i)
    empty = np.zeros((0, feature_extractor.feature_size), dtype=np.float32)
    features = [empty] * len(durations)
    if waves:
        computed = feature_extractor(waves, sampling_rate=feature_extractor.sampling_rate, padding=False)
        for i, feats in zip(kept_rows, computed["input_features"]):
            features[i] = feats
    return {"duration": durations, "input_features": features, "_reasons": reasons, "_fixes": fixes}


# ---------------------------------------------------------------------------------------------------
# CSV reading
# ---------------------------------------------------------------------------------------------------


def read_metadata(csv_path: str | os.PathLike) -> list[dict[str, str | None]]:
    """CSV data rows as dicts (UTF-8, BOM or not). A row with too many fields gets ``None`` → malformed."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"Metadata CSV not found: {csv_path}")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or []]
            missing = [name for name in REQUIRED_COLUMNS if name not in reader.fieldnames]
            if missing:
                raise ValueError(
                    f"{csv_path} lacks the column(s) {missing}; its header is {reader.fieldnames}. "
                    f"The header must be {','.join(METADATA_COLUMNS)} (file_path and transcript are required)."
                )
            return list(reader)
    except UnicodeDecodeError as error:
        raise ValueError(f"{csv_path} is not UTF-8 ({error}): re-save it as UTF-8.") from error


def _unique_ids(paths: list[str]) -> list[str]:
    """File stems, suffixed ``_2``, ``_3``… on clashes, in CSV order, so ids survive re-runs."""
    ids: list[str] = []
    taken: set[str] = set()
    for path in paths:
        stem = Path(path).stem or "row"
        candidate, k = stem, 2
        while candidate in taken:
            candidate, k = f"{stem}_{k}", k + 1
        taken.add(candidate)
        ids.append(candidate)
    return ids


def _resolve(path: str, base: Path) -> str:
    # abspath, not resolve(): keep symlinked corpus layouts readable in the report.
    return os.path.abspath(base / os.path.expanduser(path.strip()))


def _screen_rows(rows: list[dict[str, str | None]], base: Path, tone_placement: str) -> list[dict]:
    """Text-only checks (no audio), giving the records the audio map starts from."""
    records = []
    ids = _unique_ids([(row.get("file_path") or "").strip() for row in rows])
    for row, row_id in zip(rows, ids):
        given = row.get("file_path") or ""
        transcript = row.get("transcript") or ""
        problems: list[Problem] = []
        if None in row:  # csv.DictReader's restkey: more fields than the header
            problems.append((MALFORMED_ROW, "The row has more fields than the header: quote fields that contain "
                             "commas (\"...\") and check the column count."))
            split, text = "", ""
        else:
            split, split_problems = _check_split(row.get("split") or "")
            text = normalize_text(transcript, tone_placement=tone_placement)
            problems += split_problems + _check_declared_duration(row.get("duration") or "")
            problems += _check_text(transcript, text)
        records.append({
            "id": row_id,
            "file_path": _resolve(given, base) if given.strip() else "",
            "transcript": transcript,
            "text": text,
            "speaker_id": (row.get("speaker_id") or "").strip(),
            "split": split,
            "_reasons": [code for code, _ in problems],
            "_fixes": [fix for _, fix in problems],
        })
    return records


# ---------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------


def _features(n_mels: int) -> datasets.Features:
    return datasets.Features({
        "id": datasets.Value("string"),
        "file_path": datasets.Value("string"),
        "transcript": datasets.Value("string"),
        "text": datasets.Value("string"),
        "duration": datasets.Value("float64"),
        "speaker_id": datasets.Value("string"),
        "split": datasets.Value("string"),
        # Variable first dim: one contiguous block per utterance, read back as numpy/torch without copies.
        "input_features": datasets.Array2D(shape=(None, n_mels), dtype="float32"),
    })


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write_report(path: Path, entries: list[dict]) -> None:
    """A JSON list with one entry per line: valid JSON, and still greppable / diffable for big corpora."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[\n")
        handle.write(",\n".join(json.dumps(entry, ensure_ascii=False) for entry in entries))
        handle.write("\n]\n")


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Silence datasets' bars for quiet runs, restoring the caller's global setting afterwards."""
    was_disabled = datasets.are_progress_bars_disabled()
    if enabled:
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _publish(staged: Path, output_dir: Path, trash: Path) -> None:
    """Move the finished version into place; an existing one (overwrite) is moved aside first, not merged."""
    if output_dir.exists():
        output_dir.rename(trash)
    staged.rename(output_dir)


# ---------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------


def prepare_dataset(
    csv_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    audio_root: str | os.PathLike | None = None,
    feature_extractor: AI2TextFeatureExtractor | None = None,
    tone_placement: str = "classic",
    num_proc: int | None = None,
    min_duration: float = 0.5,
    max_duration: float = 30.0,
    batch_size: int = 64,
    subsampling_factor: int = DEFAULT_SUBSAMPLING_FACTOR,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Validate every CSV row, featurise the good ones and save a self-describing dataset version.

    ``output_dir`` is the version folder itself. It is built in a hidden sibling folder and renamed
    into place at the end, so an interrupted run never leaves a half-written version behind.
    ``subsampling_factor`` must match the model's: it decides which transcripts are too long for CTC.
    """
    csv_path = Path(csv_path).absolute()
    output_dir = Path(output_dir).absolute()
    if output_dir.exists() and not overwrite:
        raise FileExistsError(
            f"{output_dir} already exists. Choose a new version folder, or pass overwrite=True to replace it."
        )
    feature_extractor = feature_extractor or AI2TextFeatureExtractor()
    rows = read_metadata(csv_path)
    base = Path(audio_root).absolute() if audio_root is not None else csv_path.parent
    records = _screen_rows(rows, base, tone_placement)

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        with _progress_bars(progress):
            features = _features(feature_extractor.feature_size)
            internal = {name: datasets.List(datasets.Value("string")) for name in _INTERNAL_COLUMNS}
            screened = datasets.Dataset.from_list(
                records, features=datasets.Features({**{k: v for k, v in features.items()
                                                        if k not in ("duration", "input_features")}, **internal})
            )
            processed = screened.map(
                _probe_and_featurize,
                batched=True,
                batch_size=batch_size,
                writer_batch_size=batch_size,  # flush features to disk every batch: bounded memory
                num_proc=num_proc if num_proc and num_proc > 1 and len(records) > 1 else None,
                fn_kwargs={
                    "feature_extractor": feature_extractor,
                    "min_duration": min_duration,
                    "max_duration": max_duration,
                    "subsampling_factor": subsampling_factor,
                },
                features=datasets.Features({**features, **internal}),
                cache_file_name=str(staging / "cache" / "features.arrow"),
                load_from_cache_file=False,
                desc="Decoding audio + log-mel features",
            )
            summary = processed.select_columns(["_reasons", "_fixes", "split", "duration", "speaker_id"]).to_dict()
            splits = {
                split: [i for i, (codes, s) in enumerate(zip(summary["_reasons"], summary["split"]))
                        if not codes and s == split]
                for split in SPLITS
            }
            dataset = datasets.DatasetDict({
                split: processed.select(indices).remove_columns(_INTERNAL_COLUMNS) for split, indices in splits.items()
            })
            staged = staging / "version"
            # datasets 5.2 writes zero shards for an empty split, which load_from_disk then cannot read.
            empty_splits = {split: 1 for split, part in dataset.items() if len(part) == 0}
            dataset.save_to_disk(str(staged), num_shards=empty_splits, num_proc=num_proc)

        entries = [
            {
                "row": number,
                "file_path": row.get("file_path") or "",
                "status": "skipped" if codes else "kept",
                "reasons": codes,
                "fix": " ".join(fixes),
            }
            for number, (row, codes, fixes) in enumerate(zip(rows, summary["_reasons"], summary["_fixes"]), start=1)
        ]
        skipped_by_reason = dict(Counter(code for codes in summary["_reasons"] for code in codes))
        skipped_rows = sum(1 for codes in summary["_reasons"] if codes)
        kept = {split: len(indices) for split, indices in splits.items()}
        hours = {split: sum(summary["duration"][i] for i in indices) / 3600 for split, indices in splits.items()}
        stats: dict[str, float | int] = {}
        for split, indices in splits.items():
            stats[f"{split}_files"] = kept[split]
            stats[f"{split}_hours"] = round(hours[split], 6)
            stats[f"{split}_speakers"] = len({summary["speaker_id"][i] for i in indices} - {""})
        stats.update(
            total_files=sum(kept.values()), total_hours=round(sum(hours.values()), 6), skipped_rows=skipped_rows
        )
        manifest = {
            "format_version": FORMAT_VERSION,
            "ai2text_hf_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": {
                "csv": str(csv_path),
                "sha256": _sha256(csv_path),
                "audio_root": str(base),
                "rows": len(rows),
            },
            "feature_extractor": feature_extractor.to_dict(),
            "normalizer": {"tone_placement": tone_placement},
            "alphabet": list(VIETNAMESE_ALPHABET),
            "filters": {
                "min_duration": min_duration,
                "max_duration": max_duration,
                "subsampling_factor": subsampling_factor,
            },
            "counts": {**kept, "skipped": skipped_rows, "skipped_by_reason": skipped_by_reason},
        }
        _write_report(staged / "report.json", entries)
        _write_json(staged / "stats.json", stats)
        _write_json(staged / "manifest.json", manifest)
        del dataset, processed, screened  # release the memory-mapped cache files before deleting them
        _publish(staged, output_dir, staging / "previous")
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    result = PrepareResult(
        output_dir=output_dir,
        total_rows=len(rows),
        counts=kept,
        hours=hours,
        skipped_rows=skipped_rows,
        skipped_by_reason=skipped_by_reason,
    )
    if progress:
        print(result.summary())
    return result


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a prepared version; fails clearly when ``path`` is not one."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{path} is not a prepared dataset (no manifest.json): run `ai2text prepare ...` on your metadata "
            "CSV first (or ai2text_hf.data.prepare_dataset)."
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} was prepared in format {version}, this ai2text-hf ({__version__}) reads format "
            f"{FORMAT_VERSION}: re-run `ai2text prepare ...` to rebuild it."
        )
    return manifest


def load_prepared(path: str | os.PathLike) -> datasets.DatasetDict:
    """The train/val/test DatasetDict of a prepared version (memory-mapped, nothing loaded eagerly)."""
    read_manifest(path)
    if not (Path(path) / "dataset_dict.json").is_file():
        raise FileNotFoundError(
            f"{path} has a manifest but no dataset_dict.json: the version is incomplete, re-run "
            "`ai2text prepare ...` with overwrite."
        )
    return datasets.load_from_disk(str(path))
