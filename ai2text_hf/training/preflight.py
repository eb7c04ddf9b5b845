"""The pre-training checklist, run before the first step so a run fails in seconds, not hours.

Dataset found (and which version), output folder writable, enough free disk for the checkpoints the run
will keep, the device and whether mixed precision applies, and the effective batch size. A problem stops
the run with one sentence that names it and the fix (:class:`PreflightError`).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from pathlib import Path

from ..data.augment import Augmentation
from ..data.augment.channel import INSTALL_HINT, probe_codec
from ..data.sampler import DurationBatchSampler
from .arguments import Hardware, num_processes
from .checkpoints import BYTES_PER_PARAMETER, checkpoint_bytes, earlier_run
from .recipe import Recipe

logger = logging.getLogger("ai2text_hf.training")

DISK_MARGIN = 1.1  # logs, scheduler/RNG states, the tokenizer and the file system's own overhead


class PreflightError(ValueError):
    """A run that cannot succeed; the message says why and how to fix it."""


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(run_dir: Path) -> None:
    """The run folder (or the nearest existing folder above it) accepts new files."""
    parent = _existing_parent(run_dir)
    if not parent.is_dir():
        raise PreflightError(f"Output folder {run_dir} cannot be made: {parent} is a file. Use another --output-dir.")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise PreflightError(
            f"Output folder {run_dir} is not writable ({error.strerror} in {parent}): "
            "pass an --output-dir you can write to, or fix the folder's permissions."
        ) from error


def check_dataset(dataset: Path) -> None:
    """The dataset exists: a prepared folder (its manifest is read when the splits open) or a metadata CSV."""
    if dataset.is_dir() or (dataset.is_file() and dataset.suffix.lower() == ".csv"):
        return
    raise PreflightError(
        f"Dataset {dataset} does not exist: pass --dataset with a folder written by `ai2text prepare` "
        f"(e.g. ai2text prepare --csv metadata.csv --output {dataset}) or a metadata CSV to stream."
    )


def check_paths(dataset: Path, run_dir: Path) -> None:
    """What can fail before anything is loaded or written."""
    check_dataset(dataset)
    check_output_dir(run_dir)


def check_run_folder(run_dir: Path, resume: str | None, overwrite: bool) -> None:
    """A new run never silently replaces an earlier run's model or mixes its checkpoints with the old ones."""
    if resume is not None and overwrite:
        raise PreflightError("--resume continues the run in its folder and --overwrite starts it afresh: pass one.")
    found = earlier_run(run_dir)
    if resume is None and found and not overwrite:
        raise PreflightError(
            f"{run_dir} already holds a run ({', '.join(f'{name}/' for name in found)}). Continue it with "
            "`--resume latest`, train into a new --output-dir, or pass --overwrite to delete that run's model and "
            "checkpoints and start again."
        )


def report_dataset(source: str, manifest: dict | None) -> None:
    """Which dataset version trains (a streamed CSV has none)."""
    if manifest is None:
        logger.info("Preflight: dataset %s, streamed from its metadata CSV (no prepared version).", source)
        return
    counts = manifest.get("counts", {})
    logger.info(
        "Preflight: dataset %s, version %s (prepared %s by ai2text-hf %s; %s train / %s validation / %s test "
        "utterances).",
        source,
        str(manifest.get("fingerprint", "?"))[:12],
        manifest.get("created", "?"),
        manifest.get("ai2text_hf_version", "?"),
        counts.get("train", "?"),
        counts.get("validation", counts.get("val", "?")),  # "val" in folders of format 1
        counts.get("test", "?"),
    )


def required_disk_bytes(recipe: Recipe, num_params: int) -> int:
    """Checkpoints kept at once (the rotation limit, the best one, one more being written, the every-N-epochs ones)
    plus the exported model (and its EMA twin)."""
    limit = recipe.save_total_limit or math.ceil(recipe.num_epochs / max(1, recipe.validate_every))
    kept = max(limit, 2) + 1
    if recipe.save_every:
        kept += int(recipe.num_epochs // recipe.save_every)
    models = 2 if recipe.ema.enabled else 1
    return int(DISK_MARGIN * (kept * checkpoint_bytes(num_params) + models * num_params * BYTES_PER_PARAMETER))


def _gigabytes(size: float) -> str:
    return f"{size / 1e9:.2f} GB"


def check_disk(recipe: Recipe, run_dir: Path, num_params: int) -> None:
    needed = required_disk_bytes(recipe, num_params)
    free = shutil.disk_usage(_existing_parent(run_dir)).free
    if free < needed:
        raise PreflightError(
            f"Not enough free disk for {run_dir}: the run needs about {_gigabytes(needed)} for its checkpoints "
            f"({_gigabytes(checkpoint_bytes(num_params))} each) and model, {_gigabytes(free)} is free; free some "
            "space, lower --save_total_limit or pass an --output-dir on a larger disk."
        )
    logger.info("Preflight: output %s, ~%s of %s free disk needed.", run_dir, _gigabytes(needed), _gigabytes(free))


def check_codecs(augmentation: Augmentation) -> None:
    """Every codec the channel family may draw runs here (a 0.1 s round trip each): one this machine lacks stops
    the run now, not mid-epoch."""
    if not (augmentation.enabled and augmentation.channel_prob > 0):
        return
    failures = {name: why for name in augmentation.codecs if (why := probe_codec(name, augmentation))}
    if failures:
        fixes = sorted({INSTALL_HINT[name] for name in failures if name in INSTALL_HINT})
        raise PreflightError(
            f"augmentation.codecs lists {', '.join(failures)}, which this machine cannot run "
            f"({'; '.join(f'{name}: {why}' for name, why in failures.items())}). Fix: "
            f"{' and '.join(fixes) + ', or ' if fixes else ''}remove {'it' if len(failures) == 1 else 'them'} from "
            "augmentation.codecs."
        )
    logger.info("Preflight: augmentation codecs %s all run here.", ", ".join(augmentation.codecs))


def report_device(hardware: Hardware) -> None:
    precision = {"no": "off (float32)", "fp16": "fp16", "bf16": "bf16"}.get(hardware.precision, hardware.precision)
    logger.info("Preflight: device %s, mixed precision %s.", hardware.device.upper(), precision)
    for note in hardware.notes:
        logger.warning("Preflight: %s", note)


def report_batch(recipe: Recipe, sampler: DurationBatchSampler | None, num_processes: int) -> float:
    """Logs and returns the effective batch: seconds of audio (at most) per optimizer step."""
    per_step = recipe.max_batch_seconds * num_processes * recipe.grad_accum_steps
    batches = ""
    if sampler is not None:
        count = len(sampler.global_batches())  # over all processes
        batches = (
            f"; batches hold {float(sampler.durations.sum()) / max(1, count):.0f} s of speech on average, "
            f"{count} batches per epoch, padding share {100 * sampler.padding_share():.1f}%"
        )
    logger.info(
        "Preflight: effective batch up to %.0f s of audio per optimizer step (%.0f s per batch x %d process%s x %d "
        "accumulation)%s.",
        per_step,
        recipe.max_batch_seconds,
        num_processes,
        "" if num_processes == 1 else "es",
        recipe.grad_accum_steps,
        batches,
    )
    return per_step


def run_preflight(
    recipe: Recipe,
    run_dir: Path,
    source: str,
    manifest: dict | None,
    num_params: int,
    hardware: Hardware,
    sampler: DurationBatchSampler | None,
) -> None:
    """The checklist once data, model and arguments exist (paths were checked by :func:`check_paths`)."""
    check_codecs(recipe.augmentation)
    report_dataset(source, manifest)
    check_disk(recipe, run_dir, num_params)
    report_device(hardware)
    report_batch(recipe, sampler, num_processes())
