"""Checkpoints: atomic saves, what is kept, when to evaluate and save, and where a resumed run continues.

- Each checkpoint is written into ``checkpoints/_staging/checkpoint-N`` and renamed into place once
  complete, so a run killed mid-save leaves no ``checkpoint-N`` behind that ``--resume latest`` could pick.
  (transformers 5 writes ``checkpoint-N`` in place, and its ``get_last_checkpoint`` takes any folder of that
  name, finished or not.) The staging folder goes once empty; the next run removes a killed run's leftovers.
- Rotation keeps at most ``save_total_limit`` checkpoints, never deleting the newest (to resume), the best
  or the ``save_every`` ones.
- ``validate_every`` / ``save_every`` thin out the Trainer's per-epoch evaluations and saves; the last epoch
  always evaluates and saves.
- ``ai2text_state.json`` in each checkpoint records the sampler position (epoch, batches done, a digest of
  the epoch's batches): transformers' own resume then skips exactly those batches at the sampler level
  (accelerate's ``SkipBatchSampler``: indices only, no data loaded — the replay of HF issue #11284 is gone),
  and the digest proves that the rebuilt epoch is the one the checkpoint was cut from.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .base import RecipeTrainer

logger = logging.getLogger("ai2text_hf.training")

#: AdamW keeps two float32 states per parameter (exp_avg, exp_avg_sq) next to the float32 weights.
OPTIMIZER_STATES = 2
BYTES_PER_PARAMETER = 4
#: How a write that ran out of space reads: OSError's text, safetensors' (Rust's io::ErrorKind) and quotas.
DISK_FULL_SIGNS = ("No space left", "StorageFull", "Disk quota exceeded")
#: torch's zip writer reports a short write without its errno ("[enforce fail at inline_container.cc:…]").
TORCH_WRITE_FAILURE = "inline_container.cc"
# "_" first: the Trainer's Hub pushes of the checkpoints folder skip "_*", so a half-written checkpoint never uploads.
STAGING = "_staging"
STATE_NAME = "ai2text_state.json"
TRAINER_STATE_NAME = "trainer_state.json"


class DiskFullError(OSError):
    """A checkpoint or model could not be written for lack of space; the message says what is intact."""


def checkpoint_bytes(num_params: int) -> int:
    """One Trainer checkpoint: float32 weights plus AdamW's two states."""
    return num_params * BYTES_PER_PARAMETER * (1 + OPTIMIZER_STATES)


def is_disk_full(error: BaseException, folder: Path, needed: int) -> bool:
    """Whether ``error`` (or an error it came from) is a write that ran out of space in ``folder``."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(sign in str(cause) for sign in DISK_FULL_SIGNS):
            return True
        cause = cause.__cause__ or cause.__context__
    return TORCH_WRITE_FAILURE in str(error) and _free_bytes(folder) < needed


def _free_bytes(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


@contextlib.contextmanager
def explain_disk_full(folder: Path, what: str, checkpoints_dir: Path, needed: int, partial: Path | None = None):
    """Turn a full disk while writing ``what`` into :class:`DiskFullError`: where, and which checkpoint is intact.

    ``partial`` (a staged checkpoint) is removed first: it is incomplete, and the space it took is the user's.
    """
    try:
        yield
    except Exception as error:
        if not is_disk_full(error, folder, needed):
            raise
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        found = complete_checkpoints(checkpoints_dir)
        intact = (
            f"The last complete checkpoint, {found[-1]}, is intact: free some space (or move the run folder to a "
            "larger disk) and continue with the same command plus `--resume latest`."
            if found
            else "No checkpoint was complete yet: free some space and start the run again."
        )
        raise DiskFullError(
            errno.ENOSPC,
            f"The disk holding {folder} is full ({_free_bytes(folder) / 1e6:.0f} MB free) while writing {what}. "
            + intact,
        ) from error


def ordinary_file_modes(folder: str | Path) -> None:
    """Give the weight files of a saved folder the mode any other file gets (``0o666`` less the umask).

    safetensors >= 0.8 writes through a temporary file created ``0o600`` and renames it into place
    (safetensors issue #782), so a model trained by one user was unreadable to a server running as another.
    """
    umask = os.umask(0o022)
    os.umask(umask)
    for path in Path(folder).glob("*.safetensors"):
        path.chmod(0o666 & ~umask)


def _step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def complete_checkpoints(folder: str | Path) -> list[Path]:
    """Finished checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [
        p
        for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if p.name.rsplit("-", 1)[1].isdigit() and (p / TRAINER_STATE_NAME).is_file()
    ]
    return sorted(found, key=_step)


def resolve_resume(value: str | None, checkpoints_dir: str | Path) -> str | None:
    """``--resume``: ``latest`` (the newest complete checkpoint of the run) or a checkpoint folder."""
    if value is None:
        return None
    if value == "latest":
        found = complete_checkpoints(checkpoints_dir)
        if not found:
            raise ValueError(f"--resume latest: no complete checkpoint in {checkpoints_dir} to resume from.")
        return str(found[-1])
    path = Path(value)
    if not (path / TRAINER_STATE_NAME).is_file():
        raise ValueError(
            f"--resume {value}: not a complete checkpoint folder (no {TRAINER_STATE_NAME}). "
            "Pass a runs/<name>/checkpoints/checkpoint-N folder, or 'latest'."
        )
    return str(path)


def read_state(checkpoint: str | Path) -> dict:
    path = Path(checkpoint) / STATE_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def rotate(folder: str | Path, limit: int | None, best: str | None) -> list[Path]:
    """Delete the oldest checkpoints beyond ``limit``; the newest, the best and ``save_every`` ones stay."""
    if not limit or limit <= 0:
        return []
    found = [p for p in complete_checkpoints(folder) if not read_state(p).get("keep")]
    protected = {found[-1]} if found else set()
    if best is not None:
        protected |= {p for p in found if p.resolve() == Path(best).resolve()}
    deleted = []
    for path in found:
        if len(found) - len(deleted) <= max(limit, len(protected)):
            break
        if path not in protected:
            shutil.rmtree(path, ignore_errors=True)
            deleted.append(path)
    return deleted


def _epoch_end(epoch: float) -> int | None:
    """The epoch number when ``epoch`` (the Trainer's float count) falls on an epoch's end, else None."""
    return round(epoch) if abs(epoch - round(epoch)) < 1e-6 else None


class CheckpointPlan(TrainerCallback):
    """Evaluate every ``validate_every`` epochs, also save every ``save_every`` epochs; always at the end.

    Runs after transformers' flow callback, which asks for an evaluation and a save at every epoch end.
    """

    def __init__(self, validate_every: int = 1, save_every: int | None = None):
        self.validate_every = max(1, validate_every)
        self.save_every = save_every

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = _epoch_end(state.epoch)
        if epoch is None:
            return control
        last = control.should_training_stop or epoch >= args.num_train_epochs or state.global_step >= state.max_steps
        evaluate = last or epoch % self.validate_every == 0
        if args.eval_strategy == "epoch":
            control.should_evaluate = evaluate
            # The loss and learning rate of the steps since the last log, so each summary shows them.
            control.should_log = control.should_log or evaluate
        if args.save_strategy == "epoch":
            control.should_save = evaluate or bool(self.save_every and epoch % self.save_every == 0)
        return control


class AtomicCheckpointsMixin(RecipeTrainer):
    """Mixed into the trainer: staged, renamed checkpoints with the sampler position, and our rotation.

    The Trainer's own rotation is off (``save_total_limit=None`` in its arguments); the recipe's
    ``save_total_limit`` and ``save_every`` decide here. Subclasses add files with ``write_checkpoint_extras``.
    """

    _staging = False

    def _get_output_dir(self, trial) -> str:
        root = super()._get_output_dir(trial)
        return os.path.join(root, STAGING) if self._staging else root

    def write_checkpoint_extras(self, folder: Path) -> None:
        """Extra state written into each checkpoint before it is renamed into place."""

    def _save_checkpoint(self, model, trial) -> None:
        root = Path(self._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged, final = root / STAGING / name, root / name
        if self.args.should_save:
            shutil.rmtree(staged, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        needed = checkpoint_bytes(sum(p.numel() for p in self.model.parameters()))
        with explain_disk_full(staged, f"checkpoint {name}", root, needed, partial=staged):
            self._staging = True
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._staging = False
            best = self.state.best_model_checkpoint
            if best is not None and Path(best).parent.name == STAGING:
                self.state.best_model_checkpoint = str(root / Path(best).name)
            self.write_checkpoint_extras(staged)
            self.accelerator.wait_for_everyone()  # every process has written its RNG state
            if self.args.should_save:
                self._write_state(staged)
                self.state.save_to_json(str(staged / TRAINER_STATE_NAME))  # with the final best-checkpoint path
        if self.args.should_save:
            if final.exists():
                shutil.rmtree(final)
            os.replace(staged, final)
            with contextlib.suppress(OSError):  # only when empty: a killed run's leftovers stay for the next run
                staged.parent.rmdir()
            if self.state.best_model_checkpoint == str(final):
                logger.info("Saved best model to: %s", final)
            limit = self.recipe.save_total_limit
            for path in rotate(root, limit, self.state.best_model_checkpoint):
                logger.info("Deleted checkpoint %s (save_total_limit=%s)", path, limit)
        self.accelerator.wait_for_everyone()

    def _write_state(self, folder: Path) -> None:
        epoch, save_every = _epoch_end(self.state.epoch), self.recipe.save_every
        state = {"global_step": self.state.global_step, "keep": bool(save_every and epoch and epoch % save_every == 0)}
        if self.train_sampler is not None:
            accumulation = self.args.gradient_accumulation_steps
            state["sampler"] = sampler_position(self.train_sampler, self.state.global_step, accumulation)
        (folder / STATE_NAME).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def sampler_position(sampler, global_step: int, accumulation: int) -> dict:
    """Where ``global_step`` optimizer steps leave the sampler: the Trainer's own arithmetic, which is exact
    because every epoch has the same number of batches."""
    steps_per_epoch = math.ceil(len(sampler) / accumulation)
    epoch, steps = divmod(global_step, steps_per_epoch)
    return {
        "epoch": epoch,
        "global_batches_done": min(steps * accumulation, len(sampler)) * sampler.num_replicas,
        "global_batches": len(sampler) * sampler.num_replicas,
        "fingerprint": sampler.fingerprint(epoch),
        "seed": sampler.seed,
    }


def check_resume_position(checkpoint: str, sampler, accumulation: int) -> dict | None:
    """Refuse a resume that would not continue at the checkpoint's batch; return the recorded position."""
    recorded = read_state(checkpoint).get("sampler")
    if recorded is None:
        return None
    global_step = read_state(checkpoint)["global_step"]
    here = sampler_position(sampler, global_step, accumulation)
    if here != recorded:
        raise ValueError(
            f"{checkpoint} was cut at epoch {recorded['epoch']}, batch {recorded['global_batches_done']} of "
            f"{recorded['global_batches']}, but this run would resume at epoch {here['epoch']}, batch "
            f"{here['global_batches_done']} of {here['global_batches']}"
            + (" with another batch order" if here["fingerprint"] != recorded["fingerprint"] else "")
            + ": the dataset, seed, max_batch_seconds, batch_size or grad_accum_steps × processes changed. Resume "
            "with the run's recipe.yaml, or start a new run from the checkpoint's weights (init_from)."
        )
    logger.info(
        "Resuming at epoch %d, batch %d of %d (sampler position from %s).",
        recorded["epoch"],
        recorded["global_batches_done"],
        recorded["global_batches"],
        checkpoint,
    )
    return recorded


#: What a run writes into its folder that a new run would replace or mix with (``--overwrite`` clears them).
RUN_OUTPUTS = ("model", "model-ema", "checkpoints")


def earlier_run(run_dir: Path) -> list[str]:
    """The outputs of an earlier run in ``run_dir``: the names of :data:`RUN_OUTPUTS` that hold anything."""
    return [name for name in RUN_OUTPUTS if (run_dir / name).is_dir() and any((run_dir / name).iterdir())]


def clear_earlier_run(run_dir: Path) -> None:
    """``--overwrite``: the earlier run's model and checkpoints go, so no later ``--resume latest`` mixes runs."""
    for name in earlier_run(run_dir):
        logger.info("--overwrite: deleting the earlier run's %s", run_dir / name)
        shutil.rmtree(run_dir / name)


def remove_staging(checkpoints_dir: str | Path) -> None:
    """Half-written checkpoints of a killed run."""
    staging = Path(checkpoints_dir) / STAGING
    if staging.is_dir():
        logger.info("Removing unfinished checkpoints of an interrupted run: %s", staging)
        shutil.rmtree(staging, ignore_errors=True)
