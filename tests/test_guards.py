"""Guard rails: infinite per-utterance CTC losses named by id, all-blank predictions, overfitting, out of
memory — and early stopping, on short real training runs."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_RECIPE
from test_checkpoints import SMALL, _history
from transformers import TrainerState, TrainingArguments

from ai2text_hf.data.prepare import load_prepared
from ai2text_hf.training.guards import NonFiniteLossReport, OverfittingGuard, is_out_of_memory, utterance_ctc_losses
from ai2text_hf.training.recipe import load_recipe
from ai2text_hf.training.trainer import build_trainer, train

TOO_LONG = "một câu rất dài không khớp với âm thanh " * 12  # ~480 characters for ~2 s of audio


@pytest.fixture(scope="module")
def broken_dataset(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The small dataset with one train transcript far too long for its audio."""
    data = load_prepared(small_dataset)
    victim = str(data["train"][3]["id"])
    data["train"] = data["train"].map(lambda row: {"text": TOO_LONG if row["id"] == victim else row["text"]})
    out = tmp_path_factory.mktemp("broken") / "dataset"
    data.save_to_disk(str(out))
    for name in ("manifest.json", "report.json", "stats.json"):
        if (small_dataset / name).is_file():
            shutil.copy(small_dataset / name, out / name)
    return out, victim


@pytest.fixture(scope="module")
def stuck_run(broken_dataset: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A learning rate so high that the model collapses to blanks; early stopping with patience 2, 6 epochs."""
    overrides = {**SMALL, "learning_rate": 3e-2, "num_epochs": 6, "early_stopping": {"enabled": True, "patience": 2}}
    recipe = load_recipe(TINY_RECIPE, overrides)
    return train(recipe, broken_dataset[0], tmp_path_factory.mktemp("stuck") / "run").run_dir


def _log(run_dir: Path) -> str:
    return (run_dir / "logs" / "training.log").read_text(encoding="utf-8")


def test_infinite_ctc_loss_names_the_utterance_and_training_goes_on(
    stuck_run: Path, broken_dataset: tuple[Path, str]
) -> None:
    log = _log(stuck_run)
    assert f"CTC loss is infinite for utterance(s) {broken_dataset[1]}" in log
    assert log.count("CTC loss is infinite") == 1, "each utterance is reported once"
    losses = [e["loss"] for e in _history(stuck_run) if "loss" in e]
    assert all(loss == loss and loss != float("inf") for loss in losses)


def test_all_blank_predictions_are_flagged_after_the_first_evaluations(stuck_run: Path) -> None:
    evals = [e for e in _history(stuck_run) if "eval_empty_share" in e]
    assert all(e["eval_empty_share"] == 1.0 for e in evals)
    assert "Predictions are all blank after 3 evaluations" in _log(stuck_run)
    assert "learning_rate too high" in _log(stuck_run)


def test_early_stopping_ends_the_run_after_patience_evaluations_without_improvement(stuck_run: Path) -> None:
    evals = [e["epoch"] for e in _history(stuck_run) if "eval_cer" in e]
    assert evals == [1.0, 2.0, 3.0], evals  # CER 1.0 three times: best, then 2 without improvement


def test_out_of_memory_names_the_keys_to_change(small_dataset: Path, tmp_path: Path) -> None:
    trainer, _ = build_trainer(load_recipe(TINY_RECIPE, {**SMALL, "num_epochs": 1}), small_dataset, tmp_path / "run")

    def allocate_too_much(module, args):
        torch.empty(2**50, dtype=torch.uint8)  # a real allocation failure inside the training step

    trainer.model.register_forward_pre_hook(allocate_too_much)
    with pytest.raises(RuntimeError, match=r"Out of memory at step 0.*max_batch_seconds.*grad_accum_steps.*use_amp"):
        trainer.train()


def test_out_of_memory_is_recognised_from_the_cpu_allocator() -> None:
    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**50, dtype=torch.uint8)
    assert is_out_of_memory(caught.value)
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_impossible_alignment_is_zeroed_with_finite_gradients_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, requires_grad=True)
    labels = torch.tensor([[1, 2, -100, -100, -100, -100, -100, -100], [1, 2, 3, 4, 5, 1, 2, 3]])  # 8 labels, 5 frames
    losses, target_lengths, raw = utterance_ctc_losses(logits, torch.tensor([5, 5]), labels, blank=0)
    assert torch.isfinite(raw[0]) and torch.isinf(raw[1])
    assert losses[1] == 0 and target_lengths.tolist() == [2, 8]
    losses.sum().backward()
    assert torch.isfinite(logits.grad).all()
    report = NonFiniteLossReport()
    with caplog.at_level(logging.WARNING, logger="ai2text_hf.training"):
        report.check(raw, ["utt-a", "utt-b"], step=7)
        report.check(raw, ["utt-a", "utt-b"], step=8)
    assert "Step 7: CTC loss is infinite for utterance(s) utt-b" in caplog.text
    assert "Step 8" not in caplog.text


def test_overfitting_is_flagged_when_val_loss_rises_while_train_loss_falls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = TrainingArguments(output_dir=str(tmp_path), metric_for_best_model="cer", report_to="none")
    guard, state = OverfittingGuard(patience=2), TrainerState()
    with caplog.at_level(logging.WARNING, logger="ai2text_hf.training"):
        for train_loss, val_loss in [(2.0, 1.5), (1.5, 1.2), (1.0, 1.3)]:  # val falls, then rises once: fine
            state.log_history.append({"loss": train_loss})
            guard.on_evaluate(args, state, None, metrics={"eval_loss": val_loss})
        assert "Overfitting" not in caplog.text
        state.log_history.append({"loss": 0.7})
        guard.on_evaluate(args, state, None, metrics={"eval_loss": 1.4})
    assert "Overfitting: val loss rose from 1.200 to 1.400" in caplog.text and "early_stopping" in caplog.text


def test_trainer_loss_mixes_intermediate_ctc_like_the_model(small_dataset: Path, tmp_path: Path) -> None:
    """The trainer computes CTC per utterance (for the guards): with intermediate CTC it must train on the
    same mixture as the model's own loss, per label character."""
    overrides = {**SMALL, "num_encoder_layers": 2, "interctc_layers": [1], "interctc_weight": 0.25}
    recipe = load_recipe(TINY_RECIPE, {**overrides, "dropout": 0.0, "spec_augment": False})
    trainer, _ = build_trainer(recipe, small_dataset, tmp_path / "run")
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model.train()
    loss = trainer.compute_loss(model, batch)
    model.config.ctc_loss_reduction = "sum"
    inputs = {key: batch[key] for key in ("input_features", "attention_mask", "labels")}
    expected = model(**inputs).loss / (batch["labels"] >= 0).sum()
    torch.testing.assert_close(loss, expected)
    assert model.config.interctc_layers == [1] and model.conditioning is not None
