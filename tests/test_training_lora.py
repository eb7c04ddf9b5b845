"""Fine-tuning pretrained encoders: LoRA adapters (peft), per-group learning rates and configuration overrides,
on tiny randomly initialised models built on the spot (a Wav2Vec2ForCTC and ours)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_RECIPE
from safetensors.torch import load_file
from test_checkpoints import SMALL
from test_training_data import corpus, tiny_wav2vec2  # noqa: F401  fixtures
from transformers import AutoModelForCTC, AutoTokenizer

from ai2text_hf.cli import main
from ai2text_hf.configuration_ai2text import AI2TextConfig
from ai2text_hf.modeling_ai2text import AI2TextForCTC
from ai2text_hf.processing_ai2text import AI2TextProcessor
from ai2text_hf.tokenization_ai2text import AI2TextTokenizer
from ai2text_hf.training.checkpoints import complete_checkpoints
from ai2text_hf.training.initial_model import recipe_feature_extractor
from ai2text_hf.training.recipe import RecipeError, load_recipe
from ai2text_hf.training.trainer import build_trainer, train

peft = pytest.importorskip("peft")

W2V_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _adapted(base: Path, adapter: Path) -> torch.nn.Module:
    """The adapter on its base as a user would put it back: the base with an output layer of the adapter's
    vocabulary (its trained weights are in the adapter), then peft's loader."""
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    model = AutoModelForCTC.from_pretrained(base, vocab_size=len(tokenizer), ignore_mismatched_sizes=True)
    return peft.PeftModel.from_pretrained(model, adapter).eval()


@pytest.fixture(scope="module")
def lora_run(tiny_wav2vec2: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    run = tmp_path_factory.mktemp("lora") / "run"
    argv = [
        "train", "--recipe", str(TINY_RECIPE), "--dataset", str(corpus / "otf"), "--output-dir", str(run),
        "--init_from", str(tiny_wav2vec2), "--lora_rank", "4", "--num_epochs", "2", "--max_batch_seconds", "20",
        "--learning_rate", "1e-2", "--logging_steps", "1", "--disable_tqdm",
    ]  # fmt: skip
    assert main(argv) == 0
    return run


def test_lora_trains_only_the_adapters_and_the_output_layer(lora_run: Path, tiny_wav2vec2: Path) -> None:  # noqa: F811
    adapter = load_file(lora_run / "adapter" / "adapter_model.safetensors")
    assert adapter and all("lora_" in name or ".lm_head." in name for name in adapter), sorted(adapter)
    base, merged = load_file(tiny_wav2vec2 / "model.safetensors"), load_file(lora_run / "model" / "model.safetensors")
    assert merged.keys() == base.keys()
    changed = {name for name, old in base.items() if old.shape != merged[name].shape or not old.equal(merged[name])}
    assert {"lm_head.weight", "lm_head.bias"} <= changed
    assert any(".attention.q_proj." in name for name in changed), "the adapters trained"
    assert all(name.startswith("lm_head.") or name.rsplit(".", 2)[-2] in W2V_TARGETS for name in changed), changed
    checkpoint = complete_checkpoints(lora_run / "checkpoints")[-1]
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (checkpoint / "model.safetensors").exists()


def test_the_merged_model_and_the_adapter_on_its_base_give_the_same_logits(
    lora_run: Path,
    tiny_wav2vec2: Path,  # noqa: F811
) -> None:
    config = json.loads((lora_run / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert Path(config["base_model_name_or_path"]) == tiny_wav2vec2
    merged = AutoModelForCTC.from_pretrained(lora_run / "model").eval()
    adapted = _adapted(tiny_wav2vec2, lora_run / "adapter")
    audio = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(adapted(input_values=audio).logits, merged(input_values=audio).logits)


def test_a_killed_lora_run_resumes_from_its_adapter_checkpoint(lora_run: Path, corpus: Path, tmp_path: Path) -> None:  # noqa: F811
    """The run stopped after its first epoch (the later outputs removed) and continued with --resume latest ends
    with the adapter of the uninterrupted run."""
    run = Path(shutil.copytree(lora_run, tmp_path / "run"))
    for name in ("model", "adapter"):
        shutil.rmtree(run / name)
    shutil.rmtree(complete_checkpoints(run / "checkpoints")[-1])
    recipe = load_recipe(run / "recipe.yaml")
    train(recipe, dataset_dir=corpus / "otf", output_dir=run, resume="latest")
    resumed = load_file(run / "adapter" / "adapter_model.safetensors")
    uninterrupted = load_file(lora_run / "adapter" / "adapter_model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in resumed.items():
        torch.testing.assert_close(tensor, uninterrupted[name], rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def our_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised model of ours, saved with its processor like a run's model folder."""
    recipe = load_recipe(TINY_RECIPE, SMALL)
    tokenizer = AI2TextTokenizer()
    folder = tmp_path_factory.mktemp("ours") / "base"
    torch.manual_seed(0)
    AI2TextForCTC(recipe.model_config(len(tokenizer), tokenizer.pad_token_id)).save_pretrained(folder)
    AI2TextProcessor(feature_extractor=recipe_feature_extractor(recipe), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_lora_on_our_model_adapts_its_attention_and_merges(our_base: Path, small_dataset: Path, tmp_path: Path) -> None:
    recipe = load_recipe(TINY_RECIPE, {**SMALL, "init_from": str(our_base), "lora_rank": 2, "num_epochs": 1})
    result = train(recipe, small_dataset, tmp_path / "run")
    adapter = load_file(result.run_dir / "adapter" / "adapter_model.safetensors")
    assert any(".attn.qkv.lora_A" in name for name in adapter) and any(".attn.out.lora_B" in name for name in adapter)
    merged = AI2TextForCTC.from_pretrained(result.model_dir).eval()
    adapted = _adapted(our_base, result.run_dir / "adapter")
    features = torch.randn(1, 120, AI2TextConfig.from_pretrained(our_base).n_mels)
    mask = torch.ones(1, 120, dtype=torch.long)
    with torch.no_grad():
        expected = merged(input_features=features, attention_mask=mask).logits
        torch.testing.assert_close(adapted(input_features=features, attention_mask=mask).logits, expected)


def test_head_and_layer_learning_rates_split_the_optimizer_groups(
    tiny_wav2vec2: Path,  # noqa: F811
    corpus: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    overrides = {
        **SMALL, "init_from": str(tiny_wav2vec2), "learning_rate": 1e-3, "head_learning_rate": 5e-3,
        "layerwise_lr_decay": 0.5, "freeze_feature_encoder": True,
    }  # fmt: skip
    trainer, _ = build_trainer(load_recipe(TINY_RECIPE, overrides), corpus / "otf", tmp_path / "run")
    optimizer = trainer.create_optimizer()
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    model = trainer.model
    layers = model.wav2vec2.encoder.layers
    assert {rate[id(p)] for p in model.lm_head.parameters()} == {5e-3}
    assert {rate[id(p)] for p in layers[1].parameters()} == {1e-3}  # the top layer: the full rate
    assert {rate[id(p)] for p in layers[0].parameters()} == {5e-4}
    assert {rate[id(p)] for p in model.wav2vec2.feature_projection.parameters()} == {2.5e-4}  # below the layers
    assert not any(id(p) in rate for p in model.wav2vec2.feature_extractor.parameters())  # frozen: not optimised
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(rate)


def test_config_overrides_reach_the_model_and_unknown_values_are_refused(
    tiny_wav2vec2: Path,  # noqa: F811
    corpus: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    overrides = {**SMALL, "init_from": str(tiny_wav2vec2)}
    recipe = load_recipe(TINY_RECIPE, {**overrides, "config_overrides.mask_time_prob": 0.3, "config_overrides": {
        "layerdrop": 0.0, "hidden_dropout": 0.2}})  # fmt: skip
    assert recipe.config_overrides == {"mask_time_prob": 0.3, "layerdrop": 0.0, "hidden_dropout": 0.2}
    trainer, _ = build_trainer(recipe, corpus / "otf", tmp_path / "run")
    config = trainer.model.config
    assert (config.mask_time_prob, config.layerdrop, config.hidden_dropout) == (0.3, 0.0, 0.2)
    assert trainer.model.wav2vec2.encoder.layers[0].dropout.p == 0.2  # set before the model was built
    typo = load_recipe(TINY_RECIPE, {**overrides, "config_overrides": {"mask_time_prop": 0.3}})
    with pytest.raises(ValueError, match=r"config_overrides.mask_time_prop: Wav2Vec2Config.*'mask_time_prob'"):
        build_trainer(typo, corpus / "otf", tmp_path / "typo")


def test_fine_tuning_keys_are_checked(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="lora_rank adapts a trained model: set init_from"):
        load_recipe(TINY_RECIPE, {"lora_rank": 8})
    with pytest.raises(RecipeError, match="ema.enabled false or lora_rank 0"):
        load_recipe(TINY_RECIPE, {"lora_rank": 8, "init_from": "runs/demo/model", "ema": {"enabled": True}})
    with pytest.raises(RecipeError, match="layerwise_lr_decay must be at most 1"):
        load_recipe(TINY_RECIPE, {"layerwise_lr_decay": 1.5})
    with pytest.raises(RecipeError, match="config_overrides changes the configuration of the init_from model"):
        load_recipe(TINY_RECIPE, {"config_overrides": {"layerdrop": 0.1}})


def _tiny_w2v_bert(folder: Path) -> Path:
    """A randomly initialised Wav2Vec2BertForCTC with its SeamlessM4T filterbank front end."""
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertForCTC

    config = Wav2Vec2BertConfig(
        vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        output_hidden_size=32, conv_depthwise_kernel_size=3, num_adapter_layers=1, adapter_kernel_size=3,
    )  # fmt: skip
    torch.manual_seed(0)
    Wav2Vec2BertForCTC(config).save_pretrained(folder)
    SeamlessM4TFeatureExtractor().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", ["xlsr-300m-gpu", "w2v-bert-2.0-gpu"])
def test_gpu_recipes_fine_tune_a_tiny_model_of_their_family(
    name: str,
    tiny_wav2vec2: Path,  # noqa: F811
    corpus: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Every key of the recipe as shipped, on a tiny model of its family, for two steps on the CPU (the speed and
    quality on a GPU stay unmeasured)."""
    base = tiny_wav2vec2 if name.startswith("xlsr") else _tiny_w2v_bert(tmp_path / "w2v-bert")
    path = TINY_RECIPE.parent / f"{name}.yaml"
    assert "UNMEASURED" in path.read_text(encoding="utf-8")
    overrides = {"init_from": str(base), "max_steps": 2, "use_amp": False, "warmup_steps": 0, "disable_tqdm": True}
    result = train(load_recipe(path, overrides), corpus / "otf", tmp_path / "run")
    model = AutoModelForCTC.from_pretrained(result.model_dir)
    shipped = load_recipe(path).config_overrides
    assert {key: getattr(model.config, key) for key in shipped} == shipped
