"""What waveform augmentation costs: each family alone, the default set, and a short real training run.

(a) Augmenter cost per family (probability 1, every other family off) and for the default set (at its own
    probabilities), in audio-seconds per second, against the model's feature extractor alone on the same
    utterances in the same run (the work the on-the-fly collator does anyway). The room bank's build time and
    the babble pool are reported too.
(b) The demo recipe trained for ``--max-steps`` optimizer steps on a small on-the-fly dataset, without and with
    the default augmentation, with 0 and 1 DataLoader workers: audio-seconds of the corpus per second.

The dataset is a subset of the demo corpus (``data/demo``) when present, else a small espeak-ng corpus
synthesised for the run.

    .venv/bin/python -m benchmarks.bench_augment [--utterances 120] [--max-steps 40] [--skip-training]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from transformers.trainer_callback import PrinterCallback

from ai2text_hf.data.audio import audio_array, featurize_batch
from ai2text_hf.data.augment import CODECS, FAMILIES, Augmentation
from ai2text_hf.data.augment.chain import WaveformAugmenter
from ai2text_hf.data.augment.noise import COLOUR_EXPONENTS, BabblePool, coloured_noise
from ai2text_hf.data.augment.vtlp import VocalTractWarp
from ai2text_hf.data.collator import AudioCTCCollator
from ai2text_hf.data.prepare import load_prepared, prepare_dataset
from ai2text_hf.data.synth import SynthConfig, default_sentences_path, synthesize_corpus
from ai2text_hf.training.initial_model import recipe_feature_extractor
from ai2text_hf.training.recipe import load_recipe
from ai2text_hf.training.trainer import build_trainer

from .common import REPO, print_table

DEMO = REPO / "data" / "demo"
RATE = 16000
BATCH_SECONDS = 30.0  # the demo recipe's max_batch_seconds: the collator featurises batches of this size


def build_dataset(work: Path, utterances: int) -> tuple[Path, str]:
    """An on-the-fly prepared dataset of about ``utterances`` train utterances (and a few val ones), and what
    it holds in words."""
    metadata = DEMO / "metadata.csv"
    if metadata.is_file():
        with metadata.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        subset = [r for r in rows if r["split"] == "train"][:utterances] + [r for r in rows if r["split"] == "val"][:8]
        metadata = work / "metadata.csv"
        with metadata.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(subset)
        audio_root, label = DEMO, "the demo corpus (data/demo)"
    else:
        config = SynthConfig(max_sentences=utterances + 10, val_sentences=8, test_sentences=2, train_renditions=1)
        metadata = synthesize_corpus(default_sentences_path(), work / "corpus", config, progress=False)
        audio_root, label = None, "a corpus synthesised for the run (no data/demo)"
    output = work / "otf"
    prepare_dataset(metadata, output, audio_root=audio_root, on_the_fly=True, progress=False)
    return output, label


def batches(items: list[dict]) -> list[list[dict]]:
    """Rows in batches of at most ``BATCH_SECONDS`` of audio, as the collator gets them."""
    groups, current, seconds = [], [], 0.0
    for item in items:
        if current and seconds + len(item["audio"]) / RATE > BATCH_SECONDS:
            groups.append(current)
            current, seconds = [], 0.0
        current.append(item)
        seconds += len(item["audio"]) / RATE
    return groups + [current] if current else groups


@dataclasses.dataclass
class Cost:
    """Best wall and CPU seconds over repeated runs: the CPU time (all of this process's threads) is what a
    machine shared with other work disturbs least."""

    wall: float = float("inf")
    cpu: float = float("inf")

    def measure(self, fn, repeats: int = 2) -> Cost:
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            self.wall = min(self.wall, time.perf_counter() - wall)
            self.cpu = min(self.cpu, time.process_time() - cpu)
        return self


def only(family: str, **settings) -> Augmentation:
    return Augmentation(enabled=True, **{f"{f}_prob": float(f == family) for f in FAMILIES}, **settings)


def noise_folder(work: Path) -> Path:
    """A few noise recordings at 44.1 kHz (so reading includes resampling), MUSAN-style nesting."""
    folder = work / "noise" / "free-sound"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, colour in enumerate(COLOUR_EXPONENTS):
        sf.write(folder / f"noise-{index}.wav", 0.1 * coloured_noise(colour, 44100 * 20, rng), 44100)
    return work / "noise"


def family_costs(dataset: Path, label: str, recipe, work: Path) -> None:
    train = load_prepared(dataset)["train"].with_format("numpy")
    items = [{"id": str(i), "audio": audio_array(w)} for i, w in zip(train["id"], train["audio"])]
    seconds = sum(len(item["audio"]) for item in items) / RATE
    extractor = recipe_feature_extractor(recipe)
    groups = batches(items)

    def collate(collator: AudioCTCCollator) -> None:
        for group in groups:
            collator(group)

    # One torch thread: the work itself is measured, not a second thread's waiting on a busy machine (a
    # DataLoader worker runs its collator on one thread too).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    baseline = Cost().measure(lambda: collate(AudioCTCCollator(extractor)))
    start = time.perf_counter()
    pool = BabblePool.from_dataset(load_prepared(dataset)["train"], Augmentation().babble_pool_size, recipe.seed)
    pool_seconds = time.perf_counter() - start

    cases: list[tuple[str, Augmentation]] = []
    for family in FAMILIES:
        if family == "noise":
            sources = [*COLOUR_EXPONENTS, "babble"]
            cases += [(f"noise: {source}", only("noise", noise_sources=[source])) for source in sources]
            folder = str(noise_folder(work))
            cases.append(("noise: folder (44.1 kHz files)", only("noise", noise_sources=["folder"], noise_dir=folder)))
        elif family == "channel":
            cases += [(f"channel: {codec}", only("channel", codecs=[codec])) for codec in CODECS]
        elif family != "vtlp":
            cases.append((family, only(family)))
    costs: dict[str, Cost] = {}
    build_notes = []
    for name, options in cases:
        augmenter = WaveformAugmenter(options, RATE, recipe.seed, babble=pool)
        if augmenter.rooms:
            build_notes.append(f"the bank of {options.room_bank_size} rooms took {augmenter.rooms.build_seconds:.1f} s")
        costs[name] = Cost().measure(lambda a=augmenter: [a(item["audio"], 0, item["id"]) for item in items])
    warp = VocalTractWarp(extractor)
    features = [torch.from_numpy(f) for f in featurize_batch([item["audio"] for item in items], extractor)]
    costs["vtlp (on the features)"] = Cost().measure(lambda: [warp(f, 1.05) for f in features])

    default = AudioCTCCollator(extractor, WaveformAugmenter(Augmentation(enabled=True), RATE, recipe.seed, pool))
    for epoch in (0, 1):  # alternating with the baseline, so a change in the machine's load hits both alike
        default.epoch = epoch
        name = f"**the collator with the default set**, at its probabilities (epoch {epoch})"
        costs[name] = Cost()
        for _ in range(2):
            baseline.measure(lambda: collate(AudioCTCCollator(extractor)), repeats=1)
            costs[name].measure(lambda: collate(default), repeats=1)
    torch.set_num_threads(threads)
    rows = [("features alone: the collator without augmentation (baseline)", f"{seconds / baseline.wall:.0f}",
             "1.00", "1.00")]  # fmt: skip
    rows += [
        (name, f"{seconds / cost.wall:.0f}", f"{cost.wall / baseline.wall:.2f}", f"{cost.cpu / baseline.cpu:.2f}")
        for name, cost in costs.items()
    ]
    print_table(
        f"Augmentation cost per family: {len(items)} train utterances of {label} ({seconds:.0f} s of audio), each "
        "family at probability 1 with every other family off, against the on-the-fly collator's own work (the "
        f"model's feature extractor on batches of {BATCH_SECONDS:.0f} s, one torch thread) in the same run; best of 2 "
        "(baseline: of 6)",
        rows,
        ("family", "audio-s / s", "wall time vs features", "CPU time vs features"),
    )
    print(
        f"\nOne-off start-up costs: {'; '.join(build_notes)}; the babble pool ({len(pool)} train utterances) took "
        f"{pool_seconds:.1f} s to read."
    )


@dataclasses.dataclass
class Run:
    audio_seconds: float  # of the corpus, before augmentation
    runtime: float
    collate_seconds: float | None  # time in the collator, when it runs in this process (no workers)
    model_frames: int  # padded frames the model computed: augmentation changes lengths after batching

    @property
    def speed(self) -> float:
        return self.audio_seconds / self.runtime


def train_once(recipe_path: Path, dataset: Path, work: Path, steps: int, augment: bool, workers: int) -> Run:
    """``steps`` optimizer steps of the recipe (evaluation and saving off), counted in the main process."""
    overrides = {
        "max_steps": steps,
        "num_workers": workers,
        "augmentation.enabled": augment,
        "max_train_minutes": None,
        "eval_strategy": "no",
        "save_strategy": "no",
        "load_best_model_at_end": False,
        "disable_tqdm": True,
        "logging_steps": 1000,
    }
    trainer, _ = build_trainer(load_recipe(recipe_path, overrides), dataset, work / f"{augment}-{workers}")
    trainer.remove_callback(PrinterCallback)
    train = load_prepared(dataset)["train"]
    durations = dict(zip(map(str, train["id"]), train["duration"]))
    seconds, collating, frames, step, collator = 0.0, 0.0, 0, trainer.training_step, trainer.data_collator

    def counted_step(model, inputs, *args, **kwargs):
        # In the main process, whichever process collated: the batch names its utterances.
        nonlocal seconds, frames
        seconds += sum(durations[uid] for uid in inputs["id"])
        frames += inputs["attention_mask"].numel()
        return step(model, inputs, *args, **kwargs)

    def timed_collator(rows):
        nonlocal collating
        start = time.perf_counter()
        batch = collator(rows)
        collating += time.perf_counter() - start
        return batch

    timed_collator.columns = collator.columns
    trainer.training_step, trainer.data_collator = counted_step, timed_collator
    runtime = trainer.train().metrics["train_runtime"]
    return Run(seconds, runtime, None if workers else collating, frames)


def training_costs(recipe_path: Path, dataset: Path, label: str, work: Path, steps: int) -> None:
    rows = []
    for workers in (0, 1):
        base, augmented = (train_once(recipe_path, dataset, work, steps, augment, workers) for augment in (False, True))
        for name, run in (("none (baseline)", base), ("default set", augmented)):
            collating = "" if run.collate_seconds is None else f"{run.collate_seconds / run.runtime:.0%}"
            lost = f"{1 - run.speed / base.speed:.0%}" if run is augmented else ""
            frames = f"{run.model_frames / base.model_frames:.2f}"
            rows.append(
                (name, str(workers), f"{run.speed:.1f}", f"{run.speed / base.speed:.2f}", lost, collating, frames)
            )
    print_table(
        f"Training with and without augmentation: {recipe_path.name}, {steps} optimizer steps on {label} (prepared "
        "--on-the-fly); audio-seconds of the corpus per second",
        rows,
        ("augmentation", "DataLoader workers", "audio-s / s", "vs no augmentation", "throughput lost",
         "time in the collator (no workers)", "padded frames the model computed, vs no augmentation"),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "demo-cpu.yaml"))
    parser.add_argument("--utterances", type=int, default=120, help="train utterances of the benchmark dataset")
    parser.add_argument("--max-steps", type=int, default=40, help="optimizer steps per training run")
    parser.add_argument("--skip-training", action="store_true", help="only the per-family costs (a)")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    with tempfile.TemporaryDirectory(prefix="bench-augment-") as work:
        work = Path(work)
        dataset, label = build_dataset(work, args.utterances)
        family_costs(dataset, label, recipe, work)
        if not args.skip_training:
            training_costs(Path(args.recipe), dataset, label, work, args.max_steps)


if __name__ == "__main__":
    main()
