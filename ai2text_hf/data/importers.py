"""Importers: the corpora Vietnamese teams use, from their published layout to our metadata CSV.

- VIVOS: ``{train,test}/prompts.txt`` (``VIVOSSPK01_R001 KHÁCH SẠN``), ``{train,test}/waves/<speaker>/<id>.wav``
  and ``{train,test}/genders.txt`` (``VIVOSSPK01 m``).
- Common Voice: ``train.tsv``/``dev.tsv``/``test.tsv`` (or ``validated.tsv``) with ``client_id``, ``path``,
  ``sentence``, ...; audio in ``clips/``.
- A folder of audio files, each with a same-named ``.txt`` transcript beside it.

An importer only writes rows: it never drops one, so a prompt without audio or audio without a transcript
shows up in the preparation report (missing file, empty transcript) instead of vanishing. Audio paths are
written relative to the CSV's folder when the corpus lies under it, else absolute: ``ai2text prepare --csv``
resolves both with no other flag (it takes a CSV's absolute paths as written unless ``--audio-root`` is given).
VIVOS and a folder have no validation split: prepare carves one from train (``--validation-from-train``).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .sources import METADATA_COLUMNS

#: Audio extensions the folder importer picks up (what soundfile decodes).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
#: Common Voice's official split files, speaker-disjoint by construction, and our names for them.
COMMONVOICE_SPLITS = {"train": "train", "dev": "validation", "test": "test"}

Row = dict[str, str]


@dataclass(frozen=True)
class ImportResult:
    csv_path: Path
    rows: int
    splits: dict[str, int]  # rows per split value ("" = none given)
    audio_root: Path  # the corpus folder
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        splits = ", ".join(f"{count} {split or 'without split'}" for split, count in sorted(self.splits.items()))
        lines = [f"Wrote {self.csv_path}: {self.rows} rows ({splits})", *self.notes]
        lines.append(f"Next: ai2text prepare --csv {self.csv_path} --output data/processed/<version>")
        return "\n".join(lines)


def import_vivos(root: str | os.PathLike, output_csv: str | os.PathLike) -> ImportResult:
    """VIVOS → CSV: one row per prompt line, speaker from the utterance id, ``gender`` as an extra column."""
    root = Path(root).absolute()
    rows: list[Row] = []
    for split in ("train", "test"):
        prompts = root / split / "prompts.txt"
        if not prompts.is_file():
            continue
        genders = dict(_split_lines(root / split / "genders.txt"))
        for utterance, transcript in _split_lines(prompts):
            speaker = utterance.split("_", 1)[0]
            rows.append(
                {
                    "file_path": str(root / split / "waves" / speaker / f"{utterance}.wav"),
                    "transcript": transcript,
                    "split": split,
                    "speaker_id": speaker,
                    "gender": genders.get(speaker, ""),
                }
            )
    if not rows:
        raise FileNotFoundError(f"{root} is not a VIVOS corpus: no train/prompts.txt or test/prompts.txt.")
    return _write(rows, Path(output_csv), root)


def import_commonvoice(root: str | os.PathLike, output_csv: str | os.PathLike, tsv: str | None = None) -> ImportResult:
    """Common Voice → CSV: train/dev/test.tsv as train/val/test, or one ``tsv`` (e.g. validated) without split.

    ``client_id`` becomes the speaker; every other column (age, gender, accents, locale, votes, ...) is kept.
    """
    root = Path(root).absolute()
    names = {tsv: ""} if tsv else COMMONVOICE_SPLITS
    found = {name: split for name, split in names.items() if (root / f"{name}.tsv").is_file()}
    if not found:
        raise FileNotFoundError(f"{root} is not a Common Voice release: no {', '.join(f'{n}.tsv' for n in names)}.")
    rows: list[Row] = []
    for name, split in found.items():
        with open(root / f"{name}.tsv", encoding="utf-8", newline="") as handle:
            # Sentences contain quotes: the TSVs are not quoted, so quote characters must stay literal.
            for record in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                rows.append(
                    {
                        "file_path": str(root / "clips" / record.pop("path")),
                        "transcript": record.pop("sentence") or "",
                        "split": split,
                        "speaker_id": record.pop("client_id") or "",
                        **{key: value or "" for key, value in record.items() if key},
                    }
                )
    return _write(rows, Path(output_csv), root)


def import_folder(
    root: str | os.PathLike, output_csv: str | os.PathLike, speaker_from_folder: bool = False
) -> ImportResult:
    """Audio files under ``root`` with same-named ``.txt`` transcripts → CSV (no split: use --auto-split).

    ``speaker_from_folder`` takes each file's parent folder name as its speaker id (``<speaker>/<utt>.wav``).
    """
    root = Path(root).absolute()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"No audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}.")
    rows: list[Row] = []
    for audio in files:
        transcript = audio.with_suffix(".txt")
        rows.append(
            {
                "file_path": str(audio),
                "transcript": transcript.read_text(encoding="utf-8-sig").strip() if transcript.is_file() else "",
                "split": "",
                "speaker_id": audio.parent.name if speaker_from_folder and audio.parent != root else "",
            }
        )
    missing = sum(1 for row in rows if not row["transcript"])
    notes = [f"{missing} audio file(s) have no .txt transcript: prepare reports them as empty_transcript."]
    return _write(rows, Path(output_csv), root, notes if missing else [])


def _split_lines(path: Path) -> Iterable[tuple[str, str]]:
    """``key rest of the line`` pairs of a whitespace-separated listing (missing file → nothing)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            key, _, value = line.strip().partition(" ")
            if key:
                yield key, value.strip()


def _write(rows: list[Row], output_csv: Path, root: Path, notes: list[str] | None = None) -> ImportResult:
    """Write ``rows`` with our columns first, extras after; paths relative to the CSV when under its folder."""
    output_csv = output_csv.absolute()
    output_csv.parent.mkdir(parents=True, exist_ok=True)
    base = str(output_csv.parent)
    extras = sorted({key for row in rows for key in row} - set(METADATA_COLUMNS))
    with open(output_csv, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*METADATA_COLUMNS, *extras], restval="")
        writer.writeheader()
        for row in rows:
            path = row["file_path"]
            inside = os.path.commonpath([path, base]) == base
            writer.writerow({**row, "file_path": os.path.relpath(path, base) if inside else path})
    return ImportResult(
        csv_path=output_csv,
        rows=len(rows),
        splits=dict(Counter(row["split"] for row in rows)),
        audio_root=root,
        notes=notes or [],
    )
