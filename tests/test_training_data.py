"""What training reads: on-the-fly audio (with augmentation), streams, and fine-tuning from another model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_RECIPE, synth_tiny_corpus

from ai2text_hf.data.audio import featurize_batch
from ai2text_hf.data.prepare import load_prepared, prepare_dataset
from ai2text_hf.training.recipe import load_recipe
from ai2text_hf.training.trainer import build_trainer, train

# A model small enough that a few epochs on a dozen utterances take seconds.
SMALL = {
    "d_model": 48,
    "num_encoder_layers": 1,
    "num_heads": 2,
    "d_ff": 96,
    "learning_rate": 3e-3,
    "max_batch_seconds": 20,
    "logging_steps": 1,
    "disable_tqdm": True,
    "save_total_limit": 2,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 espeak-ng utterances (10 train, 2 val) and their on-the-fly preparation (16 kHz audio stored)."""
    root = tmp_path_factory.mktemp("otf")
    metadata = synth_tiny_corpus(root, sentences=13, validation=2, test=1, seed=3)
    prepare_dataset(metadata, root / "otf", on_the_fly=True, progress=False)
    return root


def _losses(run_dir: Path) -> list[float]:
    states = (run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")
    state = max(states, key=lambda p: int(p.parent.name.removeprefix("checkpoint-")))
    return [entry["loss"] for entry in json.loads(state.read_text())["log_history"] if "loss" in entry]


@pytest.fixture(scope="module")
def otf_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    recipe = load_recipe(
        TINY_RECIPE,
        {**SMALL, "num_epochs": 12, "augmentation": {"enabled": True, "room_bank_size": 2}},
    )
    return train(recipe, dataset_dir=corpus / "otf", output_dir=tmp_path_factory.mktemp("run") / "otf")


def test_on_the_fly_dataset_trains_with_augmentation(otf_run) -> None:
    losses = _losses(otf_run.run_dir)
    assert len(losses) >= 6 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    assert 0.0 <= otf_run.best_metrics["cer"] <= 1.0 and "wer" in otf_run.best_metrics
    assert (otf_run.model_dir / "model.safetensors").is_file()


def test_evaluation_never_augments(corpus: Path, tmp_path: Path) -> None:
    recipe = load_recipe(TINY_RECIPE, {**SMALL, "augmentation": {"enabled": True, "noise_prob": 1.0}})
    trainer, _ = build_trainer(recipe, corpus / "otf", tmp_path / "run")
    extractor = trainer.processing_class.feature_extractor
    val = load_prepared(corpus / "otf")["val"]
    by_length = {len(f): f for f in featurize_batch(list(val.with_format("numpy")["audio"]), extractor)}
    for _ in range(2):  # twice: the same clean features each time
        for batch in trainer.get_eval_dataloader():
            for features, frames in zip(batch["input_features"], batch["attention_mask"].sum(-1).tolist()):
                np.testing.assert_allclose(features[:frames].numpy(), by_length[frames], atol=1e-4)
    train_batch = next(iter(trainer.get_train_dataloader()))
    train_ids = set(trainer.train_dataset.select_columns(["id"]).to_dict()["id"])
    assert train_ids and train_batch["input_features"].shape[0] > 0
    clean = trainer.eval_data_collator([trainer.train_dataset[0]])["input_features"]
    noisy = trainer.data_collator([trainer.train_dataset[0]])["input_features"]
    assert clean.shape != noisy.shape or not torch.allclose(clean, noisy)


def test_augmentation_on_a_features_dataset_says_to_prepare_on_the_fly(corpus: Path, tmp_path: Path) -> None:
    features = tmp_path / "features"
    prepare_dataset(corpus / "corpus" / "metadata.csv", features, progress=False)
    recipe = load_recipe(TINY_RECIPE, {**SMALL, "augmentation.enabled": True})
    with pytest.raises(ValueError, match=r"stores precomputed features.*ai2text prepare --on-the-fly"):
        train(recipe, dataset_dir=features, output_dir=tmp_path / "run")


@pytest.mark.parametrize("source", ["csv", "prepared-audio", "prepared-features"])
def test_streamed_train_split_trains_for_max_steps(corpus: Path, tmp_path: Path, source: str) -> None:
    if source == "csv":
        dataset, extra = corpus / "corpus" / "metadata.csv", {}
    elif source == "prepared-audio":
        dataset, extra = corpus / "otf", {"streaming": True}
    else:
        dataset, extra = tmp_path / "features", {"streaming": True}
        prepare_dataset(corpus / "corpus" / "metadata.csv", dataset, progress=False)
    recipe = load_recipe(
        TINY_RECIPE,
        {**SMALL, **extra, "max_steps": 4, "stream_buffer_size": 6, "eval_strategy": "steps", "eval_steps": 2,
         "save_strategy": "steps", "save_steps": 2},
    )
    result = train(recipe, dataset_dir=dataset, output_dir=tmp_path / "run")
    losses = _losses(result.run_dir)
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert "cer" in result.best_metrics and (result.model_dir / "model.safetensors").is_file()


def test_streamed_training_needs_max_steps(corpus: Path, tmp_path: Path) -> None:
    recipe = load_recipe(TINY_RECIPE, {**SMALL, "streaming": True})
    with pytest.raises(ValueError, match=r"no known length.*max_steps"):
        train(recipe, dataset_dir=corpus / "otf", output_dir=tmp_path / "run")


# ---------------------------------------------------------------------------------------------------
# Fine-tuning
# ---------------------------------------------------------------------------------------------------


def test_init_from_our_model_loads_its_weights(otf_run, corpus: Path, tmp_path: Path) -> None:
    frozen = {"init_from": str(otf_run.model_dir), "freeze_layers": 1, "freeze_feature_encoder": True}
    trainer, _ = build_trainer(load_recipe(TINY_RECIPE, {**SMALL, **frozen}), corpus / "otf", tmp_path / "run")
    saved = type(trainer.model).from_pretrained(otf_run.model_dir).state_dict()
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert not any(p.requires_grad for p in trainer.model.layers[0].parameters())
    assert not any(p.requires_grad for p in trainer.model.subsampling.parameters())
    assert all(p.requires_grad for p in trainer.model.lm_head.parameters())


def test_finetune_recipe_starts_from_its_base_and_trains(trained_model, tmp_path: Path) -> None:
    finetune, dataset = REPO / "recipes" / "finetune-cpu.yaml", trained_model.dataset_dir
    short = {"init_from": str(trained_model.model_dir), "max_train_minutes": None, "num_epochs": 1,
             "validate_every": 1, "logging_steps": 1, "disable_tqdm": True}  # fmt: skip
    based, _ = build_trainer(load_recipe(finetune, short), dataset, tmp_path / "based")
    fresh_keys = {**short, **{k: SMALL[k] for k in ("d_model", "num_encoder_layers", "num_heads", "d_ff")}}
    fresh, _ = build_trainer(load_recipe(finetune, {**fresh_keys, "init_from": None}), dataset, tmp_path / "fresh")
    assert based.evaluate()["eval_loss"] < 0.5 * fresh.evaluate()["eval_loss"]
    result = train(load_recipe(finetune, short), dataset, tmp_path / "run")
    assert (result.model_dir / "model.safetensors").is_file() and _losses(result.run_dir)


def test_init_from_with_another_vocabulary_needs_reset_head(otf_run, corpus: Path, tmp_path: Path) -> None:
    recipe = load_recipe(TINY_RECIPE, {**SMALL, "init_from": str(otf_run.model_dir), "vocab": "data"})
    with pytest.raises(ValueError, match=r"another vocabulary.*--reset_head true"):
        build_trainer(recipe, corpus / "otf", tmp_path / "run")
    reset = {"init_from": str(otf_run.model_dir), "vocab": "data", "reset_head": True}
    recipe = load_recipe(TINY_RECIPE, {**SMALL, **reset})
    trainer, _ = build_trainer(recipe, corpus / "otf", tmp_path / "run")
    vocab = len(trainer.processing_class.tokenizer)
    assert trainer.model.lm_head.out_features == trainer.model.config.vocab_size == vocab < 96


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised Wav2Vec2ForCTC with its own (32-token) head, saved like a Hub checkpoint."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    config = Wav2Vec2Config(
        vocab_size=32,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32, 32),
        conv_kernel=(10, 8, 8),
        conv_stride=(5, 4, 4),  # 80 samples per frame: 200 frames per second
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        mask_time_prob=0.0,
    )
    folder = tmp_path_factory.mktemp("w2v") / "tiny-wav2vec2"
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True).save_pretrained(folder)
    return folder


def test_wav2vec2_fine_tunes_on_raw_audio_and_loads_in_the_pipeline(
    tiny_wav2vec2: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import Wav2Vec2ForCTC, pipeline

    import ai2text_hf  # noqa: F401  registers our tokenizer for the pipeline

    recipe = load_recipe(
        TINY_RECIPE,
        {**SMALL, "init_from": str(tiny_wav2vec2), "freeze_feature_encoder": True, "freeze_layers": 1,
         "learning_rate": 1e-3, "num_epochs": 2},
    )
    with caplog.at_level(logging.INFO, logger="ai2text_hf"):
        result = train(recipe, dataset_dir=corpus / "otf", output_dir=tmp_path / "run")
    assert "Output layer" in caplog.text and "32 outputs -> 96" in caplog.text
    losses = _losses(result.run_dir)
    assert losses and all(np.isfinite(losses))
    assert np.isfinite(result.best_metrics["cer"])  # an untrained head inserts characters: CER may exceed 1
    start = Wav2Vec2ForCTC.from_pretrained(tiny_wav2vec2).state_dict()
    tuned = Wav2Vec2ForCTC.from_pretrained(result.model_dir).state_dict()
    encoder = [name for name in start if "feature_extractor" in name or ".layers.0." in name]
    assert encoder and all(torch.equal(start[name], tuned[name]) for name in encoder), "frozen weights moved"
    assert not torch.equal(start["wav2vec2.encoder.layers.1.feed_forward.output_dense.weight"],
                           tuned["wav2vec2.encoder.layers.1.feed_forward.output_dense.weight"])
    assert tuned["lm_head.weight"].shape[0] == 96

    # Evaluation decodes exactly what the pipeline transcribes, one utterance per batch or padded together:
    # the valid CTC frames come from sample counts (Wav2Vec2's attention mask), so padding adds no characters.
    texts = {}
    for batch_seconds in (0.1, 400.0):
        again = {**SMALL, "init_from": str(result.model_dir), "eval_batch_seconds": batch_seconds}
        trainer, _ = build_trainer(load_recipe(TINY_RECIPE, again), corpus / "otf", tmp_path / "again")
        predictions = trainer.predict(trainer.eval_dataset).predictions
        texts[batch_seconds] = trainer.processing_class.batch_decode(np.where(predictions < 0, 0, predictions))
    assert texts[0.1] == texts[400.0] and any(texts[0.1])
    asr = pipeline("automatic-speech-recognition", model=str(result.model_dir))
    val = load_prepared(corpus / "otf")["val"]
    in_batch_order = np.argsort(val["duration"], kind="stable")  # evaluation batches sort by duration
    for index, text in zip(in_batch_order, texts[0.1]):
        assert asr(str(corpus / "corpus" / val[int(index)]["file_path"]))["text"] == text


def test_wav2vec2_on_a_features_dataset_says_to_prepare_on_the_fly(tiny_wav2vec2: Path, corpus: Path, tmp_path: Path):
    features = tmp_path / "features"
    prepare_dataset(corpus / "corpus" / "metadata.csv", features, progress=False)
    recipe = load_recipe(TINY_RECIPE, {**SMALL, "init_from": str(tiny_wav2vec2)})
    with pytest.raises(ValueError, match=r"Wav2Vec2ForCTC, which reads raw audio.*--on-the-fly"):
        build_trainer(recipe, features, tmp_path / "run")


@pytest.mark.slow
def test_streamed_training_runs_under_two_processes(corpus: Path, tmp_path: Path) -> None:
    """torchrun, 2 CPU processes (gloo): each reads its own shards of the stream and both reach max_steps."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(REPO / "scripts" / "train.py"),
        "--recipe", str(TINY_RECIPE), "--dataset", str(corpus / "corpus" / "metadata.csv"), "--output-dir", str(run),
        "--max_steps", "4", "--stream_buffer_size", "6", "--d_model", "48", "--num_encoder_layers", "1",
        "--logging_steps", "1", "--ddp_backend", "gloo", "--disable_tqdm", "true",
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(_losses(run)) == 4 and (run / "model" / "model.safetensors").is_file()
