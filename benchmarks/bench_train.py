"""Training throughput and padding: our duration buckets against the Trainer's own length grouping.

Both runs train the same recipe (the demo's by default), the same model from the same seed, on the same
prepared data, for the same number of optimizer steps, one after the other in this process:

- ``duration buckets``: ``DurationBatchSampler`` — batches of at most ``max_batch_seconds`` of padded audio;
- ``group_by_length``: ``TrainingArguments(train_sampling_strategy="group_by_length")`` — the Trainer's
  ``LengthGroupedSampler`` over the ``duration`` column, with a fixed batch size equal to our mean
  utterances per batch (so both average the same audio per step).

Reported: real audio-seconds trained per wall-clock second (evaluation and saving off), padding share of the
padded frames the model computed on, the largest padded batch (what decides memory), and the floating-point
rate that throughput means, against what the same threads reach on one large matrix product.

    .venv/bin/python -m benchmarks.bench_train [--dataset data/processed/demo] [--max-steps 60]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback

from ai2text_hf.data.prepare import load_prepared
from ai2text_hf.data.sampler import DurationBatchSampler
from ai2text_hf.training.arguments import resolve_hardware
from ai2text_hf.training.recipe import Recipe, load_recipe
from ai2text_hf.training.trainer import CTCTrainer, build_trainer

from .common import REPO, forward_flops, matmul_gflops, print_table


class RecordingCollator:
    """Wraps the training collator and counts real and padded frames of every batch it builds."""

    def __init__(self, collator, seconds_per_frame: float):
        self.collator = collator
        self.columns = collator.columns
        self.seconds_per_frame = seconds_per_frame
        self.real_frames = 0
        self.padded_frames = 0
        self.largest_batch_seconds = 0.0

    def __call__(self, rows):
        batch = self.collator(rows)
        mask = batch["attention_mask"]
        self.real_frames += int(mask.sum())
        self.padded_frames += mask.numel()
        self.largest_batch_seconds = max(self.largest_batch_seconds, mask.numel() * self.seconds_per_frame)
        return batch

    @property
    def padding_share(self) -> float:
        return 1 - self.real_frames / max(1, self.padded_frames)


def length_grouped_loader(trainer: CTCTrainer) -> DataLoader:
    """The Trainer's own sampler (``train_sampling_strategy="group_by_length"``) over our collator."""
    sampler = Trainer._get_train_sampler(trainer, trainer.train_dataset)
    loader = DataLoader(
        trainer.train_dataset.select_columns(list(trainer.data_collator.columns)),
        batch_size=trainer.args.per_device_train_batch_size,
        sampler=sampler,
        collate_fn=trainer.data_collator,
        drop_last=False,
    )
    return trainer.accelerator.prepare(loader)


def training_flops_per_audio_second(trainer: CTCTrainer, seconds_per_frame: float, batches: int = 8) -> float:
    """Floating-point operations of training per second of real audio, over the loader's first ``batches``.

    Three times the forward pass (the backward pass costs two, the usual estimate): torch's FLOP counter
    over-counts the gradients of the strided and grouped convolutions of the front end. Padded frames
    count, since the model computes them.
    """
    model, flops, frames = trainer.model.eval(), 0.0, 0
    with torch.no_grad():
        for batch in itertools.islice(trainer.get_train_dataloader(), batches):
            inputs = {key: batch[key] for key in ("input_features", "attention_mask")}
            flops += 3 * forward_flops(lambda inputs=inputs: model(**inputs).logits, model.config)
            frames += int(batch["attention_mask"].sum())
    return flops / (frames * seconds_per_frame)


def measure(
    recipe: Recipe, dataset: Path, work: Path, grouping: str, batch_size: int, float32: bool = False
) -> dict[str, float]:
    overrides = {
        **recipe.to_dict(),
        "use_amp": recipe.use_amp and not float32,
        "max_train_minutes": None,
        "eval_strategy": "no",
        "save_strategy": "no",
        "load_best_model_at_end": False,
        "disable_tqdm": True,
    }
    if grouping == "group_by_length":
        overrides.update(
            train_sampling_strategy="group_by_length",
            length_column_name="duration",
            per_device_train_batch_size=batch_size,
        )
    trainer, _ = build_trainer(load_recipe(None, overrides), dataset, work / grouping)
    trainer.remove_callback(PrinterCallback)  # its per-log dicts would land in the results table's output
    seconds_per_frame = recipe.hop_length / recipe.sample_rate
    recorder = RecordingCollator(trainer.data_collator, seconds_per_frame)
    trainer.data_collator = recorder
    if grouping == "group_by_length":
        trainer.get_train_dataloader = lambda: length_grouped_loader(trainer)
    output = trainer.train()
    runtime = output.metrics["train_runtime"]
    result = {
        "precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
        "audio_seconds_per_second": recorder.real_frames * seconds_per_frame / runtime,
        "padding_share": recorder.padding_share,
        "largest_batch_seconds": recorder.largest_batch_seconds,
        "steps": output.global_step,
        "runtime": runtime,
    }
    trainer.data_collator = recorder.collator  # the counting batches below are not part of the run
    result["flops_per_audio_second"] = training_flops_per_audio_second(trainer, seconds_per_frame)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO / "data" / "processed" / "demo"), help="prepared dataset")
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "demo-cpu.yaml"))
    parser.add_argument("--max-steps", type=int, default=60, help="optimizer steps per run")
    args = parser.parse_args()
    dataset = Path(args.dataset)
    if not (dataset / "manifest.json").is_file():
        raise SystemExit(f"{dataset} is not a prepared dataset: run `make demo` (or ai2text prepare) first.")
    recipe = load_recipe(args.recipe, {"max_steps": args.max_steps})
    durations = np.asarray(load_prepared(dataset)["train"]["duration"])
    ours = DurationBatchSampler(durations, recipe.max_batch_seconds, recipe.batch_size, seed=recipe.seed)
    batch_size = max(1, round(len(durations) / len(ours)))
    rows, costs = [], {}
    threads = torch.get_num_threads()
    peaks = {"fp32": matmul_gflops(threads), "bf16": matmul_gflops(threads, dtype=torch.bfloat16)}
    # With mixed precision on this machine, also our batching in float32: what the precision gains, in the same run.
    mixed = resolve_hardware(recipe).amp
    runs = [("duration buckets", False), *([("duration buckets", True)] if mixed else []), ("group_by_length", False)]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as work:
        for index, (grouping, float32) in enumerate(runs):
            result = measure(recipe, dataset, Path(work) / str(index), grouping, batch_size, float32)
            costs[grouping] = f"{result['flops_per_audio_second'] / 1e9:.2f} with {grouping}"
            achieved = result["audio_seconds_per_second"] * result["flops_per_audio_second"] / 1e9
            peak = peaks.get(result["precision"], peaks["fp32"])
            rows.append(
                (
                    grouping,
                    result["precision"],
                    f"{result['steps']}",
                    f"{result['audio_seconds_per_second']:.1f}",
                    f"{100 * result['padding_share']:.1f} %",
                    f"{result['largest_batch_seconds']:.0f}",
                    f"{result['runtime']:.1f}",
                    f"{achieved:.0f} ({achieved / peak:.0%})",
                )
            )
    print_table(
        f"Training throughput, {Path(args.recipe).name} on {dataset.name} ({len(durations)} train utterances; "
        f"group_by_length batch size {batch_size} = our mean utterances per batch)",
        rows,
        (
            "batching", "precision", "steps", "audio-s / s", "padding", "largest padded batch (s)", "train time (s)",
            "GFLOP/s (share of a large matrix product's in that precision)",
        ),
    )  # fmt: skip
    print(
        f"\nA large matrix product (1024x1024) runs at {peaks['fp32']:.0f} GFLOP/s in fp32 and {peaks['bf16']:.0f} "
        f"in bf16 on these {threads} threads. Training costs {' and '.join(costs.values())} GFLOP per second of audio, "
        "padding included (3x the forward pass). The recipe's precision is what `ai2text train` uses on this "
        "machine (bf16 autocast on a CPU with AVX512-BF16 or AMX when the recipe sets use_amp: true, amp_dtype: bf16)."
    )


if __name__ == "__main__":
    main()
