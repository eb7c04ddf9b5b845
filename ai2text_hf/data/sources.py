"""Inputs of data preparation: a metadata CSV or a local Hugging Face dataset, read as the same rows.

Every input becomes CSV-like rows (``file_path, transcript, duration, split, speaker_id`` and any extra
columns, all strings), so one set of checks and one report serve them all. Audio embedded in a Hugging
Face dataset stays in its memory-mapped Arrow column (``Source.audio``) and is decoded from its bytes batch
by batch with soundfile, never through ``datasets.Audio`` decoding (torchcodec) and never from the Hub.

Each source also has a cheap description (``describe_*``) that identifies its content: the CSV's sha256
plus the size and modification time of every audio file it names, or of every file of a dataset folder.
Preparation compares it with an existing version's manifest to decide "up to date" without decoding.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow.compute as pc

from .validation import AUDIO_BYTES_COLUMN, SPLIT_ALIASES, resolve_path

METADATA_COLUMNS = ("file_path", "transcript", "duration", "split", "speaker_id")
REQUIRED_COLUMNS = ("file_path", "transcript")
#: Metadata files of the ``audiofolder`` layout (a ``file_name`` column relative to the file's folder).
AUDIOFOLDER_METADATA = ("metadata.csv", "metadata.jsonl")

Row = dict[str, str | None]


@dataclass
class Source:
    """Rows to prepare plus where their paths resolve; ``audio`` holds embedded audio aligned with rows."""

    rows: list[Row]
    extra_columns: list[str]
    root: Path  # relative paths resolve here (a path escaping it is refused); stored paths are relative to it
    audio: datasets.Dataset | None = None  # one ``_audio`` column {"bytes", "path"}, or None
    embedded: list[bool] | None = None  # rows whose audio bytes are in ``audio``
    lines: list[int] | None = None  # the CSV line of each row (a CSV source only)
    row_roots: list[Path] | None = None  # each row's own root when sources were combined (else ``root``)
    absolute_ok: list[bool] | bool = False  # absolute paths taken as written: no audio root was given
    files: list[str] | None = None  # the CSV of each row, when several were combined


def combine_sources(parts: list[Source]) -> Source:
    """Several CSV sources as one: rows in order, each keeping its own root; stored paths are relative to the
    folder the roots share."""
    if len(parts) == 1:
        return parts[0]
    rows = [row for part in parts for row in part.rows]
    per_row = [(part, row) for part in parts for row in part.rows]
    extras = list(dict.fromkeys(name for part in parts for name in part.extra_columns))
    return Source(
        rows=rows,
        extra_columns=extras,
        root=Path(os.path.commonpath([str(part.root) for part in parts])),
        lines=[line for part in parts for line in part.lines or []],
        row_roots=[part.root for part, _ in per_row],
        absolute_ok=[bool(part.absolute_ok) for part, _ in per_row],
        files=[name for part in parts for name in part.files or []],
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_fingerprint(paths: Iterable[str | os.PathLike], relative_to: Path | None = None) -> str:
    """sha256 over (path, size, mtime) of files: any edit, addition or removal changes it, at stat cost."""
    digest = hashlib.sha256()
    for path in paths:
        name = os.path.relpath(path, relative_to) if relative_to else str(path)
        try:
            stat = os.stat(path)
            digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name}\tmissing\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Metadata CSV
# ---------------------------------------------------------------------------------------------------


def read_metadata(csv_path: str | os.PathLike) -> tuple[list[Row], list[str], list[int]]:
    """CSV data rows as dicts (UTF-8, BOM or not), the header, and the line each row is on.

    Too many fields leave a ``None`` key (``csv.DictReader``'s convention). Every line is accounted for: a
    quoted field that runs across lines (an unterminated quote, which would otherwise swallow the rows after
    it) is an error naming the line where it opened; blank lines are the only ones skipped.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"Metadata CSV not found: {csv_path}")
    rows: list[Row] = []
    lines: list[int] = []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip().lower() for name in next(reader, [])]
            missing = [name for name in REQUIRED_COLUMNS if name not in header]
            if missing:
                raise ValueError(
                    f"{csv_path} lacks the column(s) {missing}; its header is {header}. "
                    f"Expected {','.join(METADATA_COLUMNS)} (file_path and transcript are required)."
                )
            last = reader.line_num
            while True:
                try:
                    record = next(reader, None)
                except csv.Error as error:  # e.g. "field larger than field limit": a quote that never closes
                    raise _unclosed_quote(csv_path, last + 1, None, error) from error
                if record is None:
                    break
                first, last = last + 1, reader.line_num
                if last > first:
                    raise _unclosed_quote(csv_path, first, last, None)
                if record:
                    rows.append(_as_row(header, record))
                    lines.append(first)
    except UnicodeDecodeError as error:
        raise ValueError(f"{csv_path} is not UTF-8 ({error}): re-save it as UTF-8.") from error
    if not rows:
        raise ValueError(f"{csv_path} has a header but no data rows: nothing to prepare.")
    return rows, header, lines


def _as_row(header: list[str], record: list[str]) -> Row:
    """``csv.DictReader``'s mapping: extra fields under ``None``, missing ones ``None``."""
    row: dict = dict(zip(header, record))
    if len(record) > len(header):
        row[None] = record[len(header) :]
    for name in header[len(record) :]:
        row[name] = None
    return row


def _unclosed_quote(csv_path: Path, line: int, until: int | None, error: csv.Error | None) -> ValueError:
    extent = f"runs on to line {until}" if until else f"never closes ({error})"
    return ValueError(
        f"{csv_path}, line {line}: a quoted field opened on this line {extent}, so the rows after it would be "
        'read as its text. Close the quote (a quote inside a field is written twice: "say ""hi""") or remove '
        "it; each row must be on one line. Nothing was prepared."
    )


def read_csv_source(csv_path: Path, audio_root: Path | None) -> tuple[Source, dict]:
    """The CSV's rows and its description (content sha256 + a fingerprint of the audio files it names).

    Without ``audio_root``, relative paths resolve against the CSV's folder and absolute ones are taken as
    written (importers write those for a corpus outside the CSV's folder); with it, every path must lie under it.
    """
    rows, header, lines = read_metadata(csv_path)
    root = audio_root or csv_path.parent
    paths = [resolve_path(row.get("file_path") or "", root, True)[0] for row in rows]
    description = {
        "kind": "csv",
        "csv": str(csv_path),
        "sha256": sha256_file(csv_path),
        "audio_root": str(root),
        "audio_files_sha256": files_fingerprint(paths),
    }
    extras = [name for name in header if name and name not in METADATA_COLUMNS]
    source = Source(
        rows=rows,
        extra_columns=extras,
        root=root,
        lines=lines,
        absolute_ok=audio_root is None,
        files=[str(csv_path)] * len(rows),
    )
    return source, description


# ---------------------------------------------------------------------------------------------------
# Local Hugging Face datasets: save_to_disk folder, parquet files, audiofolder
# ---------------------------------------------------------------------------------------------------


def hf_layout(path: Path) -> str:
    """Which of the supported layouts ``path`` holds; a clear error for anything else."""
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return "save_to_disk"
    if path.suffix == ".parquet" or (path.is_dir() and next(path.rglob("*.parquet"), None)):
        return "parquet"
    if path.is_dir() and any(next(path.rglob(name), None) for name in AUDIOFOLDER_METADATA):
        return "audiofolder"
    raise ValueError(
        f"{path} is not a local Hugging Face dataset: expected a save_to_disk folder (dataset_dict.json or "
        f"state.json), parquet files, or an audiofolder with {' or '.join(AUDIOFOLDER_METADATA)}."
    )


def describe_hf_source(path: Path) -> dict:
    """Identity of a dataset folder without loading it: layout and a fingerprint of every file in it."""
    if not path.exists():
        raise FileNotFoundError(f"Hugging Face dataset not found: {path}")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        "kind": "hf_dataset",
        "path": str(path),
        "layout": hf_layout(path),
        "sha256": files_fingerprint(files, relative_to=path.parent if path.is_file() else path),
    }


def read_hf_source(
    path: Path,
    *,
    audio_column: str,
    text_column: str,
    speaker_column: str | None,
    audio_root: Path | None,
    cache_dir: Path,
) -> Source:
    """Rows of every split of a local dataset; parquet is converted to Arrow in ``cache_dir`` (a temp folder)."""
    layout = hf_layout(path)
    root = audio_root or (path.parent if path.is_file() else path)
    if layout == "audiofolder":
        rows = _audiofolder_rows(path, audio_column, text_column, speaker_column)
        extras = sorted({name for row in rows for name in row} - set(METADATA_COLUMNS))
        return Source(rows=rows, extra_columns=extras, root=root)
    if layout == "save_to_disk":
        loaded = datasets.load_from_disk(str(path))
    else:
        files = {"data_files": str(path)} if path.is_file() else {"data_dir": str(path)}
        loaded = datasets.load_dataset("parquet", cache_dir=str(cache_dir), **files)
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    rows: list[Row] = []
    embedded: list[bool] = []
    audio_parts = []
    extras: set[str] = set()
    for split, part in splits.items():
        missing = [c for c in (audio_column, text_column, speaker_column) if c and c not in part.column_names]
        if missing:
            raise ValueError(
                f"Split {split!r} of {path} has no column(s) {missing}; it has {part.column_names}. "
                "Name the right ones with --audio-column/--text-column/--speaker-column."
            )
        try:
            audio = part.select_columns([audio_column]).cast_column(audio_column, datasets.Audio(decode=False))
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"Column {audio_column!r} of {path} is not audio ({part.features[audio_column]}): "
                "expected an Audio feature or {'bytes', 'path'} structs."
            ) from error
        audio_parts.append(audio.rename_column(audio_column, AUDIO_BYTES_COLUMN))
        structs = audio.data.column(audio_column)
        paths = pc.struct_field(structs, "path").to_pylist()
        embedded += pc.is_valid(pc.struct_field(structs, "bytes")).to_pylist()
        kept = [
            name
            for name, feature in part.features.items()
            if isinstance(feature, datasets.Value) and name not in (audio_column, text_column, speaker_column)
        ]
        extras.update(set(kept) - set(METADATA_COLUMNS))
        table = part.select_columns([text_column, *([speaker_column] if speaker_column else []), *kept]).to_dict()
        for index, audio_path in enumerate(paths):
            rows.append(
                {
                    "file_path": audio_path or f"{split}/{index}",
                    "transcript": table[text_column][index] or "",
                    "split": split,
                    "speaker_id": str(table[speaker_column][index] or "") if speaker_column else "",
                    **{name: _string(table[name][index]) for name in kept},
                }
            )
    return Source(
        rows=rows,
        extra_columns=sorted(extras),
        root=root,
        audio=datasets.concatenate_datasets(audio_parts),
        embedded=embedded,
    )


def _string(value: object) -> str:
    return "" if value is None else str(value)


def _audiofolder_rows(path: Path, audio_column: str, text_column: str, speaker_column: str | None) -> list[Row]:
    """Rows of an audiofolder's metadata files, read directly.

    ``datasets``' own audiofolder builder encodes every example through torchcodec, which we do not
    depend on; the layout itself is simple: ``file_name`` (or ``<audio_column>_file_name``) relative to
    the metadata file's folder, every other column a feature, the split named by the top folder.
    """
    rows: list[Row] = []
    for name in AUDIOFOLDER_METADATA:
        for metadata in sorted(path.rglob(name)):
            for record in _read_records(metadata):
                file_key = next((k for k in ("file_name", f"{audio_column}_file_name") if k in record), None)
                if file_key is None or text_column not in record:
                    raise ValueError(
                        f"{metadata} needs a file_name column and the text column {text_column!r} "
                        f"(--text-column); it has {sorted(record)}."
                    )
                relative = os.path.normpath(os.path.relpath(metadata.parent / str(record[file_key]), path))
                top = relative.split(os.sep, 1)[0].lower()
                rows.append(
                    {
                        "file_path": relative,
                        "transcript": _string(record[text_column]),
                        "split": top if top in SPLIT_ALIASES else "",
                        "speaker_id": _string(record.get(speaker_column)) if speaker_column else "",
                        **{
                            key: _string(value)
                            for key, value in record.items()
                            if key not in (file_key, text_column, speaker_column)
                        },
                    }
                )
    return rows


def _read_records(metadata: Path) -> Iterable[dict]:
    with open(metadata, encoding="utf-8-sig", newline="") as handle:
        if metadata.suffix == ".csv":
            yield from csv.DictReader(handle)
        else:
            yield from (json.loads(line) for line in handle if line.strip())
