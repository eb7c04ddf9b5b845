"""Shared test set-up: offline Hub, the shared-data skip helper and a small trained model.

The ``trained_model`` fixture synthesises a small espeak-ng corpus, prepares it and trains
``recipes/tiny.yaml`` on it once. The result is cached under ``<repo>/.cache/test-model/<key>/``,
where the key hashes the recipe, the corpus settings and the source files that decide what the model
computes, so a re-run reuses it and a code change retrains it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL_VI = SHARED / "data" / "real-vi"
PACKAGE = REPO / "ai2text_hf"
TINY_RECIPE = REPO / "recipes" / "tiny.yaml"
CACHE_ROOT = REPO / ".cache" / "test-model"
# Code a saved model folder carries for trust_remote_code (the normaliser comes with the tokenizer).
CODE_FILES = [
    "configuration_ai2text.py",
    "modeling_ai2text.py",
    "feature_extraction_ai2text.py",
    "tokenization_ai2text.py",
    "processing_ai2text.py",
    "normalization_vi.py",
]

# The fixture corpus: 130 train sentences x 3 voice settings (390 utterances), 10 val and 20 test sentences.
SYNTH_OPTIONS = {"max_sentences": 160, "val_sentences": 10, "test_sentences": 20, "train_renditions": 3, "seed": 7}
# On top of recipes/tiny.yaml: enough epochs for the model to read its own training sentences.
# ``disable_tqdm`` is a TrainingArguments field: it also shows such fields pass through a recipe.
RECIPE_OVERRIDES = {"num_epochs": 30, "logging_steps": 10, "seed": 42, "disable_tqdm": True}
# Everything that changes the corpus, the features, the model or how it is trained (globs under ai2text_hf/).
KEY_SOURCES = [
    "configuration_ai2text.py",
    "modeling_ai2text.py",
    "feature_extraction_ai2text.py",
    "tokenization_ai2text.py",
    "normalization_vi.py",
    "processing_ai2text.py",
    "resources/sentences_vi.txt",
    "data/*.py",
    "training/*.py",
]


def require_real_vi() -> Path:
    """The shared real-speech corpus, or a clean skip where it is absent (users' clones lack it)."""
    if not (REAL_VI / "metadata.csv").is_file():
        pytest.skip(f"{REAL_VI} is not present (shared data only exists beside the project checkout)")
    return REAL_VI


@pytest.fixture
def real_vi() -> Path:
    return require_real_vi()


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A cached training run: ``run_dir`` holds model/, checkpoints/, logs/ and recipe.yaml."""

    root: Path
    corpus_dir: Path  # metadata.csv + wavs/
    dataset_dir: Path  # prepared DatasetDict version
    run_dir: Path
    build_seconds: float | None  # None when the cache was reused

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    @property
    def metadata(self) -> Path:
        return self.corpus_dir / "metadata.csv"

    def rows(self, split: str) -> list[dict[str, str]]:
        import csv

        with self.metadata.open(encoding="utf-8", newline="") as handle:
            return [row for row in csv.DictReader(handle) if row["split"] == split]


def _cache_key() -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"synth": SYNTH_OPTIONS, "recipe": RECIPE_OVERRIDES}, sort_keys=True).encode())
    digest.update(TINY_RECIPE.read_bytes())
    for pattern in KEY_SOURCES:
        for path in sorted(PACKAGE.glob(pattern)):
            digest.update(path.relative_to(PACKAGE).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _build(target: Path) -> float:
    """Synthesise, prepare and train into a temporary sibling of ``target``, then rename it into place."""
    from ai2text_hf.data.prepare import prepare_dataset
    from ai2text_hf.data.synth import SynthConfig, default_sentences_path, synthesize_corpus
    from ai2text_hf.training.recipe import load_recipe
    from ai2text_hf.training.trainer import train

    start = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        config = SynthConfig(**SYNTH_OPTIONS, workers=os.cpu_count() or 1)
        metadata = synthesize_corpus(default_sentences_path(), staging / "corpus", config, progress=False)
        synth_seconds = time.monotonic() - start
        prepare_dataset(metadata, staging / "dataset", progress=False)
        prepare_seconds = time.monotonic() - start - synth_seconds
        recipe = load_recipe(TINY_RECIPE, RECIPE_OVERRIDES)
        result = train(recipe, dataset_dir=staging / "dataset", output_dir=staging / "run")
        seconds = time.monotonic() - start
        build = {
            "seconds": round(seconds, 1),
            "synth_seconds": round(synth_seconds, 1),
            "prepare_seconds": round(prepare_seconds, 1),
            "train_seconds": round(result.train_seconds, 1),
            "best_val": result.best_metrics,
        }
        (staging / "build.json").write_text(json.dumps(build, indent=2) + "\n", encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:  # another session finished the same key first: use theirs
            if not (target / "build.json").is_file():
                raise
        return seconds
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _prune(keep: Path) -> None:
    """Drop cache entries unused for a day and partial builds older than a few hours (killed sessions)."""
    now = time.time()
    for entry in CACHE_ROOT.iterdir():
        if entry == keep or not entry.is_dir():
            continue
        if entry.name.startswith("."):
            stale = now - entry.stat().st_mtime > 6 * 3600
        else:
            marker = entry / "build.json"
            stale = now - (marker if marker.is_file() else entry).stat().st_mtime > 24 * 3600
        if stale:
            shutil.rmtree(entry, ignore_errors=True)


@pytest.fixture(scope="session")
def trained_model() -> TrainedModel:
    """A tiny Conformer-CTC trained on 390 synthetic utterances (built once, then cached)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: the fixture corpus is synthesised with it")
    root = CACHE_ROOT / _cache_key()
    seconds = None
    if not (root / "build.json").is_file():
        seconds = _build(root)
    os.utime(root / "build.json")  # marks the entry as in use for _prune
    _prune(keep=root)
    return TrainedModel(
        root=root,
        corpus_dir=root / "corpus",
        dataset_dir=root / "dataset",
        run_dir=root / "run",
        build_seconds=seconds,
    )


def synth_tiny_corpus(root: Path, sentences: int, validation: int, test: int, seed: int) -> Path:
    """The metadata CSV of ``sentences`` espeak-ng utterances (one rendition each) under ``root / "corpus"``, or a
    clean skip where espeak-ng is missing."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: the corpus is synthesised with it")
    from ai2text_hf.data.synth import SynthConfig, default_sentences_path, synthesize_corpus

    config = SynthConfig(
        max_sentences=sentences,
        val_sentences=validation,
        test_sentences=test,
        train_renditions=1,
        seed=seed,
        workers=1,
    )
    return synthesize_corpus(default_sentences_path(), root / "corpus", config, progress=False)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """22 train and 4 val espeak-ng utterances with log-mel features: a few steps per epoch, for tests that
    train several short runs (resume, distributed, checkpoints, guards) without the cached model's corpus."""
    from ai2text_hf.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("small")
    metadata = synth_tiny_corpus(root, sentences=27, validation=4, test=1, seed=5)
    prepare_dataset(metadata, root / "dataset", progress=False)
    return root / "dataset"


@pytest.fixture(scope="session")
def model_with_lm(trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the fixture model as ``<tmp>/run/model`` (beside its recipe) with a 3-gram LM of its train
    sentences stored in it (``language_model/``, as ``ai2text lm build --model`` does). Tests copy it to change it."""
    from ai2text_hf.decoding.lm import build_lm, store_in_model

    root = tmp_path_factory.mktemp("model-with-lm")
    model = root / "run" / "model"
    shutil.copytree(trained_model.model_dir, model, ignore=shutil.ignore_patterns("evaluations.json"))
    shutil.copy(trained_model.run_dir / "recipe.yaml", root / "run" / "recipe.yaml")
    build_lm([trained_model.metadata], root / "lm", order=3, splits=["train"])
    store_in_model(root / "lm", model)
    return model
