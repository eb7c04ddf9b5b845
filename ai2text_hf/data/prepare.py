"""Data preparation: a metadata CSV (or local Hugging Face dataset) → a validated, versioned DatasetDict.

Every input row is accounted for: it is kept, or skipped with stable reason codes and the fix
(``report.json``), and the counts add up to the number of rows. Features are computed once here, not on
the fly in training, so every epoch reads memory-mapped arrays instead of decoding and resampling audio
again; ``on_the_fly`` stores 16 kHz audio instead, for waveform augmentation at training time (the
collator then calls ``ai2text_hf.data.audio.featurize_batch``). The folder layout and the rule that
versions are immutable are in ``ai2text_hf.data.versions``; the row checks in ``.validation``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import datasets

from .. import __version__
from ..normalization_vi import VIETNAMESE_ALPHABET
from .sources import Source, describe_hf_source, read_csv_source, read_hf_source
from .splits import auto_split, parse_split_ratios, speaker_overlap_warning
from .stats import STAT_COLUMNS, compute_statistics
from .validation import (
    AUDIO_BYTES_COLUMN,
    INTERNAL_COLUMNS,
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

#: Time reduction of the model's convolutional front end (AI2TextConfig.subsampling_factor default).
DEFAULT_SUBSAMPLING_FACTOR = Checks.subsampling_factor

__all__ = ["PrepareResult", "ValidationFailed", "load_prepared", "prepare_dataset", "read_manifest", "reuse_prepared"]


@dataclass(frozen=True)
class PrepareResult:
    """What ``prepare_dataset`` produced; ``summary()`` is the table printed when ``progress`` is on."""

    output_dir: Path | None  # None for validate_only
    report_path: Path | None
    total_rows: int
    statistics: dict[str, int | float]  # the stats.json payload
    skipped_by_reason: dict[str, int] = field(default_factory=dict)  # a row with 2 reasons counts twice
    warnings: tuple[str, ...] = ()
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
        lines.append(f"  {'split':<8}{'files':>8}{'hours':>10}{'speakers':>10}")
        for split in SPLITS:
            lines.append(f"  {split:<8}{self.counts[split]:>8}{self.hours[split]:>10.3f}{self.speakers[split]:>10}")
        if self.skipped_rows:
            where = f" ({self.report_path} has each row's fix)" if self.report_path else ""
            lines.append(f"  skipped rows by reason{where}:")
            for reason, count in sorted(self.skipped_by_reason.items(), key=lambda item: (-item[1], item[0])):
                lines.append(f"    {reason:<22}{count:>6}")
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
    csv_path: str | os.PathLike | None,
    output_dir: str | os.PathLike | None,
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
    hf_dataset: str | os.PathLike | None = None,
    audio_column: str = "audio",
    text_column: str = "text",
    speaker_column: str | None = None,
    allow_outside_root: bool = False,
    duration_tolerance: float = Checks.duration_tolerance,
    silence_db: float = Checks.silence_db,
    max_clipped_share: float = Checks.max_clipped_share,
    auto_split_ratios: str | Sequence[float] | None = None,
    split_seed: int = 0,
    on_the_fly: bool = False,
    strict: bool = False,
    validate_only: bool = False,
    report_path: str | os.PathLike | None = None,
    request: dict | None = None,
) -> PrepareResult:
    """Validate every input row, featurise the good ones and save a self-describing dataset version.

    The input is ``csv_path`` or, instead, ``hf_dataset`` (a local save_to_disk folder, parquet files or an
    audiofolder, read through ``audio_column``/``text_column``/``speaker_column``). ``output_dir`` is the
    version folder itself: built in a hidden sibling folder and renamed into place at the end, so an
    interrupted run leaves nothing behind. If it exists with the same inputs and options, nothing is
    recomputed (``result.cached``); with others it is refused unless ``overwrite``.

    ``strict`` raises ``ValidationFailed`` and writes no dataset when any row has a problem;
    ``validate_only`` writes just the report to ``report_path`` (also a copy target in the other modes).
    ``auto_split_ratios`` ("0.9,0.05,0.05") replaces the split column by a speaker-disjoint split.
    ``subsampling_factor`` must match the model's: it decides which transcripts are too long for CTC.
    ``request`` (the command's options) is recorded so an identical re-run can be answered by
    ``reuse_prepared`` without computing the identity.
    """
    if (csv_path is None) == (hf_dataset is None):
        raise ValueError("Give exactly one input: a metadata CSV or a Hugging Face dataset folder.")
    if validate_only and report_path is None:
        raise ValueError("validate_only writes only the report: give report_path (--report PATH).")
    if not validate_only and output_dir is None:
        raise ValueError("Give the dataset version folder to write (--output), or use validate_only.")
    if feature_extractor is None:
        from ..feature_extraction_ai2text import AI2TextFeatureExtractor

        feature_extractor = AI2TextFeatureExtractor()
    checks = Checks(
        min_duration=min_duration,
        max_duration=max_duration,
        duration_tolerance=duration_tolerance,
        silence_db=silence_db,
        max_clipped_share=max_clipped_share,
        subsampling_factor=subsampling_factor,
    )
    ratios = parse_split_ratios(auto_split_ratios) if auto_split_ratios is not None else None
    audio_root = Path(audio_root).absolute() if audio_root is not None else None
    report_path = Path(report_path).absolute() if report_path is not None else None
    options = {
        "tone_placement": tone_placement,
        "allow_outside_root": allow_outside_root,
        "auto_split": list(ratios) if ratios else None,
        "split_seed": split_seed,
        "store": "audio" if on_the_fly else "features",
        "columns": {"audio": audio_column, "text": text_column, "speaker": speaker_column} if hf_dataset else None,
    }
    hf_dataset = Path(hf_dataset).absolute() if hf_dataset is not None else None
    source, description = _read_source(csv_path, hf_dataset, audio_root)
    identity = {
        "format_version": FORMAT_VERSION,
        "ai2text_hf_version": __version__,
        "source": description,
        "options": options,
        "filters": asdict(checks),
        "feature_extractor": feature_extractor.to_dict(),
    }

    if not validate_only:
        output_dir = Path(output_dir).absolute()
        inputs = [Path(csv_path).absolute()] if csv_path is not None else [hf_dataset]
        inputs.append(source.root if source is not None else audio_root or hf_dataset)
        if is_up_to_date(output_dir, identity, overwrite, inputs):
            return _finish(_cached_result(output_dir, report_path), strict, progress)
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    else:
        output_dir = None
        workdir = Path(tempfile.mkdtemp(prefix="ai2text-validate-"))
    store = None if validate_only else options["store"]
    try:
        with _progress_bars(progress):
            if source is None:
                source = read_hf_source(
                    hf_dataset,
                    audio_column=audio_column,
                    text_column=text_column,
                    speaker_column=speaker_column,
                    audio_root=audio_root,
                    cache_dir=workdir / "hf-cache",
                )
            if not source.rows:
                raise ValueError(f"{hf_dataset} has no rows: nothing to prepare.")
            records = screen_rows(
                source.rows,
                root=source.root,
                tone_placement=tone_placement,
                allow_outside_root=allow_outside_root,
                extra_columns=source.extra_columns,
                embedded=source.embedded,
                check_splits=ratios is None,
            )
            warnings = _assign_auto_split(source.rows, records, ratios, split_seed) if ratios else []
            extras = [extra_column_name(name) for name in source.extra_columns]
            processed = _run_checks(
                records, source.audio, feature_extractor, checks, store, extras, workdir, num_proc, batch_size
            )
            table = processed.select_columns(["_reasons", "_fixes", "_digest", "split", *STAT_COLUMNS]).to_dict()
            flag_duplicate_audio(table["_reasons"], table["_fixes"], table["_digest"])
            kept = _kept_indices(table["_reasons"], table["split"])
            result = _result(source.rows, table, kept, warnings, output_dir, report_path)
            entries = _report_entries(source.rows, source.lines, table["_reasons"], table["_fixes"])
            if report_path is not None:
                write_report(report_path, entries)
            if (strict and result.skipped_rows) or validate_only:
                return _finish(result, strict, progress)
            staged = workdir / "version"
            save_rows(processed, kept, [c for c in processed.column_names if c not in INTERNAL_COLUMNS], staged)
        del processed  # release the memory-mapped cache files before they are deleted
        write_report(staged / "report.json", entries)
        write_json(staged / "stats.json", result.statistics)
        columns = list(dataset_features(feature_extractor.feature_dim, options["store"], extras))
        run = {
            "num_proc": num_proc,
            "batch_size": batch_size,
            "request": _request_fingerprint(request, description) if request is not None else None,
        }
        write_json(staged / "manifest.json", _manifest(identity, result, columns, run))
        publish(staged, output_dir, workdir / "previous")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _finish(result, strict, progress)


def reuse_prepared(
    output_dir: str | os.PathLike,
    request: dict,
    *,
    csv_path: str | os.PathLike | None = None,
    hf_dataset: str | os.PathLike | None = None,
    audio_root: str | os.PathLike | None = None,
    report_path: str | os.PathLike | None = None,
    strict: bool = False,
    progress: bool = True,
) -> PrepareResult | None:
    """The earlier result when ``output_dir`` was prepared by this same ``request`` from unchanged inputs, else None.

    The cheap path of an unchanged re-run: ``prepare_dataset``'s own cache check needs the feature extractor's
    settings (hence torch and transformers, seconds of imports); the request and the re-read source
    description (CSV sha256 and audio file fingerprint) do not. On None, call ``prepare_dataset``: it decides.
    """
    output_dir = Path(output_dir).absolute()
    manifest_path = output_dir / "manifest.json"
    if not manifest_path.is_file() or not (output_dir / "dataset_dict.json").is_file():
        return None
    recorded = json.loads(manifest_path.read_text(encoding="utf-8")).get("run", {}).get("request")
    if recorded is None:
        return None
    audio_root = Path(audio_root).absolute() if audio_root is not None else None
    hf_dataset = Path(hf_dataset).absolute() if hf_dataset is not None else None
    if recorded != _request_fingerprint(request, _read_source(csv_path, hf_dataset, audio_root)[1]):
        return None
    report_path = Path(report_path).absolute() if report_path is not None else None
    return _finish(_cached_result(output_dir, report_path), strict, progress)


def _read_source(
    csv_path: str | os.PathLike | None, hf_dataset: Path | None, audio_root: Path | None
) -> tuple[Source | None, dict]:
    """The CSV's rows (None for a Hugging Face dataset, read later) and the source's description."""
    if hf_dataset is not None:
        return None, {**describe_hf_source(hf_dataset), "audio_root": str(audio_root) if audio_root else None}
    return read_csv_source(Path(csv_path).absolute(), audio_root)


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


def _manifest(identity: dict, result: PrepareResult, columns: list[str], run: dict) -> dict:
    """Identity (what decides the content, hashed into ``fingerprint``) plus what a reader needs to know."""
    return {
        **identity,
        "fingerprint": fingerprint(identity),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "normalizer": {"tone_placement": identity["options"]["tone_placement"]},
        "alphabet": list(VIETNAMESE_ALPHABET),
        "columns": columns,
        "counts": {
            **result.counts,
            "rows": result.total_rows,
            "kept": sum(result.counts.values()),
            "skipped": result.skipped_rows,
            "skipped_by_reason": result.skipped_by_reason,
        },
        "warnings": list(result.warnings),
        "run": run,  # how it was computed; does not change the content
    }


def _assign_auto_split(rows: list[dict], records: list[dict], ratios: Sequence[float], seed: int) -> list[str]:
    """Set each record's split by the speaker-disjoint auto-split; warn when it replaces given splits."""
    groups = [record["speaker_id"] or f"\0row:{record['file_path'] or record['id']}" for record in records]
    for record, split in zip(records, auto_split(groups, ratios, seed)):
        record["split"] = split
    given = sum(1 for row in rows if (row.get("split") or "").strip().lower() not in ("", "train"))
    return [f"--auto-split replaced the split given in {given} row(s)."] if given else []


def _result(
    rows: list[dict],
    table: dict[str, list],
    kept: dict[str, list[int]],
    warnings: list[str],
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
        cached=True,
    )


def _finish(result: PrepareResult, strict: bool, progress: bool) -> PrepareResult:
    if progress:
        print(result.summary())
    if strict and result.skipped_rows:
        raise ValidationFailed(result)
    return result


def _report_entries(
    rows: list[dict], lines: list[int] | None, reasons: list[list[str]], fixes: list[list[str]]
) -> list[dict]:
    """One entry per input row; ``line`` is the row's line in the CSV (rows of a dataset folder have none)."""
    return [
        {
            "row": number,
            **({"line": lines[number - 1]} if lines else {}),
            "file_path": row.get("file_path") or "",
            "status": "skipped" if codes else "kept",
            "reasons": codes,
            "fix": " ".join(sentences),
        }
        for number, (row, codes, sentences) in enumerate(zip(rows, reasons, fixes), start=1)
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
