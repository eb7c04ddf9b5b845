"""The dataset card (README.md) of a prepared version: what it holds and how it was made, for people and the Hub.

The YAML header follows the Hub's dataset card metadata (``dataset_info`` features and split sizes); the body
lists the columns, the counts per split and every preparation option, from the manifest just written.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import datasets
import yaml

from .options import PrepareOptions

#: What each column holds; extra CSV columns are listed as "from the metadata CSV".
COLUMN_DOCS = {
    "id": "Utterance id: the audio file's stem, suffixed _2, _3... when stems repeat.",
    "file_path": "The audio file, relative to the manifest's audio_root (absolute for a file outside it).",
    "transcript": "The transcript as given.",
    "text": "The normalised transcript the model learns: lower case, Vietnamese letters and spaces only.",
    "duration": "Length of the audio in seconds.",
    "speaker_id": "Speaker id as given (empty when unknown).",
    "split": "The split the row belongs to.",
    "input_features": "Log-mel features (frames x bins, float32), computed at preparation.",
    "audio": "The 16 kHz mono audio (datasets.Audio: WAV bytes of float32 samples, decode=False).",
}


def write_dataset_card(path: Path, manifest: dict, features: datasets.Features, options: PrepareOptions) -> None:
    """Write README.md for the version whose ``manifest`` and saved ``features`` are given."""
    counts = manifest["counts"]
    splits = list(manifest["splits"])
    header = {
        "language": ["vi"],
        "task_categories": ["automatic-speech-recognition"],
        "dataset_info": {
            "features": features._to_yaml_list(),
            "splits": [{"name": split, "num_examples": counts[split]} for split in splits],
        },
    }
    columns = "\n".join(
        f"| `{name}` | {feature_type(feature)} | {COLUMN_DOCS.get(name, 'From the metadata CSV.')} |"
        for name, feature in features.items()
    )
    table = "\n".join(f"| {split} | {counts[split]} |" for split in splits)
    defaults = {field.name: field.default for field in fields(PrepareOptions)}
    given = {key: value for key, value in asdict(options).items() if value != defaults[key]}
    lines = [
        "---",
        yaml.safe_dump(header, allow_unicode=True, sort_keys=False).strip(),
        "---",
        "",
        f"# Dataset version `{Path(options.output_dir or path.parent).name}`",
        "",
        "Vietnamese speech prepared by `ai2text prepare` (ai2text-hf "
        f"{manifest['ai2text_hf_version']}, format {manifest['format_version']}). Load it with "
        "`datasets.load_from_disk(<this folder>)` or `ai2text_hf.data.load_prepared`.",
        "",
        "## Splits",
        "",
        "| split | utterances |",
        "|---|---:|",
        table,
        "",
        f"{counts['rows']} input rows: {counts['kept']} kept, {counts['skipped']} skipped (report.json gives each "
        "row's reasons and fix).",
        *(f"\nNote: {note}" for note in manifest.get("notes", [])),
        *(f"\nWarning: {warning}" for warning in manifest.get("warnings", [])),
        "",
        "## Columns",
        "",
        "| column | feature | holds |",
        "|---|---|---|",
        columns,
        "",
        f"Audio root: `{manifest['audio_root']}`.",
        "",
        "## How it was prepared",
        "",
        "Options given (everything else at its default; manifest.json records all of them, the feature "
        "extractor's settings and the sources' checksums):",
        "",
        "```yaml",
        yaml.safe_dump(_plain(given), allow_unicode=True, sort_keys=False).strip() or "{}",
        "```",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def feature_type(feature: object) -> str:
    """A short name of a ``datasets`` feature for the column table."""
    if isinstance(feature, datasets.Value):
        return feature.dtype
    return type(feature).__name__


def _plain(value: object) -> object:
    """Paths and tuples as YAML-friendly strings and lists."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value
