"""The demo recipe on the CC0 sentence corpus, against the plain-PyTorch prototype's published figures.

Reference (measured on this kind of machine with a plain-PyTorch prototype, issue 2): a 4.6 M-parameter
Conformer-CTC trained at 76 audio-seconds per second on 2 cores on 3 renditions of the 4,548 train
sentences of ``../shared/data/sentences`` (8.4 h) and reached 8.4 % CER on unseen sentences after
20 minutes. This script synthesises the same amount of speech from the same sentences (3 renditions of
train; 500 held-out sentences each for val and test, spoken with voice settings never used in train —
a harder test than the prototype's), trains ``recipes/demo-cpu.yaml`` for the same wall-clock budget,
and reports throughput and test CER next to the reference.

    .venv/bin/python -m benchmarks.bench_recipe_cc0 [--minutes 20] [--work data/bench-cc0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ai2text_hf.data.features import feature_mismatches
from ai2text_hf.data.prepare import prepare_dataset, read_manifest
from ai2text_hf.data.synth import SynthConfig, read_sentences, synthesize_corpus
from ai2text_hf.evaluation import evaluate_split
from ai2text_hf.training.initial_model import recipe_feature_extractor
from ai2text_hf.training.recipe import load_recipe
from ai2text_hf.training.trainer import train

from .common import REPO, SHARED, print_table

PROTOTYPE = {"audio_seconds_per_second": 76.0, "cer": 0.084, "minutes": 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall-clock budget")
    parser.add_argument("--work", default=str(REPO / "data" / "bench-cc0"), help="working folder")
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "demo-cpu.yaml"))
    parser.add_argument(
        "--epochs", type=float, default=5.0, help="epochs the LR schedule spans (5 fit in 18 min on 2 cores)"
    )
    args = parser.parse_args()
    source = SHARED / "data" / "sentences"
    if not source.is_dir():
        raise SystemExit(f"{source} is absent: this benchmark needs the shared CC0 sentence corpus.")
    work = Path(args.work)
    sentences = [s for part in ("train", "dev", "test") for s in read_sentences(source / f"{part}.tsv")]
    corpus = work / "corpus"
    if not (corpus / "metadata.csv").is_file():
        synthesize_corpus(sentences, corpus, SynthConfig(val_sentences=500, test_sentences=500, train_renditions=3))
    dataset = work / "dataset"
    recipe = load_recipe(args.recipe, {"max_train_minutes": args.minutes, "num_epochs": args.epochs})
    features = recipe_feature_extractor(recipe)  # e.g. pitch columns when the recipe has pitch: true
    if not (dataset / "manifest.json").is_file() or feature_mismatches(
        read_manifest(dataset)["feature_extractor"], features.to_dict()
    ):
        prepare_dataset(corpus / "metadata.csv", dataset, feature_extractor=features, overwrite=True)
    start = time.monotonic()
    result = train(recipe, dataset_dir=dataset, output_dir=work / "run")
    minutes = (time.monotonic() - start) / 60
    stats = json.loads((dataset / "stats.json").read_text())
    history = json.loads(
        max(
            (work / "run" / "checkpoints").glob("checkpoint-*/trainer_state.json"),
            key=lambda path: int(path.parent.name.split("-")[1]),
        ).read_text()
    )
    epochs = history["epoch"]
    throughput = epochs * stats["train_hours"] * 3600 / result.train_seconds
    test = evaluate_split(result.model_dir, dataset, "test").metrics
    print_table(
        "Demo recipe on the CC0 sentence corpus vs the plain-PyTorch prototype",
        [
            ("train audio", f"{stats['train_hours']:.1f} h", "8.4 h"),
            ("training time", f"{minutes:.1f} min ({epochs:.1f} epochs)", f"{PROTOTYPE['minutes']} min"),
            ("throughput, audio-s/s", f"{throughput:.0f}", f"{PROTOTYPE['audio_seconds_per_second']:.0f}"),
            ("test CER (unseen sentences)", f"{100 * test['cer']:.1f} %", f"{100 * PROTOTYPE['cer']:.1f} %"),
            ("test WER", f"{100 * test['wer']:.1f} %", "n/a"),
        ],
        ("", "ai2text-hf", "prototype"),
    )


if __name__ == "__main__":
    main()
