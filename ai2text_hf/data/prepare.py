"""Data preparation: metadata CSVs (or a local Hugging Face dataset) → a validated, versioned DatasetDict.

Every input row of every CSV is accounted for: it is kept, or skipped with stable reason codes and the fix
(``report.json``), and the counts add up to the number of rows. A corpus without a validation split (VIVOS,
a folder of recordings) gets one carved from train, whole speakers at a time (``validation_from_train``).
Features are computed once here, not on the fly in training, so every epoch reads memory-mapped arrays
instead of decoding and resampling audio again; ``on_the_fly`` stores 16 kHz audio (a ``datasets.Audio``
column) instead, for waveform augmentation at training time (the collator then calls
``ai2text_hf.data.audio.featurize_batch``). The folder layout and the rule that
versions are immutable are in ``ai2text_hf.data.versions``; the row checks in ``.validation``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets

from .. import __version__
from ..normalization_vi import VIETNAMESE_ALPHABET
from .card import write_dataset_card
from .options import PathLike, PrepareOptions
from .sources import Source, combine_sources, describe_hf_source, read_csv_source, read_hf_source
from .splits import auto_split, parse_split_ratios, speaker_overlap_warning
from .stats import STAT_COLUMNS, compute_statistics
from .validation import (
    AUDIO_BYTES_COLUMN,
    SPLITS,
    Checks,
    dataset_features,
    extra_column_name,
    flag_duplicate_audio,
    internal_features,
    process_batch,
    screen_rows,
)
from .versions import (
    FORMAT_VERSION,
    fingerprint,
    is_up_to_date,
    load_prepared,
    publish,
    read_manifest,
    save_rows,
    write_json,
    write_report,
)

if TYPE_CHECKING:  # torch: loaded only when features are computed, never on a cache hit
    from ..feature_extraction_ai2text import AI2TextFeatureExtractor

__all__ = [
    "PrepareOptions",
    "PrepareResult",
    "ValidationFailed",
    "load_prepared",
    "prepare_dataset",
    "read_manifest",
    "reuse_prepared",
]


@dataclass(frozen=True)
class PrepareResult:
    """What ``prepare_dataset`` produced; ``summary()`` is the table printed when ``progress`` is on."""

    output_dir: Path | None  # None for validate_only
    report_path: Path | None
    total_rows: int
    statistics: dict[str, int | float]  # the stats.json payload
    skipped_by_reason: dict[str, int] = field(default_factory=dict)  # a row with 2 reasons counts twice
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what preparation decided for the user, e.g. a validation split carved from train
    cached: bool = False  # the version already existed with the same inputs and options

    @property
    def counts(self) -> dict[str, int]:
        return {split: int(self.statistics[f"{split}_files"]) for split in SPLITS}

    @property
    def hours(self) -> dict[str, float]:
        return {split: float(self.statistics[f"{split}_hours"]) for split in SPLITS}

    @property
    def speakers(self) -> dict[str, int]:
        return {split: int(self.statistics[f"{split}_speakers"]) for split in SPLITS}

    @property
    def skipped_rows(self) -> int:
        return int(self.statistics["skipped_rows"])

    @property
    def stats_path(self) -> Path | None:
        return self.output_dir / "stats.json" if self.output_dir else None

    @property
    def manifest_path(self) -> Path | None:
        return self.output_dir / "manifest.json" if self.output_dir else None

    def summary(self) -> str:
        kept = sum(self.counts.values())
        lines = []
        if self.cached:
            lines.append(f"Up to date: {self.output_dir} was prepared from the same inputs and options.")
        lines.append(f"Checked {self.total_rows} rows: {kept} kept + {self.skipped_rows} skipped")
        lines.append(f"  {'split':<12}{'files':>8}{'hours':>10}{'speakers':>10}")
        for split in SPLITS:
            lines.append(f"  {split:<12}{self.counts[split]:>8}{self.hours[split]:>10.3f}{self.speakers[split]:>10}")
        if self.skipped_rows:
            where = f" ({self.report_path} has each row's fix)" if self.report_path else ""
            lines.append(f"  skipped rows by reason{where}:")
            for reason, count in sorted(self.skipped_by_reason.items(), key=lambda item: (-item[1], item[0])):
                lines.append(f"    {reason:<22}{count:>6}")
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


class ValidationFailed(ValueError):
    """``strict`` preparation found problems: nothing was written (except the report, when asked)."""

    def __init__(self, result: PrepareResult):
        where = f"; see {result.report_path}" if result.report_path else "; pass --report PATH for each row's fix"
        super().__init__(
            f"{result.skipped_rows} of {result.total_rows} rows have problems, so strict mode wrote no dataset{where}."
        )
        self.result = result


def prepare_dataset(
    options: PrepareOptions | PathLike | Sequence[PathLike] | None = None,
    output_dir: PathLike | None = None,
    /,
    *,
    feature_extractor: AI2TextFeatureExtractor | None = None,
    progress: bool = True,
    **values: Any,
) -> PrepareResult:
    """Validate every input row, featurise the good ones and save a self-describing dataset version.

    ``options`` is a :class:`PrepareOptions`; for short calls, the CSV(s) and the version folder may be given
    instead, with any other option as a keyword: ``prepare_dataset("meta.csv", "data/processed/v1",
    min_duration=1.0)``. The input is one or more metadata CSVs or a Hugging Face dataset folder
    (``hf_dataset``). The version folder is built in a hidden sibling folder and renamed into place at the
    end, so an interrupted run leaves nothing behind. If it exists with the same inputs and options, nothing
    is recomputed (``result.cached``); with others it is refused unless ``overwrite``. ``feature_extractor``
    (default: one built from the options' feature settings) decides the stored features.

    ``strict`` raises ``ValidationFailed`` and writes no dataset when any row has a problem;
    ``validate_only`` writes just the report to ``report_path`` (also a copy target in the other modes).
    """
    options = _as_options(options, output_dir, values)
    if bool(options.csv_paths) == (options.hf_dataset is not None):
        raise ValueError("Give exactly one input: metadata CSV(s) (--csv) or a Hugging Face dataset folder.")
    if options.validate_only and options.report_path is None:
        raise ValueError("validate_only writes only the report: give report_path (--report PATH).")
    if not options.validate_only and options.output_dir is None:
        raise ValueError("Give the dataset version folder to write (--output), or use validate_only.")
    if feature_extractor is None:
        from ..feature_extraction_ai2text import AI2TextFeatureExtractor

        feature_extractor = AI2TextFeatureExtractor(**options.feature_settings())
    elif options.feature_settings():
        raise ValueError("Give the feature settings (n_mels, pitch, ...) or a feature_extractor, not both.")
    checks = options.checks()
    ratios = parse_split_ratios(options.auto_split_ratios) if options.auto_split_ratios is not None else None
    report_path = Path(options.report_path).absolute() if options.report_path is not None else None
    hf_dataset = Path(options.hf_dataset).absolute() if options.hf_dataset is not None else None
    settings = _content_settings(options, ratios)
    source, description = _read_source(options)
    identity = {
        "format_version": FORMAT_VERSION,
        "ai2text_hf_version": __version__,
        "source": description,
        "options": settings,
        "filters": asdict(checks),
        "feature_extractor": feature_extractor.to_dict(),
    }

    if not options.validate_only:
        output_dir = Path(options.output_dir).absolute()
        inputs = [*options.csv_paths, *([hf_dataset] if hf_dataset else [])]
        inputs += [root for root in options.audio_roots if root] or ([source.root] if source else [hf_dataset])
        if is_up_to_date(output_dir, identity, options.overwrite, inputs):
            return _finish(_cached_result(output_dir, report_path), options.strict, progress)
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    else:
        output_dir = None
        workdir = Path(tempfile.mkdtemp(prefix="ai2text-validate-"))
    store = None if options.validate_only else settings["store"]
    try:
        with _progress_bars(progress):
            if source is None:
                source = read_hf_source(
                    hf_dataset,
                    audio_column=options.audio_column,
                    text_column=options.text_column,
                    speaker_column=options.speaker_column,
                    audio_root=options.audio_roots[0],
                    cache_dir=workdir / "hf-cache",
                )
            if not source.rows:
                raise ValueError(f"{hf_dataset} has no rows: nothing to prepare.")
            records = screen_rows(
                source.rows,
                root=source.row_roots or source.root,
                tone_placement=options.tone_placement,
                allow_outside_root=options.allow_outside_root,
                absolute_ok=source.absolute_ok,
                relative_to=source.root,
                extra_columns=source.extra_columns,
                embedded=source.embedded,
                check_splits=ratios is None,
            )
            if ratios:
                warnings, notes = _assign_auto_split(source.rows, records, ratios, options.split_seed), []
            else:
                warnings, notes = [], carve_validation(records, options.validation_from_train, options.split_seed)
            extras = [extra_column_name(name) for name in source.extra_columns]
            processed = _run_checks(
                records,
                source.audio,
                feature_extractor,
                checks,
                store,
                extras,
                workdir,
                options.num_proc,
                options.batch_size,
            )
            table = processed.select_columns(["_reasons", "_fixes", "_digest", "split", *STAT_COLUMNS]).to_dict()
            flag_duplicate_audio(table["_reasons"], table["_fixes"], table["_digest"])
            kept = _kept_indices(table["_reasons"], table["split"])
            result = _result(source.rows, table, kept, warnings, notes, output_dir, report_path)
            entries = _report_entries(source, table["_reasons"], table["_fixes"])
            if report_path is not None:
                write_report(report_path, entries)
            if (options.strict and result.skipped_rows) or options.validate_only:
                return _finish(result, options.strict, progress)
            staged = workdir / "version"
            features = dataset_features(
                feature_extractor.feature_dim, store, extras, sampling_rate=feature_extractor.sampling_rate
            )
            save_rows(processed, kept, features, staged)
        del processed  # release the memory-mapped cache files before they are deleted
        write_report(staged / "report.json", entries)
        write_json(staged / "stats.json", result.statistics)
        run = {
            "num_proc": options.num_proc,
            "batch_size": options.batch_size,
            "request": _request_fingerprint(options.request(), description),
        }
        manifest = _manifest(identity, result, features, source.root, run)
        write_json(staged / "manifest.json", manifest)
        write_dataset_card(staged / "README.md", manifest, features, options)
        publish(staged, output_dir, workdir / "previous")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _finish(result, options.strict, progress)


def reuse_prepared(options: PrepareOptions, *, progress: bool = True) -> PrepareResult | None:
    """The earlier result when ``options.output_dir`` was prepared with these same options from unchanged
    inputs, else None (always None with ``validate_only`` or ``overwrite``).

    The cheap path of an unchanged re-run: ``prepare_dataset``'s own cache check needs the feature extractor's
    settings (hence torch and transformers, seconds of imports); the options and the re-read source
    description (CSV sha256 and audio file fingerprint) do not. On None, call ``prepare_dataset``: it decides.
    """
    if options.validate_only or options.overwrite or options.output_dir is None:
        return None
    output_dir = Path(options.output_dir).absolute()
    manifest_path = output_dir / "manifest.json"
    if not manifest_path.is_file() or not (output_dir / "dataset_dict.json").is_file():
        return None
    recorded = json.loads(manifest_path.read_text(encoding="utf-8")).get("run", {}).get("request")
    if recorded is None or recorded != _request_fingerprint(options.request(), _read_source(options)[1]):
        return None
    report_path = Path(options.report_path).absolute() if options.report_path is not None else None
    return _finish(_cached_result(output_dir, report_path), options.strict, progress)


def _as_options(
    options: PrepareOptions | PathLike | Sequence[PathLike] | None, output_dir: PathLike | None, values: dict
) -> PrepareOptions:
    """``options`` itself (with any keyword changes), or options made from the CSV(s), folder and keywords."""
    if isinstance(options, PrepareOptions):
        changes = {**values, **({"output_dir": output_dir} if output_dir is not None else {})}
        return dataclasses.replace(options, **changes) if changes else options
    return PrepareOptions(csv_path=options, output_dir=output_dir, **values)


def _content_settings(options: PrepareOptions, ratios: Sequence[float] | None) -> dict[str, Any]:
    """The options besides the thresholds and features that decide a version's content (the manifest's
    ``options``)."""
    columns = {"audio": options.audio_column, "text": options.text_column, "speaker": options.speaker_column}
    return {
        "tone_placement": options.tone_placement,
        "allow_outside_root": options.allow_outside_root,
        "auto_split": list(ratios) if ratios else None,
        "split_seed": options.split_seed,
        "validation_from_train": options.validation_from_train if ratios is None else None,
        "store": "audio" if options.on_the_fly else "features",
        "columns": columns if options.hf_dataset is not None else None,
    }


def _read_source(options: PrepareOptions) -> tuple[Source | None, dict]:
    """The CSVs' rows (None for a Hugging Face dataset, read later) and the source's description."""
    if options.hf_dataset is not None:
        root = options.audio_roots[0]
        path = Path(options.hf_dataset).absolute()
        return None, {**describe_hf_source(path), "audio_root": str(root) if root else None}
    parts = [read_csv_source(path, root) for path, root in zip(options.csv_paths, options.audio_roots)]
    if len(parts) == 1:
        return parts[0]
    return combine_sources([part for part, _ in parts]), {"kind": "csvs", "parts": [d for _, d in parts]}


def _request_fingerprint(request: dict, description: dict) -> str:
    return fingerprint(
        {"request": request, "source": description, "ai2text_hf_version": __version__, "format": FORMAT_VERSION}
    )


def _run_checks(
    records: list[dict],
    audio: datasets.Dataset | None,
    feature_extractor: AI2TextFeatureExtractor,
    checks: Checks,
    store: str | None,
    extras: list[str],
    workdir: Path,
    num_proc: int | None,
    batch_size: int,
) -> datasets.Dataset:
    """Audio checks (+ stored column) as one ``Dataset.map`` whose output goes to ``workdir`` (memory-mapped)."""
    output = datasets.Features(
        {**dataset_features(feature_extractor.feature_dim, store, extras), **internal_features()}
    )
    rows = datasets.Dataset.from_list(records, features=datasets.Features({key: output[key] for key in records[0]}))
    if audio is not None:
        rows = datasets.concatenate_datasets([rows, audio], axis=1)
    workers = num_proc if num_proc and num_proc > 1 and len(records) > 1 else None
    return rows.map(
        process_batch,
        batched=True,
        batch_size=batch_size,
        writer_batch_size=batch_size,  # flush to disk every batch: memory stays bounded on any corpus size
        num_proc=workers,
        fn_kwargs={
            "feature_extractor": feature_extractor,
            "checks": checks,
            "store": store,
            "worker_threads": 1 if workers else None,
        },
        remove_columns=[AUDIO_BYTES_COLUMN] if audio is not None else None,
        features=output,
        cache_file_name=str(workdir / "rows.arrow"),
        load_from_cache_file=False,
        desc="Checking audio" + (" + computing features" if store == "features" else ""),
    )


def _kept_indices(reasons: list[list[str]], splits: list[str]) -> dict[str, list[int]]:
    """Row indices per split of the rows without any problem."""
    kept: dict[str, list[int]] = {split: [] for split in SPLITS}
    for index, (codes, split) in enumerate(zip(reasons, splits)):
        if not codes:
            kept[split].append(index)
    return kept


def _manifest(identity: dict, result: PrepareResult, features: datasets.Features, audio_root: Path, run: dict) -> dict:
    """Identity (what decides the content, hashed into ``fingerprint``) plus what a reader needs to know."""
    return {
        **identity,
        "fingerprint": fingerprint(identity),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "normalizer": {"tone_placement": identity["options"]["tone_placement"]},
        "alphabet": list(VIETNAMESE_ALPHABET),
        "columns": list(features),
        "features": features.to_dict(),
        # file_path is relative to this folder (absolute for a file outside it, as the CSV named it).
        "audio_root": str(audio_root),
        "splits": list(SPLITS),
        "counts": {
            **result.counts,
            "rows": result.total_rows,
            "kept": sum(result.counts.values()),
            "skipped": result.skipped_rows,
            "skipped_by_reason": result.skipped_by_reason,
        },
        "warnings": list(result.warnings),
        "notes": list(result.notes),
        "run": run,  # how it was computed; does not change the content
    }


def carve_validation(records: list[dict], fraction: float, seed: int) -> list[str]:
    """Without any validation row, move ``fraction`` of the train rows to validation, whole speakers at a time
    (rows without a speaker id are their own group), chosen by the seeded speaker-disjoint split; the notes
    saying what happened (for the report and the dataset card)."""
    if not fraction or any(record["split"] == "validation" for record in records):
        return []
    train = [record for record in records if record["split"] == "train"]
    groups = [record["speaker_id"] or f"\0row:{record['_path'] or record['id']}" for record in train]
    for record, split in zip(train, auto_split(groups, (1 - fraction, fraction, 0.0), seed)):
        record["split"] = split
    moved = [record for record in train if record["split"] == "validation"]
    switch = f"(--validation-from-train {fraction:g}; 0 turns this off)"
    if not moved:
        return [
            f"No row is in the validation split and {len(train)} train row(s) are too few to carve {fraction:.0%} "
            f"from {switch}: training needs one, so give rows split=validation or use --auto-split."
        ]
    speakers = {record["speaker_id"] for record in moved} - {""}
    whom = f"{len(speakers)} whole speaker(s)" if speakers else "chosen by row: no speaker ids"
    return [f"No row is in the validation split: {len(moved)} train row(s) ({whom}) became it {switch}."]


def _assign_auto_split(rows: list[dict], records: list[dict], ratios: Sequence[float], seed: int) -> list[str]:
    """Set each record's split by the speaker-disjoint auto-split; warn when it replaces given splits."""
    groups = [record["speaker_id"] or f"\0row:{record['_path'] or record['id']}" for record in records]
    for record, split in zip(records, auto_split(groups, ratios, seed)):
        record["split"] = split
    given = sum(1 for row in rows if (row.get("split") or "").strip().lower() not in ("", "train"))
    return [f"--auto-split replaced the split given in {given} row(s)."] if given else []


def _result(
    rows: list[dict],
    table: dict[str, list],
    kept: dict[str, list[int]],
    warnings: list[str],
    notes: list[str],
    output_dir: Path | None,
    report_path: Path | None,
) -> PrepareResult:
    statistics = compute_statistics(
        {split: {key: [table[key][i] for i in rows] for key in STAT_COLUMNS} for split, rows in kept.items()}
    )
    statistics["skipped_rows"] = sum(1 for codes in table["_reasons"] if codes)
    kept_rows = sorted(i for rows in kept.values() for i in rows)
    overlap = speaker_overlap_warning(
        [table["speaker_id"][i] for i in kept_rows], [table["split"][i] for i in kept_rows]
    )
    return PrepareResult(
        output_dir=output_dir,
        report_path=output_dir / "report.json" if output_dir else report_path,
        total_rows=len(rows),
        statistics=statistics,
        skipped_by_reason=dict(Counter(code for codes in table["_reasons"] for code in codes)),
        warnings=tuple(warnings + ([overlap] if overlap else [])),
        notes=tuple(notes),
    )


def _cached_result(output_dir: Path, report_path: Path | None) -> PrepareResult:
    """The result of an earlier run, from its manifest and stats (nothing is read from the data)."""
    manifest = read_manifest(output_dir)
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(output_dir / "report.json", report_path)
    return PrepareResult(
        output_dir=output_dir,
        report_path=output_dir / "report.json",
        total_rows=manifest["counts"]["rows"],
        statistics=json.loads((output_dir / "stats.json").read_text(encoding="utf-8")),
        skipped_by_reason=manifest["counts"]["skipped_by_reason"],
        warnings=tuple(manifest.get("warnings", [])),
        notes=tuple(manifest.get("notes", [])),
        cached=True,
    )


def _finish(result: PrepareResult, strict: bool, progress: bool) -> PrepareResult:
    if progress:
        print(result.summary())
    if strict and result.skipped_rows:
        raise ValidationFailed(result)
    return result


def _report_entries(source: Source, reasons: list[list[str]], fixes: list[list[str]]) -> list[dict]:
    """One entry per input row; ``line`` is the row's line in its CSV (rows of a dataset folder have none), and
    ``csv`` names that CSV when several were combined."""
    lines, several = source.lines, source.files is not None and len(set(source.files)) > 1
    return [
        {
            "row": number,
            **({"csv": source.files[number - 1]} if several else {}),
            **({"line": lines[number - 1]} if lines else {}),
            "file_path": row.get("file_path") or "",
            "status": "skipped" if codes else "kept",
            "reasons": codes,
            "fix": " ".join(sentences),
        }
        for number, (row, codes, sentences) in enumerate(zip(source.rows, reasons, fixes), start=1)
    ]


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
