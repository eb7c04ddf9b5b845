"""Guard rails: the training failures docs/troubleshooting.md lists, caught as they happen
and reported with the fix.

- infinite or NaN per-utterance CTC losses, named by utterance id (seen before ``zero_infinity`` would
  hide them: an infinite loss is zeroed for the update, but reported);
- running out of memory, re-raised with the recipe keys that lower memory use;
- predictions that stay all blank after the first evaluations (the classic "WER stays 1.0");
- validation loss rising while training loss falls (overfitting).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from ..modeling_ai2text import mix_ctc_losses
from .base import RecipeTrainer

logger = logging.getLogger("ai2text_hf.training")

#: Evaluations after which all-blank predictions are no longer the normal start of CTC training.
BLANK_GRACE_EVALUATIONS = 2
#: Consecutive evaluations of rising val loss and falling train loss before overfitting is flagged.
OVERFIT_EVALUATIONS = 2


def utterance_ctc_losses(
    logits: torch.Tensor, out_lengths: torch.Tensor, labels: torch.Tensor, blank: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-utterance CTC losses (summed over each transcript), with impossible alignments zeroed.

    Returns ``(losses, target_lengths, raw)``: ``losses`` is what to train on (``inf`` → 0, like
    ``zero_infinity``, so the update stays finite), ``raw`` the detached values before zeroing, for the guard.
    The zeroing costs a second CTC pass, and only in a batch that needs it.
    """
    mask = labels >= 0
    target_lengths = mask.sum(-1)
    targets = labels.masked_select(mask)
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
    with torch.backends.cudnn.flags(enabled=False):
        losses = F.ctc_loss(log_probs, targets, out_lengths, target_lengths, blank, reduction="none")
        raw = losses.detach()
        if not torch.isfinite(raw).all():
            # A masked inf still sends NaN gradients through the CTC backward; zero_infinity does not.
            losses = F.ctc_loss(
                log_probs, targets, out_lengths, target_lengths, blank, reduction="none", zero_infinity=True
            )
    return losses, target_lengths, raw


class NonFiniteLossReport:
    """Names the utterances whose CTC loss is infinite or NaN, once per utterance, with the fix."""

    def __init__(self) -> None:
        self.reported: set[str] = set()

    def check(self, raw: torch.Tensor, ids: Sequence[str] | None, step: int) -> None:
        bad = (~torch.isfinite(raw)).nonzero().flatten().tolist()
        if not bad:
            return
        names = [str(ids[i]) if ids is not None else f"batch row {i}" for i in bad]
        infinite = [n for n, i in zip(names, bad) if math.isinf(raw[i]) and n not in self.reported]
        nan = [n for n, i in zip(names, bad) if math.isnan(raw[i]) and n not in self.reported]
        self.reported.update(infinite + nan)
        if infinite:
            logger.warning(
                "Step %d: CTC loss is infinite for utterance(s) %s: the transcript needs more output frames than "
                "the audio gives (a transcript too long for its audio, or the wrong audio file). These utterances "
                "are left out of the update. Fix: check those rows of the metadata CSV (`ai2text doctor` ranks "
                "mismatched rows), or drop them and prepare the data again.",
                step,
                ", ".join(infinite),
            )
        if nan:
            logger.warning(
                "Step %d: CTC loss is NaN for utterance(s) %s: the model's outputs are no longer numbers. Fix: lower "
                "learning_rate, keep grad_clip (e.g. 1.0), lengthen warm-up, or set amp_dtype: bf16 / use_amp: false "
                "if fp16 overflows; check those rows' audio for silence or corruption.",
                step,
                ", ".join(nan),
            )


class GuardedCTCLossMixin(RecipeTrainer):
    """Mixed into the trainer: the CTC loss per utterance (checked, then normalised), and OOM advice.

    Loss normalisation: the summed per-utterance CTC losses of a micro-batch are divided by the number of
    label characters in the whole optimizer step, over all processes (transformers' ``num_items_in_batch``,
    gathered across processes), and scaled by the process count that DDP's gradient averaging divides by.
    Every character of a step then weighs the same, however the step's utterances are split into
    micro-batches and processes — so N processes × accumulation A train exactly like 1 process × N·A even
    with dynamic batches of unequal sizes. (A mean per micro-batch would weigh an utterance by its batch size.)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_report = NonFiniteLossReport()
        # Our compute_loss normalises by num_items_in_batch itself: have the Trainer count and gather it, and not
        # divide by the accumulation steps again.
        self.model_accepts_loss_kwargs = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        ids, labels = inputs.pop("id", None), inputs.pop("labels")
        outputs = model(**inputs)
        unwrapped = self.accelerator.unwrap_model(model)
        out_lengths = unwrapped._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1))
        blank = unwrapped.config.pad_token_id
        losses, target_lengths, raw = utterance_ctc_losses(outputs.logits, out_lengths, labels, blank)
        intermediate = getattr(outputs, "intermediate_logits", None) or ()
        if intermediate:
            losses = mix_ctc_losses(
                losses,
                [utterance_ctc_losses(logits, out_lengths, labels, blank)[0] for logits in intermediate],
                unwrapped.config.interctc_weight,
            )
        if model.training:
            self.loss_report.check(raw, ids, self.state.global_step)
        if num_items_in_batch is None:
            loss = losses.sum() / target_lengths.sum().clamp(min=1)
        else:
            loss = losses.sum() / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        try:
            return super().training_step(model, inputs, num_items_in_batch)
        except RuntimeError as error:  # torch.OutOfMemoryError is one
            if not is_out_of_memory(error):
                raise
            advice = OOM_ADVICE.format(
                where=f" at step {self.state.global_step}",
                max_batch_seconds=self.recipe.max_batch_seconds,
                grad_accum_steps=self.args.gradient_accumulation_steps,
            )
            logger.error(advice)
            raise RuntimeError(advice) from error


OOM_ADVICE = (
    "Out of memory{where}. Lower memory use with one of these recipe keys: max_batch_seconds (less audio per "
    "batch; currently {max_batch_seconds:g}) together with a higher grad_accum_steps (currently {grad_accum_steps}) "
    "to keep the effective batch; use_amp: true on a GPU (half-precision activations); or a smaller model "
    "(d_model, num_encoder_layers, d_ff)."
)


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA/MPS raise ``torch.OutOfMemoryError``; the CPU allocator raises a plain ``RuntimeError``."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    message = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in message or "out of memory" in message)


class BlankPredictionGuard(TrainerCallback):
    """Flags evaluations where (nearly) every hypothesis is empty once the first evaluations are past.

    A CTC model first learns to emit only blanks; one that never leaves that state after a couple of epochs
    has a problem in its set-up, not in its patience. Needs ``eval_empty_share`` from ``compute_metrics``.
    """

    def __init__(self, grace: int = BLANK_GRACE_EVALUATIONS, threshold: float = 0.99):
        self.grace = grace
        self.threshold = threshold
        self.evaluations = 0
        self.warned = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        share = (metrics or {}).get("eval_empty_share")
        if share is None:
            return
        self.evaluations += 1
        if self.evaluations > self.grace and share >= self.threshold and not self.warned:
            self.warned = True
            logger.warning(
                "Predictions are all blank after %d evaluations (%.0f%% empty hypotheses, WER stays 1.0). Likely "
                "causes: learning_rate too high (the model collapsed to blanks; lower it) or too low; too few steps "
                "for the warm-up (lower warmup_steps/warmup_epochs); transcripts that do not match the audio "
                "(`ai2text doctor`); features that differ from the dataset's (n_mels, hop_length); a vocabulary "
                "missing most characters of the transcripts (vocab: alphabet).",
                self.evaluations,
                100 * share,
            )


class OverfittingGuard(TrainerCallback):
    """Flags validation loss rising while the training loss falls, ``patience`` evaluations in a row."""

    def __init__(self, patience: int = OVERFIT_EVALUATIONS):
        self.patience = patience
        self.history: list[tuple[float, float]] = []  # (train loss, val loss) per evaluation
        self.warned = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        val = (metrics or {}).get("eval_loss")
        train = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None)
        if val is None or train is None:
            return
        self.history.append((float(train), float(val)))
        recent = self.history[-(self.patience + 1) :]
        if len(recent) <= self.patience or self.warned:
            return
        pairs = list(zip(recent, recent[1:]))
        if all(b[1] > a[1] and b[0] < a[0] for a, b in pairs):
            self.warned = True
            logger.warning(
                "Overfitting: val loss rose from %.3f to %.3f over the last %d evaluations while train loss fell "
                "from %.3f to %.3f. Fix: more data or augmentation (augmentation.enabled, spec_augment), more "
                "dropout, weight_decay, a smaller model, or early_stopping.enabled (the best model by %s is kept "
                "either way).",
                recent[0][1],
                recent[-1][1],
                self.patience,
                recent[0][0],
                recent[-1][0],
                args.metric_for_best_model,
            )
