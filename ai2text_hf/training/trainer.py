"""Training: a prepared dataset and a recipe in, a complete Hugging Face model folder out.

Built on ``transformers.Trainer``; what is ours is the duration-bucketed batching, CTC-aware
evaluation (greedy decoding of valid frames only), the wall-clock budget and the run-folder layout:

    runs/<name>/model/         best checkpoint by val CER, a complete HF folder (pipeline() loads it)
    runs/<name>/checkpoints/   Trainer checkpoints, for --resume
    runs/<name>/recipe.yaml    the resolved recipe
    runs/<name>/hyperparameters.json  device, precision, warmup steps... and every TrainingArguments value
    runs/<name>/logs/          training.log and TensorBoard events
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.data_loader import DataLoaderShard
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from transformers import (
    EarlyStoppingCallback,
    PreTrainedModel,
    ProgressCallback,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.integrations import TensorBoardCallback

from ..data.sampler import DurationBatchSampler
from ..data.streaming import BucketedStream
from ..hub import CompleteHubPushCallback
from ..metrics import error_rates
from ..processing_ai2text import AI2TextProcessor
from ..tokenization_ai2text import AI2TextTokenizer
from .arguments import (
    optimizer_steps_per_epoch,
    process_rank,
    recipe_arguments,
    resolve_hardware,
    warmup_steps,
)
from .budget import BudgetProgress, WallClockLimit, log_run_length
from .checkpoints import (
    BYTES_PER_PARAMETER,
    CheckpointPlan,
    check_resume_position,
    clear_earlier_run,
    explain_disk_full,
    ordinary_file_modes,
    remove_staging,
    resolve_resume,
)
from .ema import EmaEvaluationMixin
from .guards import BlankPredictionGuard, GuardedCTCLossMixin, OverfittingGuard
from .initial_model import initial_model
from .learning_rates import learning_rate_scales, regroup
from .lora import is_lora
from .preflight import check_paths, check_run_folder, run_preflight
from .recipe import Recipe, save_recipe
from .schedules import CUSTOM_SCHEDULES, create_custom_scheduler, trainer_scheduler_type
from .tracking import HyperparametersToTensorBoard, report_to, save_hyperparameters
from .training_data import CollatorEpoch, model_inputs, open_splits, train_sampler

logger = logging.getLogger("ai2text_hf.training")


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path
    best_metrics: dict[str, float]
    train_seconds: float


class CTCTrainer(EmaEvaluationMixin, GuardedCTCLossMixin):
    """``Trainer`` with duration-bucketed batches and greedy CTC decoding for evaluation; per-utterance CTC
    losses with guard rails (guards.py), atomic checkpoints (checkpoints.py) and EMA weights (ema.py)."""

    def __init__(self, *args, resolved: dict | None = None, eval_data_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.resolved = resolved or {}  # what the recipe resolved to on this machine (device, precision, ...)
        # Evaluation never augments: the on-the-fly path gives it a collator without an augmenter.
        self.eval_data_collator = eval_data_collator or self.data_collator

    def _loader(self, dataset, sampler: DurationBatchSampler | None, collator) -> DataLoader:
        """Keeps the columns the collator reads (``audio`` is no model argument, yet the collator needs it)."""
        if sampler is None:  # a stream: BucketedStream packs rows by duration and yields whole batches
            stream = dataset.select_columns([*collator.columns, "duration"])
            if self.args.world_size > 1:  # each process reads its own shards of the stream
                stream = split_dataset_by_node(stream, rank=self.args.process_index, world_size=self.args.world_size)
            dataset = BucketedStream(
                stream,
                self.recipe.max_batch_seconds,
                self.recipe.batch_size,
                self.recipe.stream_buffer_size,
                seed=self.args.seed,
            )
        else:
            dataset = dataset.select_columns(list(collator.columns))
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            batch_size=None if sampler is None else 1,
            collate_fn=collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        if (sampler.num_replicas if sampler is not None else self.args.world_size) > 1:
            # The sampler (or the stream split) already gives this process its share of the global batches:
            # accelerate must not shard again. DataLoaderShard (unsharded) still forwards set_epoch and places
            # batches on the device.
            return DataLoaderShard(
                dataset,
                device=self.args.device,
                batch_sampler=sampler,
                batch_size=None if sampler is None else 1,
                collate_fn=collator,
                num_workers=loader.num_workers,
                pin_memory=loader.pin_memory,
            )
        return self.accelerator.prepare(loader)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Every model folder the Trainer writes (checkpoints, ``model/``) with ordinary file modes."""
        super()._save(output_dir, state_dict)
        ordinary_file_modes(output_dir or self.args.output_dir)

    def record_run(self, run_dir: Path) -> None:
        """The run's recipe and resolved hyperparameters, written once the run really starts."""
        save_recipe(self.recipe, run_dir / "recipe.yaml")
        save_hyperparameters(run_dir / "hyperparameters.json", self.resolved, self.args)

    def get_train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, self.train_sampler, self.data_collator)

    def get_eval_dataloader(self, eval_dataset=None) -> DataLoader:
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        sampler = DurationBatchSampler(
            list(dataset["duration"]),
            max_batch_seconds=max(self.recipe.eval_batch_seconds, max(dataset["duration"])),
            shuffle=False,
        )
        return self._loader(dataset, sampler, self.eval_data_collator)

    def get_test_dataloader(self, test_dataset) -> DataLoader:
        """``predict`` batches like evaluation (the Trainer's own loader would drop the ``audio`` column)."""
        return self.get_eval_dataloader(test_dataset)

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, its groups split by the recipe's per-group learning rates (learning_rates.py)."""
        optimizer = super().create_optimizer(model)
        scales = learning_rate_scales(self.recipe, model or self.model)
        if scales:
            regroup(optimizer, scales)
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """OneCycle and Noam (``lr_scheduler`` in the recipe) are ours; every other name is transformers'."""
        if self.lr_scheduler is None and self.recipe.lr_scheduler in CUSTOM_SCHEDULES:
            self.lr_scheduler = create_custom_scheduler(
                self.recipe.lr_scheduler,
                optimizer or self.optimizer,
                num_training_steps,
                self.args.get_warmup_steps(num_training_steps),
            )
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Return greedy token ids instead of logits, with padded frames set to blank.

        Argmax here keeps evaluation memory small, and blanking the frames past each utterance's end
        stops padding from turning into phantom characters.
        """
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        if logits is None:
            return loss, logits, labels
        unwrapped = self.accelerator.unwrap_model(model)
        # attention_mask counts the model's input units (feature frames for ours, samples for Wav2Vec2), which
        # is what each model's _get_feat_extract_output_lengths takes.
        lengths = unwrapped._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1))
        ids = logits.argmax(-1)
        frames = torch.arange(ids.shape[1], device=ids.device)[None, :]
        ids = ids.masked_fill(frames >= lengths[:, None], unwrapped.config.pad_token_id)
        return loss, ids, labels


class EpochSummary(TrainerCallback):
    """Prints the per-evaluation summary block and tracks the best checkpoint."""

    def __init__(self, model_dir: Path, metric: str):
        self.model_dir = model_dir
        self.metric = metric
        self.epoch_start = time.monotonic()
        self.best: float | None = None
        self.best_metrics: dict[str, float] = {}
        self.last_train_loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        """A resumed run's best so far is in the checkpoint's log history."""
        key = f"eval_{self.metric}"
        for entry in state.log_history:
            if key in entry and (self.best is None or entry[key] < self.best):
                self.best = entry[key]
                self.best_metrics = {
                    k.removeprefix("eval_"): float(v) for k, v in entry.items() if k.startswith("eval_")
                }

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch_start = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_train_loss = float(logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        value = metrics.get(f"eval_{self.metric}")
        improved = value is not None and (self.best is None or value < self.best)
        if improved:
            self.best = value
            self.best_metrics = {k.removeprefix("eval_"): float(v) for k, v in metrics.items()}
        ema = f"├── Val CER (EMA weights): {100 * metrics['eval_ema_cer']:.1f}%" if "eval_ema_cer" in metrics else None
        lr = next((h["learning_rate"] for h in reversed(state.log_history) if "learning_rate" in h), float("nan"))
        elapsed = time.monotonic() - self.epoch_start
        train_loss = f"{self.last_train_loss:.3f}" if self.last_train_loss is not None else "n/a"
        lines = [
            f"Epoch {state.epoch:.2f}/{args.num_train_epochs:g} Summary:",
            f"├── Train Loss: {train_loss}",
            f"├── Val Loss: {metrics.get('eval_loss', float('nan')):.3f}",
            f"├── Val WER: {100 * metrics.get('eval_wer', float('nan')):.1f}%",
            f"├── Val CER: {100 * metrics.get('eval_cer', float('nan')):.1f}%",
            *([ema] if ema else []),
            f"├── Learning Rate: {lr:.2e}",
            f"└── Time: {int(elapsed // 60)}m {int(elapsed % 60)}s",
        ]
        if improved:
            lines.append(f"New best val {self.metric.upper()} ({100 * value:.2f}%): will be saved to {self.model_dir}")
        logger.info("\n".join(lines))


def _setup_logging(log_dir: Path) -> logging.Handler:
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_dir / "training.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("ai2text_hf")
    # Under torchrun every process runs this: only the main one reports progress, the others only problems.
    root.setLevel(logging.INFO if process_rank() == 0 else logging.WARNING)
    root.addHandler(handler)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers):
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(console)
    logging.getLogger("transformers").addHandler(handler)
    return handler


def build_tokenizer(recipe: Recipe, train_texts: list[str]) -> AI2TextTokenizer:
    """The fixed Vietnamese alphabet by default (every model shares it, so fine-tuning across
    datasets needs no head surgery); a vocabulary built from the training texts on request."""
    if recipe.vocab == "data":
        return AI2TextTokenizer.from_texts(list(train_texts), tone_placement=recipe.tone_placement)
    return AI2TextTokenizer(tone_placement=recipe.tone_placement)


def _compute_metrics_fn(tokenizer: AI2TextTokenizer, tone_placement: str):
    def compute_metrics(prediction) -> dict[str, float]:
        pred_ids = np.where(prediction.predictions < 0, tokenizer.pad_token_id, prediction.predictions)
        label_ids = np.where(prediction.label_ids < 0, tokenizer.pad_token_id, prediction.label_ids)
        hypotheses = tokenizer.batch_decode(pred_ids)
        references = tokenizer.batch_decode(label_ids, group_tokens=False)
        # empty_share feeds the all-blank guard (guards.BlankPredictionGuard).
        empty_share = float(np.mean([not h.strip() for h in hypotheses])) if hypotheses else 0.0
        return {**error_rates(references, hypotheses, tone_placement), "empty_share": empty_share}

    return compute_metrics


def run_paths(
    recipe: Recipe, dataset_dir: str | Path | None, output_dir: str | Path | None, default_run: str
) -> tuple[Path, Path]:
    """The dataset and run folders: the command line's, else the recipe's (``Path("")`` would silently be ".")."""
    dataset = dataset_dir or recipe.dataset
    if not dataset:
        raise ValueError("No dataset given: pass --dataset DIR (a folder written by `ai2text prepare`).")
    return Path(dataset), Path(output_dir or recipe.output_dir or default_run)


def train(
    recipe: Recipe,
    dataset_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    resume: str | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a model as ``recipe`` says on a prepared dataset; write the run folder.

    A folder that already holds a run is continued with ``resume`` or, with ``overwrite``, cleared of that run's
    model and checkpoints once the new run has passed its checks; otherwise it is refused.
    """
    dataset_dir, run_dir = run_paths(recipe, dataset_dir, output_dir, "runs/default")
    model_dir = run_dir / "model"
    check_paths(dataset_dir, run_dir)
    check_run_folder(run_dir, resume, overwrite)
    handler = _setup_logging(run_dir / "logs")
    try:
        return _train(recipe, dataset_dir, run_dir, model_dir, resume, overwrite)
    finally:
        logging.getLogger("ai2text_hf").removeHandler(handler)
        logging.getLogger("transformers").removeHandler(handler)
        handler.close()


def build_model(recipe: Recipe, tokenizer: AI2TextTokenizer) -> PreTrainedModel:
    """The model a run starts from (fresh, or ``init_from``), sized to the tokenizer's vocabulary."""
    return initial_model(recipe, tokenizer).model


def build_trainer(recipe: Recipe, dataset_dir: Path, run_dir: Path) -> tuple[CTCTrainer, EpochSummary]:
    """Everything a run needs before its first step: data, tokenizer, model, arguments and callbacks.

    Shared by ``train`` and the hyperparameter search (``ai2text tune``), which re-creates the model per trial.
    """
    set_seed(recipe.seed)
    splits = open_splits(recipe, dataset_dir)
    tokenizer = build_tokenizer(recipe, splits.train_texts(recipe))
    initial = initial_model(recipe, tokenizer)
    data = model_inputs(splits, recipe, tokenizer, initial)
    model, feature_extractor = initial.model, initial.feature_extractor
    processor = AI2TextProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    train_set, validation_set = data.train, data.validation

    run_dir.mkdir(parents=True, exist_ok=True)
    num_params = sum(p.numel() for p in model.parameters())
    kind = getattr(model.config, "block_type", type(model).__name__)
    logger.info("%s Model: %s, %.2f M parameters.", splits.describe(), kind, num_params / 1e6)

    sampler = train_sampler(recipe, train_set)
    hardware = resolve_hardware(recipe)
    steps_per_epoch = sampler and optimizer_steps_per_epoch(
        len(sampler) * sampler.num_replicas, recipe.grad_accum_steps, sampler.num_replicas
    )
    args = TrainingArguments(
        **{
            "output_dir": str(run_dir / "checkpoints"),
            **recipe_arguments(recipe),
            **hardware.training_arguments(recipe),
            "save_total_limit": None,  # CTCTrainer rotates, never deleting the best or the save_every checkpoints
            "warmup_steps": warmup_steps(recipe, steps_per_epoch),
            "lr_scheduler_type": trainer_scheduler_type(recipe.lr_scheduler),
            "eval_strategy": "epoch",
            "save_strategy": "epoch",
            "logging_strategy": "steps",
            "load_best_model_at_end": True,
            "metric_for_best_model": recipe.metric_for_best_model,
            "greater_is_better": False,
            "report_to": report_to(recipe.wandb),
            "run_name": recipe.wandb.run_name,
            "remove_unused_columns": True,
            "label_names": ["labels"],  # a LoRA-wrapped model's forward does not name them
            **recipe.training_args,
        }
    )
    run_preflight(recipe, run_dir, splits.source, splits.manifest, num_params, hardware, sampler)
    log_run_length(recipe, steps_per_epoch, args.max_steps)
    summary = EpochSummary(run_dir / "model", recipe.metric_for_best_model)
    # Only the main process writes TensorBoard events (the callbacks skip the others at train begin).
    writer = SummaryWriter(str(run_dir / "logs")) if args.process_index == 0 else None
    resolved = {
        "device": hardware.device,
        "precision": hardware.precision,
        "processes": args.world_size,
        "warmup_steps": args.warmup_steps,
        "steps_per_epoch": steps_per_epoch or "streamed",
        "parameters": num_params,
    }
    callbacks: list[TrainerCallback] = [
        summary,
        TensorBoardCallback(tb_writer=writer),
        HyperparametersToTensorBoard(writer, recipe, resolved),
    ]
    limit = None
    if recipe.max_train_minutes:
        limit = WallClockLimit(recipe.max_train_minutes, recipe.fit_schedule_to_budget)
        callbacks.append(limit)
    callbacks += [CheckpointPlan(recipe.validate_every, recipe.save_every), BlankPredictionGuard(), OverfittingGuard()]
    if recipe.early_stopping.enabled:
        stopping = recipe.early_stopping
        callbacks.append(EarlyStoppingCallback(stopping.patience, early_stopping_threshold=stopping.min_delta))
    if args.push_to_hub:  # the Trainer's own pushes during training leave out the model code files
        callbacks.append(CompleteHubPushCallback(recipe=run_dir / "recipe.yaml"))
    if data.train_collator is not data.eval_collator:
        callbacks.append(CollatorEpoch(data.train_collator))
    trainer = CTCTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=validation_set,
        data_collator=data.train_collator,
        eval_data_collator=data.eval_collator,
        processing_class=processor,
        compute_metrics=_compute_metrics_fn(tokenizer, recipe.tone_placement),
        callbacks=callbacks,
        recipe=recipe,
        train_sampler=sampler,
        resolved=resolved,
    )
    if limit is not None and trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(BudgetProgress(limit))  # tqdm's bar would promise the steps the budget cuts off
    return trainer, summary


def _train(
    recipe: Recipe, dataset_dir: Path, run_dir: Path, model_dir: Path, resume: str | None, overwrite: bool
) -> TrainResult:
    trainer, summary = build_trainer(recipe, dataset_dir, run_dir)
    processor = trainer.processing_class
    checkpoints_dir = Path(trainer.args.output_dir)
    if trainer.args.should_save:
        remove_staging(trainer.args.output_dir)
    resume = resolve_resume(resume, trainer.args.output_dir)
    if resume is not None:
        if trainer.train_sampler is not None:
            check_resume_position(resume, trainer.train_sampler, trainer.args.gradient_accumulation_steps)
        if trainer.ema is not None and not trainer.ema.load_state(resume):
            logger.warning("%s holds no EMA state: the EMA restarts from the resumed weights.", resume)
    # Only now that every check has passed does the run touch the folder's earlier contents.
    if trainer.args.should_save:
        if overwrite:
            clear_earlier_run(run_dir)
        trainer.record_run(run_dir)
    start = time.monotonic()
    trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.monotonic() - start
    weights = BYTES_PER_PARAMETER * sum(p.numel() for p in trainer.model.parameters())
    with explain_disk_full(model_dir, f"the model into {model_dir} (incomplete now)", checkpoints_dir, weights):
        if is_lora(trainer.model):  # the adapters on their own, then merged into the base for model/
            if trainer.args.should_save:
                trainer.model.save_pretrained(str(run_dir / "adapter"))
                processor.save_pretrained(str(run_dir / "adapter"))
                logger.info("Saved the LoRA adapter to: %s", run_dir / "adapter")
            trainer.model = trainer.model.merge_and_unload()
        trainer.save_model(str(model_dir))
        if trainer.args.should_save:  # one writer under torchrun / accelerate launch
            processor.save_pretrained(str(model_dir))
        if trainer.ema is not None and trainer.args.should_save:
            trainer.ema.model.save_pretrained(str(run_dir / "model-ema"))
            processor.save_pretrained(str(run_dir / "model-ema"))
            ordinary_file_modes(run_dir / "model-ema")
            logger.info("Saved EMA weights to: %s", run_dir / "model-ema")
    best = summary.best_metrics or {
        k.removeprefix("eval_"): v for k, v in trainer.evaluate().items() if isinstance(v, (int, float))
    }
    logger.info(
        "Saved best model (val CER %.2f%%, WER %.2f%%) to: %s",
        100 * best.get("cer", math.nan),
        100 * best.get("wer", math.nan),
        model_dir,
    )
    return TrainResult(run_dir=run_dir, model_dir=model_dir, best_metrics=best, train_seconds=train_seconds)
