"""accelerate_configs/: each file parses with accelerate's own classes and resolves to its intended set-up;
the CPU one trains for real under `accelerate launch` (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType
from accelerate.utils.launch import prepare_simple_launcher_cmd_env
from conftest import REPO, TINY_RECIPE, TrainedModel

from ai2text_hf import modeling_ai2text
from ai2text_hf.training.arguments import resolve_hardware
from ai2text_hf.training.recipe import load_recipe

CONFIGS = REPO / "accelerate_configs"
# file -> (distributed type, mixed precision, processes, machines)
INTENDED = {
    "cpu": (DistributedType.NO, "no", 1, 1),
    "gpu-fp16": (DistributedType.NO, "fp16", 1, 1),
    "gpu-bf16": (DistributedType.NO, "bf16", 1, 1),
    "multi-gpu": (DistributedType.MULTI_GPU, "bf16", 2, 1),
    "multi-node": (DistributedType.MULTI_GPU, "bf16", 16, 2),
    "fsdp": (DistributedType.FSDP, "bf16", 2, 1),
    "deepspeed-zero2": (DistributedType.DEEPSPEED, "bf16", 2, 1),
}


def _launch_args(name: str):
    """What `accelerate launch --config_file accelerate_configs/NAME.yaml scripts/train.py` resolves to."""
    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(CONFIGS / f"{name}.yaml"), "scripts/train.py", "--recipe", "R"])
    args, _, _ = _validate_launch_command(args)
    return args


def test_every_shipped_config_is_pinned() -> None:
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == set(INTENDED)


@pytest.mark.parametrize("name", sorted(INTENDED))
def test_config_resolves_to_its_intended_setup(name: str) -> None:
    path = CONFIGS / f"{name}.yaml"
    text = path.read_text(encoding="utf-8").lower()
    assert "ran here" in text or "not run" in text, f"{path} must say where it ran (or that it did not)"
    config = load_config_from_file(str(path))
    distributed, precision, processes, machines = INTENDED[name]
    assert isinstance(config, ClusterConfig)
    assert (config.distributed_type, config.mixed_precision) == (distributed, precision)
    assert (config.num_processes, config.num_machines) == (processes, machines)
    args = _launch_args(name)
    assert args.mixed_precision == precision and args.num_processes == processes
    assert args.multi_gpu == (distributed == DistributedType.MULTI_GPU)
    assert args.use_fsdp == (distributed == DistributedType.FSDP)
    assert args.use_deepspeed == (distributed == DistributedType.DEEPSPEED)
    assert args.use_cpu == (name == "cpu")


def test_fsdp_wraps_blocks_the_model_defines() -> None:
    config = load_config_from_file(str(CONFIGS / "fsdp.yaml"))
    assert config.fsdp_config["fsdp_version"] == 2
    for cls in config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","):
        assert cls in modeling_ai2text.AI2TextPreTrainedModel._no_split_modules and hasattr(modeling_ai2text, cls)


def test_deepspeed_config_is_zero2_with_values_left_to_the_trainer() -> None:
    config = load_config_from_file(str(CONFIGS / "deepspeed-zero2.yaml"))
    ds_file = REPO / config.deepspeed_config["deepspeed_config_file"]
    ds = json.loads(ds_file.read_text(encoding="utf-8"))
    assert ds["zero_optimization"]["stage"] == 2
    for key in ("gradient_accumulation_steps", "gradient_clipping", "train_micro_batch_size_per_gpu"):
        assert ds[key] == "auto", f"{key} must come from the recipe through the Trainer"


@pytest.mark.parametrize("name", ["cpu", "gpu-fp16", "gpu-bf16"])
def test_launcher_precision_reaches_the_run_and_beats_the_recipe(name: str) -> None:
    _, environment = prepare_simple_launcher_cmd_env(_launch_args(name))
    recipe = load_recipe(TINY_RECIPE, {"use_amp": True, "amp_dtype": "fp16"})
    hardware = resolve_hardware(recipe, environ=environment)
    precision = INTENDED[name][1]
    assert hardware.precision == precision
    assert any("the launcher wins" in note for note in hardware.notes) == (precision != "fp16")
    if name == "cpu":
        assert hardware.device == "cpu"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "recipe_flags", "precision", "note"),
    [
        ([], ["--use-amp"], "no", "accelerate launch sets mixed precision 'no' but the recipe asks for 'fp16'"),
        (["--mixed_precision", "bf16"], [], "bf16", "accelerate launch sets mixed precision 'bf16' but the recipe"),
    ],
    ids=["config-beats-recipe-amp", "bf16-launcher-beats-recipe-fp32"],
)
def test_accelerate_launch_cpu_config_trains(
    trained_model: TrainedModel, tmp_path: Path, launcher: list[str], recipe_flags: list[str], precision: str, note: str
) -> None:
    """A real `accelerate launch` of scripts/train.py with the guide's flags: a few steps in the launcher's
    precision (bf16 autocast runs on the CPU too), and the run says the launcher won."""
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "cpu.yaml"), *launcher,
        str(REPO / "scripts" / "train.py"), "--config", str(TINY_RECIPE), "--dataset", str(trained_model.dataset_dir),
        "--checkpoint_dir", str(run), "--num_epochs", "1", "--max_steps", "3", "--disable_tqdm", "--multi_gpu",
        *recipe_flags,
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--multi_gpu: training on several GPUs takes a launcher" in result.stderr
    log = (run / "logs" / "training.log").read_text(encoding="utf-8")
    assert note in log and "the launcher wins" in log
    assert "Preflight: device CPU" in log
    saved = json.loads((run / "hyperparameters.json").read_text(encoding="utf-8"))
    assert saved["resolved"]["precision"] == precision
    assert saved["training_arguments"]["bf16"] is (precision == "bf16")
    assert (run / "model" / "config.json").is_file()


def test_the_guides_flags_map_onto_recipe_keys() -> None:
    from ai2text_hf.cli import build_parser
    from ai2text_hf.training.recipe import parse_overrides

    guide = ["--config", str(TINY_RECIPE), "--num_epochs", "3", "--batch_size", "8", "--learning_rate", "1e-3",
             "--checkpoint_dir", "runs/x", "--resume", "latest", "--pretrained_model", "runs/demo/model",
             "--d_model", "64", "--multi_gpu"]  # fmt: skip
    args, extra = build_parser().parse_known_args(["train", *guide])
    assert (args.recipe, args.resume, args.multi_gpu) == (str(TINY_RECIPE), "latest", True)
    recipe = load_recipe(args.recipe, parse_overrides(extra))
    assert (recipe.num_epochs, recipe.batch_size, recipe.learning_rate, recipe.d_model) == (3, 8, 1e-3, 64)
    assert (recipe.output_dir, recipe.init_from) == ("runs/x", "runs/demo/model")
