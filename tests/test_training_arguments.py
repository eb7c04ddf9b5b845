"""From recipe and command line to TrainingArguments: flags, device and precision, warmup, W&B."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import torch
from conftest import TINY_RECIPE, TrainedModel

from ai2text_hf.training import arguments
from ai2text_hf.training.arguments import (
    optimizer_steps_per_epoch,
    recipe_arguments,
    resolve_hardware,
    warmup_steps,
)
from ai2text_hf.training.recipe import RecipeError, load_recipe, parse_overrides
from ai2text_hf.training.tracking import flatten, report_to
from ai2text_hf.training.trainer import build_model, build_tokenizer

requires_no_accelerator = pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(), reason="pins the CPU-only resolution"
)


def test_a_boolean_key_alone_on_the_command_line_means_true() -> None:
    overrides = parse_overrides(["--reset-head", "--num_epochs", "3", "--augmentation.enabled", "--disable_tqdm"])
    assert overrides == {"reset_head": True, "num_epochs": 3, "augmentation.enabled": True, "disable_tqdm": True}
    recipe = load_recipe(TINY_RECIPE, overrides)
    assert recipe.reset_head and recipe.augmentation.enabled and recipe.training_args == {"disable_tqdm": True}
    for needs_value in (["--learning_rate"], ["--augmentation.noise_prob"], ["--dataset"]):
        with pytest.raises(RecipeError, match="needs a value"):
            parse_overrides(needs_value)


def test_unknown_lr_scheduler_names_the_closest() -> None:
    with pytest.raises(RecipeError, match=r"lr_scheduler 'cosin' is unknown.*Did you mean 'cosine'\?"):
        load_recipe(TINY_RECIPE, {"lr_scheduler": "cosin"})
    assert load_recipe(TINY_RECIPE, {"lr_scheduler": "noam"}).lr_scheduler == "noam"


def test_recipe_keys_map_onto_training_arguments() -> None:
    recipe = load_recipe(TINY_RECIPE, {"grad_clip": 0.5, "grad_accum_steps": 4, "num_epochs": 7})
    arguments = recipe_arguments(recipe)
    assert arguments["max_grad_norm"] == 0.5
    assert arguments["gradient_accumulation_steps"] == 4
    assert arguments["num_train_epochs"] == 7
    assert arguments["learning_rate"] == recipe.learning_rate


def test_warmup_epochs_become_optimizer_steps() -> None:
    # 100 global batches, 2 processes, accumulation 2: 25 optimizer steps per epoch.
    steps = optimizer_steps_per_epoch(100, grad_accum_steps=2, num_processes=2)
    assert steps == 25
    assert warmup_steps(load_recipe(TINY_RECIPE, {"warmup_epochs": 1.5}), steps) == 38
    assert warmup_steps(load_recipe(TINY_RECIPE, {"warmup_steps": 0.2}), steps) == 0.2  # a share, left to the Trainer


@requires_no_accelerator
def test_auto_device_on_this_machine_is_the_cpu_and_amp_is_dropped_with_a_note() -> None:
    hardware = resolve_hardware(load_recipe(TINY_RECIPE, {"use_amp": True, "pin_memory": True}), environ={})
    assert (hardware.device, hardware.precision) == ("cpu", "no")
    assert "mixed precision applies on CUDA GPUs only" in hardware.notes[0]
    arguments = hardware.training_arguments(load_recipe(TINY_RECIPE, {"pin_memory": True, "num_workers": 2}))
    assert arguments == {
        "use_cpu": True,
        "fp16": False,
        "bf16": False,
        "dataloader_num_workers": 2,
        "dataloader_pin_memory": False,
    }
    assert resolve_hardware(load_recipe(TINY_RECIPE), environ={}).notes == []


@requires_no_accelerator
@pytest.mark.parametrize("has_bf16", [True, False])
def test_bf16_on_the_cpu_is_used_exactly_when_the_cpu_has_bf16_instructions(
    has_bf16: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arguments, "cpu_has_bf16", lambda: has_bf16)
    recipe = load_recipe(TINY_RECIPE, {"use_amp": True, "amp_dtype": "bf16"})
    hardware = resolve_hardware(recipe, environ={})
    assert (hardware.device, hardware.precision) == ("cpu", "bf16" if has_bf16 else "no")
    assert hardware.training_arguments(recipe)["bf16"] is has_bf16
    if has_bf16:
        assert hardware.notes == []
    else:
        assert "without bfloat16 instructions (AVX512-BF16 or AMX)" in hardware.notes[0]
        assert "trains in float32" in hardware.notes[0]
    fp16 = resolve_hardware(load_recipe(TINY_RECIPE, {"use_amp": True, "amp_dtype": "fp16"}), environ={})
    assert fp16.precision == "no" and "fp16 mixed precision applies on CUDA GPUs only" in fp16.notes[0]


@requires_no_accelerator
def test_asking_for_a_missing_device_is_a_clear_error() -> None:
    with pytest.raises(RecipeError, match=r"device=cuda, but PyTorch sees no CUDA device.*--device auto"):
        resolve_hardware(load_recipe(TINY_RECIPE, {"device": "cuda"}), environ={})


def test_accelerate_launch_precision_wins_over_the_recipe_and_says_so() -> None:
    recipe = load_recipe(TINY_RECIPE, {"use_amp": True, "amp_dtype": "fp16"})
    hardware = resolve_hardware(recipe, environ={"ACCELERATE_MIXED_PRECISION": "bf16", "ACCELERATE_USE_CPU": "true"})
    assert (hardware.device, hardware.precision) == ("cpu", "bf16")
    assert hardware.training_arguments(recipe)["bf16"] is True
    assert any("launcher wins" in note and "'bf16'" in note and "'fp16'" in note for note in hardware.notes)
    agreeing = resolve_hardware(load_recipe(TINY_RECIPE), environ={"ACCELERATE_MIXED_PRECISION": "no"})
    assert agreeing.precision == "no" and agreeing.notes == []


def test_wandb_enabled_without_wandb_installed_says_how_to_fix() -> None:
    recipe = load_recipe(TINY_RECIPE, {"wandb.enabled": True})
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(RecipeError, match=r"wandb is not installed: `pip install wandb`.*--wandb.enabled false"):
        report_to(recipe.wandb)
    assert report_to(load_recipe(TINY_RECIPE).wandb) == []


def test_recipe_flattens_to_tensorboard_hparam_values() -> None:
    flat = flatten(load_recipe(TINY_RECIPE, {"augmentation.noise_prob": 0.3}).to_dict())
    assert flat["augmentation.noise_prob"] == 0.3
    assert flat["d_model"] == 96
    assert flat["batch_size"] == "None" and flat["augmentation.codecs"].startswith("[")
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())


PRESETS = ["cpu-weak", "gpu-gtx1060", "gpu-rtx3090", "conformer-medium"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_builds_the_model_size_its_comment_states(name: str) -> None:
    path = TINY_RECIPE.parent / f"{name}.yaml"
    stated = re.search(r"([\d.]+) M parameters", path.read_text(encoding="utf-8"))
    assert stated, f"{path} does not state its parameter count"
    recipe = load_recipe(path)
    tokenizer = build_tokenizer(recipe, [])
    model = build_model(recipe, tokenizer)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(millions, 2) == float(stated.group(1))
    if name == "conformer-medium":
        assert 10 <= millions <= 30


def test_recipe_and_hyperparameters_reach_tensorboard(trained_model: TrainedModel) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = sorted((trained_model.run_dir / "logs").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file in logs/"
    accumulator = EventAccumulator(str(events[-1]), size_guidance={"tensors": 0})
    accumulator.Reload()
    recipe_text = accumulator.Tensors("recipe/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "d_model: 96" in recipe_text and "augmentation:" in recipe_text
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["d_model"].number_value == 96
    assert hparams["resolved.device"].string_value == "cpu"
    assert hparams["augmentation.noise_prob"].number_value == pytest.approx(0.5)
    assert "eval/cer" in accumulator.Tags()["scalars"]

    saved = json.loads((trained_model.run_dir / "hyperparameters.json").read_text(encoding="utf-8"))
    assert saved["resolved"]["device"] == "cpu" and saved["resolved"]["precision"] == "no"
    assert saved["training_arguments"]["num_train_epochs"] == 30  # the fixture's override, as the Trainer saw it
