"""A prepared dataset version on disk: reading it, and deciding whether it is up to date.

A version folder holds::

    dataset_dict.json, train/, validation/, test/   DatasetDict.save_to_disk (every split present, maybe empty)
    report.json      one entry per input row, in order: kept/skipped, reason codes, how to fix
    stats.json       flat statistics per split (see ``ai2text_hf.data.stats``)
    manifest.json    source checksums, every option, feature settings, package version, counts, and the
                     ``audio_root`` that each row's ``file_path`` is relative to
    README.md        the dataset card: columns, features, counts per split, the options it was prepared with

Versions of format 1 (before the rename) hold ``val/`` instead of ``validation/`` and absolute paths: they
load as they are, and ``resolve_split`` (used by ``load_prepared``'s splits) finds either name.

A version is immutable: preparing into it again with the same inputs and options is a cache hit, and
with anything different it is refused unless the caller asks to overwrite. The manifest's
``fingerprint`` hashes exactly the parts that decide the content (``IDENTITY_KEYS``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from datasets.arrow_writer import ArrowWriter

from .. import __version__

#: Bumped when the folder layout or columns change, so a version is never misread. 2: the ``validation`` split
#: (was ``val``), ``file_path`` relative to the manifest's ``audio_root``, audio as ``datasets.Audio``, README.md.
FORMAT_VERSION = 2
#: Formats this version reads: format 1 folders load as they are (``resolve_split`` finds their ``val``).
READABLE_FORMATS = (1, 2)
#: Manifest entries that decide a version's content; their hash is the manifest's ``fingerprint``.
IDENTITY_KEYS = ("format_version", "ai2text_hf_version", "source", "options", "filters", "feature_extractor")
#: Everything a version folder holds: a folder with anything else in it is not ours to replace.
VERSION_ENTRIES = frozenset(
    {
        "dataset_dict.json",
        "train",
        "validation",
        "val",
        "test",
        "report.json",
        "stats.json",
        "manifest.json",
        "README.md",
    }
)


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a prepared version; fails clearly when ``path`` is not one."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{path} is not a prepared dataset (no manifest.json): run `ai2text prepare ...` on your "
            "metadata CSV first (or ai2text_hf.data.prepare_dataset)."
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    version = manifest.get("format_version")
    if version not in READABLE_FORMATS:
        raise ValueError(
            f"{path} was prepared in format {version}, this ai2text-hf ({__version__}) reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}: re-run `ai2text prepare ...` to rebuild it."
        )
    return manifest


class PreparedDatasetDict(datasets.DatasetDict):
    """The splits of a prepared version, where ``validation`` and ``val`` name the same split (``resolve_split``):
    code written for either name reads versions prepared before and after the rename."""

    def __getitem__(self, name: object) -> datasets.Dataset:
        return super().__getitem__(resolve_split(self.keys(), name) if isinstance(name, str) else name)

    def __contains__(self, name: object) -> bool:
        try:
            resolve_split(self.keys(), name)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return False
        return True


def load_prepared(path: str | os.PathLike) -> PreparedDatasetDict:
    """The train/validation/test splits of a prepared version (memory-mapped, nothing loaded eagerly)."""
    read_manifest(path)
    if not (Path(path) / "dataset_dict.json").is_file():
        raise FileNotFoundError(
            f"{path} has a manifest but no dataset_dict.json: the version is incomplete, re-run "
            "`ai2text prepare ...` with overwrite."
        )
    return PreparedDatasetDict(datasets.load_from_disk(str(path)))


def audio_file(manifest: Mapping, file_path: str) -> Path:
    """The audio file a prepared row's ``file_path`` names: relative to the manifest's ``audio_root`` (absolute
    in versions of format 1, and for files outside the root)."""
    return Path(manifest.get("audio_root") or "/") / file_path


#: Names of the held-out split that picks the checkpoint: ``validation`` (datasets' and the HF examples' name) and
#: ``val``, which versions prepared before the rename hold.
VALIDATION_NAMES = ("validation", "val")


def resolve_split(dataset_dict: Mapping[str, object] | Iterable[str], name: str) -> str:
    """The key of ``dataset_dict`` (or of a list of split names) that holds the split asked for as ``name``;
    ``val`` and ``validation`` find each other, so folders prepared before the rename keep working.

    Raises:
        ValueError: no such split, naming the splits there are.
    """
    names = list(dataset_dict.keys() if isinstance(dataset_dict, Mapping) else dataset_dict)
    if name in names:
        return name
    if name in VALIDATION_NAMES:
        for candidate in VALIDATION_NAMES:
            if candidate in names:
                return candidate
    raise ValueError(f"No split {name!r} in this dataset: it has {', '.join(names) or 'none'}.")


def fingerprint(identity: dict) -> str:
    """sha256 of the identity entries, independent of key order."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def is_up_to_date(output_dir: Path, identity: dict, overwrite: bool, inputs: Sequence[Path] = ()) -> bool:
    """True when ``output_dir`` already holds this exact version; refuses a different one unless ``overwrite``.

    Only a folder that is recognisably a version written here (its manifest, and nothing but a version's
    entries) is ever replaced; ``inputs`` (the CSV, the audio root, a dataset folder) must not lie inside it.

    Raises:
        FileExistsError: ``output_dir`` holds other content and ``overwrite`` is off, or it is not a version
            (then ``overwrite`` cannot replace it either).
    """
    holding = [str(path) for path in inputs if output_dir == path or output_dir in path.parents]
    if holding:
        raise FileExistsError(
            f"--output {output_dir} contains this preparation's input ({', '.join(holding)}): a dataset version "
            "must be written to a folder of its own, e.g. data/processed/NAME. Nothing was written."
        )
    if not output_dir.exists():
        return False
    manifest_path = output_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
    if manifest is not None and manifest.get("fingerprint") == fingerprint(identity):
        return (output_dir / "dataset_dict.json").is_file()
    foreign = foreign_entries(output_dir)
    if foreign is not None:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(
            f"{output_dir} already exists and is not a dataset version written by `ai2text prepare` (it holds "
            f"{shown}). prepare never replaces a folder it did not write, even with --overwrite: choose a new "
            "folder for --output, e.g. data/processed/NAME."
        )
    if overwrite or manifest is None:  # replace the version, or fill an empty folder
        return False
    changed = ", ".join(_changes(manifest, identity))
    raise FileExistsError(
        f"{output_dir} already exists and it was prepared from other inputs or options (changed: {changed}). "
        "Versions are never modified: choose a new version folder, or pass --overwrite (overwrite=True) to replace "
        "this version."
    )


def foreign_entries(folder: Path) -> list[str] | None:
    """What keeps ``folder`` from being a replaceable version (sorted names), or None: an empty folder, or a
    version (manifest of a known format) holding nothing but a version's entries."""
    names = sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else [folder.name]
    if not names:
        return None
    manifest_path = folder / "manifest.json"
    try:
        recognised = json.loads(manifest_path.read_text(encoding="utf-8")).get("format_version") is not None
    except (OSError, ValueError, AttributeError):
        recognised = False
    extra = [name for name in names if name not in VERSION_ENTRIES]
    if not recognised:
        return extra or names
    return extra or None


def _changes(manifest: dict, identity: dict) -> list[str]:
    """Which identity entries differ, down to the option (``options.tone_placement``, ``source.sha256``)."""
    changes = []
    for key in IDENTITY_KEYS:
        old, new = manifest.get(key), identity[key]
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changes += [f"{key}.{name}" for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]
        else:
            changes.append(key)
    return changes


def save_dataset_dict(dataset: datasets.DatasetDict, path: Path) -> None:
    # datasets 5.2 writes zero shards for an empty split, which load_from_disk then cannot read: force one.
    empty_splits = {split: 1 for split, part in dataset.items() if len(part) == 0}
    dataset.save_to_disk(str(path), num_shards=empty_splits)


def save_rows(dataset: datasets.Dataset, rows: dict[str, list[int]], features: datasets.Features, path: Path) -> None:
    """Save ``rows`` of ``dataset`` (per split, ascending) with the columns and types of ``features`` as a
    DatasetDict folder, reading it a batch at a time. A feature may differ from the dataset's in type only where
    the Arrow storage is the same (``datasets.Audio`` over the ``{"bytes", "path"}`` struct ``map`` wrote).

    ``dataset.select(rows).save_to_disk(...)`` reads every row through the Arrow file's memory map, and each
    page it touches stays in the process's resident set until the map closes: peak RSS grew by the size of
    the stored features or audio (~115 MB per hour of audio). Plain buffered reads of the Arrow stream
    files keep memory at one batch on any corpus size. ``dataset`` must be a fresh ``map`` output (its cache
    files in row order, no indices mapping); the folder's metadata is datasets' own (``save_to_disk`` of an
    empty selection), only the data files are written here.
    """
    if dataset._indices is not None or not dataset.cache_files:
        raise ValueError("save_rows reads the dataset's cache files directly: give an unindexed, on-disk dataset")
    columns = list(features)
    empty = datasets.Dataset.from_dict({name: [] for name in columns}, features=features)
    save_dataset_dict(datasets.DatasetDict({split: empty for split in rows}), path)
    owner = np.full(len(dataset), -1, dtype=np.int64)
    for number, indices in enumerate(rows.values()):
        owner[np.asarray(indices, dtype=np.int64)] = number
    writers = [ArrowWriter(features=features, path=str(path / split / "data-00000-of-00001.arrow")) for split in rows]
    offset = 0
    for cache in dataset.cache_files:
        with pa.OSFile(cache["filename"]) as source:
            for batch in pa.ipc.open_stream(source):
                numbers = owner[offset : offset + batch.num_rows]
                offset += batch.num_rows
                batch = batch.select(columns)
                for number in np.unique(numbers[numbers >= 0]):
                    writers[number].write_table(pa.Table.from_batches([batch.filter(pa.array(numbers == number))]))
    for writer in writers:
        writer.finalize()
        writer.close()


def write_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_report(path: Path, entries: list[dict]) -> None:
    """A JSON list with one entry per line: valid JSON, and still greppable / diffable for big corpora."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[\n")
        handle.write(",\n".join(json.dumps(entry, ensure_ascii=False) for entry in entries))
        handle.write("\n]\n")


def publish(staged: Path, output_dir: Path, trash: Path) -> None:
    """Move the finished version into place; an existing one (overwrite) is moved aside first, not merged."""
    if output_dir.exists():
        output_dir.rename(trash)
    staged.rename(output_dir)
