"""Row checks for data preparation: every problem a row can have, as a stable reason code plus its fix.

Text checks run on every row first (cheap, no audio). Audio checks then read the header of every file
and decode only the rows that passed everything else, inside ``Dataset.map`` (``process_batch``), so a
corpus of any size is checked and featurised batch by batch with bounded memory. Each row ends with a
list of reason codes (empty = kept) and one fix sentence per code, so a user repairs the CSV in one go.
"""

from __future__ import annotations

import hashlib
import math
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import numpy as np

from ..normalization_vi import normalize_text, unknown_characters
from .audio import (
    EMPTY_FILE,
    MISSING_FILE,
    UNDECODABLE_FILE,
    AudioDecodeError,
    AudioSource,
    audio_info,
    decode_audio,
    encode_wave,
    featurize_batch,
    rms_dbfs,
)
from .options import Checks

if TYPE_CHECKING:  # torch loads only where features are computed: a cache-hit prepare never needs it
    from ..feature_extraction_ai2text import AI2TextFeatureExtractor

SPLITS = ("train", "validation", "test")
#: Accepted spellings of the split column (lower-cased, stripped); an empty cell means train.
SPLIT_ALIASES = {
    "": "train",
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}

# Stable reason codes: scripts and the CLI match on them, so never rename one.
MALFORMED_ROW = "malformed_row"
UNKNOWN_SPLIT = "unknown_split"
BAD_DURATION = "bad_duration"
EMPTY_TRANSCRIPT = "empty_transcript"
UNKNOWN_CHARACTERS = "unknown_characters"
OUTSIDE_ROOT = "outside_root"
DUPLICATE_ROW = "duplicate_row"
DURATION_MISMATCH = "duration_mismatch"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
SILENT = "silent"
CLIPPED = "clipped"
TRANSCRIPT_TOO_LONG = "transcript_too_long"
DUPLICATE_AUDIO = "duplicate_audio"
#: Every reason code, in the order checks run.
REASONS = (
    MALFORMED_ROW, UNKNOWN_SPLIT, BAD_DURATION, EMPTY_TRANSCRIPT, UNKNOWN_CHARACTERS, OUTSIDE_ROOT, DUPLICATE_ROW,
    MISSING_FILE, EMPTY_FILE, UNDECODABLE_FILE, DURATION_MISMATCH, TOO_SHORT, TOO_LONG, SILENT, CLIPPED,
    TRANSCRIPT_TOO_LONG, DUPLICATE_AUDIO,
)  # fmt: skip

#: Columns of every prepared split besides the stored audio/features (see ``dataset_features``).
BASE_COLUMNS = ("id", "file_path", "transcript", "text", "duration", "speaker_id", "split")
#: Where the audio goes in each storage mode: precomputed log-mels, or 16 kHz audio for on-the-fly features.
STORE_COLUMNS = {"features": "input_features", "audio": "audio"}
#: Bookkeeping columns that live only while preparing (``_path``: the file's absolute path, read by the checks).
INTERNAL_COLUMNS = ("_path", "_declared", "_reasons", "_fixes", "_digest")
AUDIO_BYTES_COLUMN = "_audio"  # {"bytes", "path"} of audio embedded in a Hugging Face dataset

Problem = tuple[str, str]


def dataset_features(
    feature_dim: int, store: str | None, extra_columns: Sequence[str] = (), sampling_rate: int | None = None
) -> datasets.Features:
    """The saved schema, the same for every split (empty ones too) so splits concatenate and load alike.

    Stored audio is a ``datasets.Audio`` feature (WAV bytes of the 16 kHz float32 samples, lossless) when
    ``sampling_rate`` is given; without it, the same Arrow storage as a plain struct, which ``Dataset.map`` can
    write without datasets' audio encoder (torchcodec, not a dependency: ``encode_wave`` writes the bytes).
    """
    columns: dict[str, datasets.features.FeatureType] = {name: datasets.Value("string") for name in BASE_COLUMNS}
    columns["duration"] = datasets.Value("float64")
    columns.update({name: datasets.Value("string") for name in extra_columns})
    if store == "features":
        # Variable first dim: one contiguous block per utterance, read back as numpy/torch without copies.
        columns["input_features"] = datasets.Array2D(shape=(None, feature_dim), dtype="float32")
    elif store == "audio":
        columns["audio"] = (
            datasets.Audio(sampling_rate=sampling_rate, decode=False)
            if sampling_rate
            else {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
        )
    return datasets.Features(columns)


def internal_features() -> dict[str, datasets.features.FeatureType]:
    return {
        "_path": datasets.Value("string"),
        "_declared": datasets.Value("float64"),
        "_reasons": datasets.List(datasets.Value("string")),
        "_fixes": datasets.List(datasets.Value("string")),
        "_digest": datasets.Value("string"),
    }


def extra_column_name(name: str) -> str:
    """Output name of a kept source column: prefixed when it would clash with one of ours."""
    ours = {*BASE_COLUMNS, *STORE_COLUMNS.values()}
    return f"source_{name}" if name in ours or name.startswith("_") else name


# ---------------------------------------------------------------------------------------------------
# Text-level checks: no audio is read.
# ---------------------------------------------------------------------------------------------------


def check_split(value: str) -> tuple[str, Problem | None]:
    split = SPLIT_ALIASES.get(value.strip().lower())
    if split is None:
        return value, (UNKNOWN_SPLIT, f"Set split to train, validation (or val/dev) or test, not {value!r}.")
    return split, None


def check_declared_duration(value: str) -> tuple[float | None, Problem | None]:
    """The CSV duration is only a hint (we measure the audio), but a garbage value means a garbled row."""
    if not value.strip():
        return None, None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        fix = f"Make duration a non-negative number of seconds or leave it empty, not {value!r}."
        return None, (BAD_DURATION, fix)
    return seconds, None


def check_text(transcript: str, text: str) -> Problem | None:
    if not text.strip():
        what = "is empty" if not transcript.strip() else "has nothing left after normalisation"
        return EMPTY_TRANSCRIPT, f"The transcript {what}: write what is said in the audio, or drop the row."
    unknown = unknown_characters(text)
    if unknown:
        shown = ", ".join(f"{char!r} (U+{ord(char):04X})" for char in unknown)
        return UNKNOWN_CHARACTERS, (
            f"Remove or spell out in Vietnamese the characters {shown}: only the Vietnamese alphabet and "
            "spaces are allowed after normalisation."
        )
    return None


def resolve_path(
    given: str, root: Path, allow_outside_root: bool, absolute_ok: bool = False
) -> tuple[str, Problem | None]:
    """Absolute path of a CSV path, refused when it escapes ``root`` (``../../etc/passwd``, ``/elsewhere``).

    Judged twice: on the path as written (``..``) and on the file it finally is (a symlink under the root
    pointing outside it escapes too). ``absolute_ok``: an absolute path is taken as written (the CSV names
    the file explicitly and no audio root was given to confine it); relative paths must still stay under
    ``root``. A path whose file exists under the other Unicode normalisation (NFC
    against NFD: macOS writes decomposed names) resolves to that file.
    """
    path = _existing_spelling(os.path.abspath(root / os.path.expanduser(given.strip())))
    written_inside = _inside(path, str(root))
    if absolute_ok and os.path.isabs(os.path.expanduser(given.strip())):
        return path, None
    if allow_outside_root or (written_inside and _inside(os.path.realpath(path), os.path.realpath(root))):
        return path, None
    link = f" (it is a link to {os.path.realpath(path)})" if written_inside else ""
    fix = (
        f"The path leaves the audio root {root}{link}: move the file under it, point --audio-root at a folder "
        "containing it, or pass --allow-outside-root if you trust this CSV."
    )
    return path, (OUTSIDE_ROOT, fix)


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _existing_spelling(path: str) -> str:
    """``path`` itself, or the same path in NFC or NFD when only that spelling exists on disk."""
    if os.path.lexists(path):
        return path
    for form in ("NFC", "NFD"):
        candidate = unicodedata.normalize(form, path)
        if os.path.lexists(candidate):
            return candidate
    return path


def ctc_min_frames(labels: Sequence) -> int:
    """Fewest logit frames CTC needs for ``labels`` (a transcript's characters or its token ids): one per
    label, plus a blank between repeated labels."""
    return len(labels) + int(sum(a == b for a, b in zip(labels, labels[1:])))


def screen_rows(
    rows: Sequence[dict[str, str | None]],
    *,
    root: Path | Sequence[Path],
    tone_placement: str,
    allow_outside_root: bool,
    absolute_ok: bool | Sequence[bool] = False,
    relative_to: Path | None = None,
    extra_columns: Sequence[str] = (),
    embedded: Sequence[bool] | None = None,
    check_splits: bool = True,
) -> list[dict]:
    """Text-level checks of every row, giving the records the audio map starts from.

    ``root`` and ``absolute_ok`` (see ``resolve_path``) are one for all rows or one per row (several CSVs).
    Each record's ``file_path`` is stored relative to ``relative_to`` when the file lies under it (absolute
    otherwise, and as resolved without ``relative_to``); ``_path`` is always absolute. ``embedded[i]`` marks a
    row whose audio bytes travel with it (Hugging Face input): its path is a label, not a file to check.
    ``check_splits`` is off when an auto-split will replace the split column.
    """
    roots = [root] * len(rows) if isinstance(root, Path) else list(root)
    trusted = [absolute_ok] * len(rows) if isinstance(absolute_ok, bool) else list(absolute_ok)
    records = []
    ids = unique_ids([(row.get("file_path") or "").strip() for row in rows])
    first_row: dict[tuple[str, str], int] = {}
    for number, (row, row_id) in enumerate(zip(rows, ids), start=1):
        given = (row.get("file_path") or "").strip()
        transcript = row.get("transcript") or ""
        problems: list[Problem | None] = []
        declared = None
        if None in row:  # csv.DictReader's restkey: more fields than the header
            split, text = "", ""
            fix = 'The row has more fields than the header: quote fields that contain commas ("...").'
            problems.append((MALFORMED_ROW, fix))
        else:
            split, split_problem = check_split(row.get("split") or "") if check_splits else ("", None)
            text = normalize_text(transcript, tone_placement=tone_placement)
            declared, duration_problem = check_declared_duration(row.get("duration") or "")
            problems += [split_problem, duration_problem, check_text(transcript, text)]
        path = file_path = given
        if given and not (embedded and embedded[number - 1]):
            path, path_problem = resolve_path(given, roots[number - 1], allow_outside_root, trusted[number - 1])
            file_path = _stored_path(path, relative_to)
            problems.append(path_problem)
            earlier = first_row.setdefault((path, text), number)
            if earlier != number and text:
                problems.append((DUPLICATE_ROW, f"The row repeats row {earlier} (same file and transcript): drop it."))
        found = [problem for problem in problems if problem is not None]
        records.append(
            {
                "id": row_id,
                "file_path": file_path,
                "transcript": transcript,
                "text": text,
                "speaker_id": (row.get("speaker_id") or "").strip(),
                "split": split,
                **{extra_column_name(name): row.get(name) or "" for name in extra_columns},
                "_path": path,
                "_declared": declared,
                "_reasons": [code for code, _ in found],
                "_fixes": [fix for _, fix in found],
                "_digest": "",
            }
        )
    return records


def _stored_path(path: str, relative_to: Path | None) -> str:
    if relative_to is not None and _inside(path, str(relative_to)):
        return os.path.relpath(path, relative_to)
    return path


def unique_ids(paths: Sequence[str]) -> list[str]:
    """File stems, suffixed ``_2``, ``_3``… on clashes, in row order, so ids survive re-runs."""
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


# ---------------------------------------------------------------------------------------------------
# Audio checks, run inside Dataset.map
# ---------------------------------------------------------------------------------------------------


def _audio_problem(error: AudioDecodeError) -> Problem:
    fixes = {
        MISSING_FILE: f"Check the path (resolved to {error.path}); relative paths resolve against the CSV's "
        "folder or audio_root.",
        EMPTY_FILE: f"Re-export or re-download {error.path} (it has no audio), or drop the row.",
        UNDECODABLE_FILE: f"Convert {error.path} to 16 kHz mono WAV/FLAC (e.g. `ffmpeg -i in -ac 1 -ar 16000 "
        "out.wav`), or drop the row.",
    }
    return error.reason, fixes[error.reason]


@dataclass
class _AudioVerdict:
    problems: list[Problem]
    duration: float = 0.0
    wave: np.ndarray | None = None  # the 16 kHz waveform, only when the row is fit for training
    digest: str = ""  # content hash of the decoded file, for duplicate detection


def _check_audio(
    source: AudioSource,
    name: str,
    text: str,
    declared: float | None,
    decode: bool,
    feature_extractor: AI2TextFeatureExtractor,
    checks: Checks,
) -> _AudioVerdict:
    """Screen the header first (cheap, and never decodes a 3-hour file), then decode only rows still kept."""
    try:
        duration = audio_info(source, name).duration
    except AudioDecodeError as error:
        return _AudioVerdict([_audio_problem(error)])
    problems: list[Problem] = []
    if declared is not None and abs(declared - duration) > checks.duration_tolerance:
        problems.append(
            (
                DURATION_MISMATCH,
                f"The CSV says {declared:g} s but the audio lasts {duration:.3f} s: fix or empty the duration "
                "cell, and check that the row points at the right file.",
            )
        )
    if duration < checks.min_duration:
        fix = f"The clip lasts {duration:.3f} s, under min_duration={checks.min_duration} s: use a longer recording."
        problems.append((TOO_SHORT, fix))
    elif duration > checks.max_duration:
        fix = f"The clip lasts {duration:.1f} s, over max_duration={checks.max_duration} s: cut it into utterances."
        problems.append((TOO_LONG, fix))
    if problems or not decode:
        return _AudioVerdict(problems, duration)
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        decoded = decode_audio(data, feature_extractor.sampling_rate, name)
    except AudioDecodeError as error:
        return _AudioVerdict([_audio_problem(error)], duration, digest=digest)
    level = rms_dbfs(decoded.wave)
    if level < checks.silence_db:
        shown = "digital silence" if math.isinf(level) else f"{level:.1f} dBFS"
        fix = f"The clip is silent ({shown} RMS, threshold {checks.silence_db} dBFS): check the recording."
        problems.append((SILENT, fix))
    if decoded.clipped_share > checks.max_clipped_share:
        fix = (
            f"{100 * decoded.clipped_share:.1f}% of the samples are at full scale (limit "
            f"{100 * checks.max_clipped_share:g}%): re-record at a lower gain or drop the row."
        )
        problems.append((CLIPPED, fix))
    needed = ctc_min_frames(text)
    # Imported here: the config module loads transformers, which a cache-hit prepare must not pay for.
    from ..configuration_ai2text import subsampled_length

    available = subsampled_length(int(feature_extractor.num_frames(len(decoded.wave))), checks.subsampling_factor)
    if needed > available:
        fix = (
            f"The transcript needs {needed} output frames but {duration:.2f} s of audio gives {available}: "
            "check that transcript and audio match."
        )
        problems.append((TRANSCRIPT_TOO_LONG, fix))
    return _AudioVerdict(problems, duration, None if problems else decoded.wave, digest)


def process_batch(
    batch: dict[str, list],
    *,
    feature_extractor: AI2TextFeatureExtractor,
    checks: Checks,
    store: str | None,
    worker_threads: int | None,
) -> dict[str, list]:
    """``Dataset.map`` body: audio checks, then the stored column (``store``: "features", "audio" or None).

    Audio lives only for one batch, so memory stays bounded on any corpus size. ``worker_threads`` is set
    in forked ``num_proc`` workers: torch's OpenMP pool does not survive a fork (the first multi-threaded
    op deadlocks), and one thread per worker also avoids oversubscription.
    """
    if worker_threads is not None:
        import torch

        if torch.get_num_threads() != worker_threads:
            torch.set_num_threads(worker_threads)
    reasons = [list(codes) for codes in batch["_reasons"]]
    fixes = [list(sentences) for sentences in batch["_fixes"]]
    embedded = batch.get(AUDIO_BYTES_COLUMN) or [None] * len(reasons)
    verdicts = []
    for i, (path, text, declared, audio) in enumerate(zip(batch["_path"], batch["text"], batch["_declared"], embedded)):
        if OUTSIDE_ROOT in reasons[i]:  # refused: never even open it
            verdict = _AudioVerdict([])
        elif audio and audio.get("bytes") is not None:
            verdict = _check_audio(audio["bytes"], path, text, declared, not reasons[i], feature_extractor, checks)
        elif not path:
            verdict = _AudioVerdict([(MISSING_FILE, "Fill in file_path for this row.")])
        else:
            verdict = _check_audio(path, path, text, declared, not reasons[i], feature_extractor, checks)
        reasons[i] += [code for code, _ in verdict.problems]
        fixes[i] += [fix for _, fix in verdict.problems]
        verdicts.append(verdict)
    output = {
        "duration": [v.duration for v in verdicts],
        "_reasons": reasons,
        "_fixes": fixes,
        "_digest": [v.digest for v in verdicts],
    }
    if store is not None:
        kept = [i for i, v in enumerate(verdicts) if v.wave is not None]
        waves = [verdicts[i].wave for i in kept]
        if store == "features":
            values = featurize_batch(waves, feature_extractor)
            empty = np.zeros((0, feature_extractor.feature_dim), dtype=np.float32)
        else:
            rate = feature_extractor.sampling_rate
            values = [{"bytes": encode_wave(w, rate), "path": batch["file_path"][i]} for i, w in zip(kept, waves)]
            empty = None
        column = [empty] * len(verdicts)
        for i, value in zip(kept, values):
            column[i] = value
        output[STORE_COLUMNS[store]] = column
    return output


def flag_duplicate_audio(reasons: list[list[str]], fixes: list[list[str]], digests: Sequence[str]) -> None:
    """Skip every later kept row whose file content equals an earlier kept row's (in place, row order)."""
    first_row: dict[str, int] = {}
    for index, (codes, digest) in enumerate(zip(reasons, digests)):
        if codes or not digest:
            continue
        earlier = first_row.setdefault(digest, index)
        if earlier != index:
            codes.append(DUPLICATE_AUDIO)
            fixes[index].append(
                f"The audio is identical to row {earlier + 1}'s: keep one row per recording (if the transcripts "
                "differ, one of them is wrong)."
            )
