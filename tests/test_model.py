"""The model, its feature extractor and the saved folder, on tiny random models (seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CODE_FILES
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForCTC,
    AutoProcessor,
    AutoTokenizer,
    pipeline,
)

import ai2text_hf
from ai2text_hf import (
    AI2TextConfig,
    AI2TextFeatureExtractor,
    AI2TextForCTC,
    AI2TextProcessor,
    AI2TextTokenizer,
    modeling_ai2text,
)

SR = 16000


def _config(**overrides) -> AI2TextConfig:
    options = dict(
        vocab_size=96,
        d_model=32,
        num_encoder_layers=2,
        num_heads=2,
        d_ff=64,
        subsampling_channels=8,
        conv_kernel_size=7,
        dropout=0.0,
        apply_spec_augment=False,
    )
    options.update(overrides)
    return AI2TextConfig(**options)


def _model(seed: int = 0, **overrides) -> AI2TextForCTC:
    torch.manual_seed(seed)
    return AI2TextForCTC(_config(**overrides)).eval()


def _waves(*seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Noisy tones of the given lengths: different content per utterance, deterministic."""
    rng = np.random.default_rng(seed)
    waves = []
    for index, length in enumerate(seconds):
        t = np.arange(int(length * SR)) / SR
        wave = 0.3 * np.sin(2 * np.pi * (180 + 70 * index) * t) + 0.05 * rng.standard_normal(t.size)
        waves.append(wave.astype(np.float32))
    return waves


def _features(waves: list[np.ndarray]) -> dict[str, torch.Tensor]:
    out = AI2TextFeatureExtractor()(waves, sampling_rate=SR, return_tensors="pt")
    return {"input_features": out["input_features"], "attention_mask": out["attention_mask"]}


def _save_folder(model: AI2TextForCTC, folder: Path) -> Path:
    model.save_pretrained(folder)
    AI2TextProcessor(feature_extractor=AI2TextFeatureExtractor(), tokenizer=AI2TextTokenizer()).save_pretrained(folder)
    return folder


def test_save_load_round_trip_gives_identical_logits(tmp_path: Path) -> None:
    model = _model(block_type="conformer")
    inputs = _features(_waves(1.3))
    with torch.no_grad():
        before = model(**inputs).logits
    model.save_pretrained(tmp_path)
    loaded = AI2TextForCTC.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        after = loaded(**inputs).logits
    assert loaded.config.to_diff_dict() | {"_name_or_path": ""} == model.config.to_diff_dict() | {"_name_or_path": ""}
    torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize(
    "options",
    [
        {"block_type": "conformer"},
        {"block_type": "transformer"},
        {"block_type": "conformer", "num_encoder_layers": 3, "interctc_layers": [1, 2]},  # self-conditioned
    ],
)
def test_padded_batch_gives_each_utterance_its_own_logits(options: dict) -> None:
    model = _model(**options)
    waves = _waves(0.55, 3.1, 1.7)  # really different lengths: most of the short one is padding
    batch = _features(waves)
    with torch.no_grad():
        batched = model(**batch).logits
        lengths = model._get_feat_extract_output_lengths(batch["attention_mask"].sum(-1))
        for index, wave in enumerate(waves):
            alone = model(**_features([wave])).logits[0]
            assert alone.shape[0] == lengths[index]
            torch.testing.assert_close(batched[index, : lengths[index]], alone, rtol=1e-5, atol=1e-5)
            # Padding frames are certain blanks, so decoding every frame of the batch adds nothing.
            assert (batched[index, lengths[index] :].argmax(-1) == model.config.pad_token_id).all()


@pytest.mark.parametrize("subsampling_factor", [2, 4, 8])
def test_inputs_to_logits_ratio_matches_the_logit_rate(subsampling_factor: int) -> None:
    config = _config(subsampling_factor=subsampling_factor, hop_length=160)
    assert config.inputs_to_logits_ratio == config.hop_length * subsampling_factor
    model = _model(subsampling_factor=subsampling_factor)
    extractor = AI2TextFeatureExtractor()
    ratio = model.config.inputs_to_logits_ratio
    for samples in (1, 399, 4000, 16000, 16001, 33333, 48000):
        inputs = extractor(np.zeros(samples, dtype=np.float32), sampling_rate=SR, return_tensors="pt")
        with torch.no_grad():
            frames = model(input_features=inputs["input_features"]).logits.shape[1]
        assert abs(frames - round(samples / ratio)) <= 1, (samples, frames, ratio)


def test_config_ignores_a_stored_inputs_to_logits_ratio() -> None:
    config = AI2TextConfig(hop_length=160, subsampling_factor=4, inputs_to_logits_ratio=123)
    assert config.inputs_to_logits_ratio == 640


def test_ctc_loss_with_padded_labels_is_finite_and_backpropagates() -> None:
    model = _model().train()
    batch = _features(_waves(1.0, 2.2))
    labels = torch.full((2, 12), -100, dtype=torch.long)
    labels[0, :5] = torch.tensor([5, 6, 2, 7, 8])
    labels[1, :12] = torch.arange(3, 15)
    out = model(**batch, labels=labels)
    assert out.loss is not None and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize(("stride", "groups"), [(1, 16), (2, 1)])
def test_convolution_over_time_matches_the_conv1d_module(stride: int, groups: int) -> None:
    """The depthwise and pitch convs run as channels-last 2-D convs: same weights, same values as Conv1d."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(16, 16, kernel_size=7, stride=stride, padding=3, groups=groups)
    x = torch.randn(3, 41, 20)[..., 2:18]  # (batch, time, channels), a non-contiguous slice as in the model
    expected = conv(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(modeling_ai2text._conv_over_time(conv, x), expected, rtol=1e-5, atol=1e-6)


def test_cpu_bf16_autocast_keeps_attention_and_convolutions_in_float32() -> None:
    """Under CPU bf16 autocast the matrix products run in bf16, attention and convolutions in float32 (their
    bf16 gradients are slower than float32 on CPUs), and the model still trains."""
    model = _model().train()
    batch = _features(_waves(1.0, 1.6))
    labels = torch.tensor([[5, 6, 2, 7, -100], [3, 4, 5, 2, 6]])
    seen: dict[str, set[torch.dtype]] = {}

    class RecordDtypes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()}
            seen.setdefault(name, set()).update(dtypes)
            return func(*args, **(kwargs or {}))

    with torch.autocast("cpu", dtype=torch.bfloat16), RecordDtypes():
        loss = model(**batch, labels=labels).loss
    loss.backward()
    attention = [name for name in seen if "scaled_dot_product" in name]
    assert attention and all(seen[name] == {torch.float32} for name in attention)
    assert seen["convolution"] == {torch.float32}
    assert torch.bfloat16 in seen["addmm"]
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        reference = model(**batch, labels=labels).loss
    assert float(loss.detach()) == pytest.approx(float(reference), rel=0.05)


def test_intermediate_ctc_mixes_its_losses_into_the_training_loss() -> None:
    model = _model(num_encoder_layers=3, interctc_layers=[1, 2], interctc_weight=0.4).train()
    batch = _features(_waves(1.0, 1.6))
    labels = torch.tensor([[5, 6, 2, 7, -100], [3, 4, 5, 2, 6]])
    out = model(**batch, labels=labels)
    assert len(out.intermediate_logits) == 2
    assert out.intermediate_logits[0].shape == out.logits.shape
    lengths = model._get_feat_extract_output_lengths(batch["attention_mask"].sum(-1))
    single = [model._ctc_loss(logits, lengths, labels) for logits in out.intermediate_logits]
    expected = 0.6 * model._ctc_loss(out.logits, lengths, labels) + 0.4 * (single[0] + single[1]) / 2
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.conditioning.weight.grad.abs().sum() > 0  # the predictions are fed back, and that layer learns
    model.eval()
    with torch.no_grad():
        assert model(**batch).intermediate_logits is None  # inference returns the final logits only


def test_self_conditioning_feeds_the_intermediate_prediction_back() -> None:
    conditioned = _model(num_encoder_layers=3, interctc_layers=[1])
    plain = _model(num_encoder_layers=3, interctc_layers=[1], self_conditioning=False)
    assert plain.conditioning is None
    plain.load_state_dict(conditioned.state_dict(), strict=False)
    inputs = _features(_waves(1.2))
    with torch.no_grad():
        torch.nn.init.normal_(conditioned.conditioning.weight, std=1.0)
        assert not torch.allclose(conditioned(**inputs).logits, plain(**inputs).logits, atol=1e-3)
        conditioned.conditioning.weight.zero_()
        conditioned.conditioning.bias.zero_()
        torch.testing.assert_close(conditioned(**inputs).logits, plain(**inputs).logits)


@pytest.mark.parametrize("layers", [[0], [3], [4]])
def test_intermediate_ctc_layer_must_be_below_the_last_block(layers: list[int]) -> None:
    with pytest.raises(ValueError, match="interctc_layers must name blocks 1 to 2"):
        _config(num_encoder_layers=3, interctc_layers=layers)


def test_label_outside_the_vocabulary_is_refused() -> None:
    model = _model()
    with pytest.raises(ValueError, match="vocab_size"):
        model(**_features(_waves(1.0)), labels=torch.tensor([[3, 96]]))


def test_spec_augment_only_acts_in_training_mode() -> None:
    model = _model(apply_spec_augment=True, num_time_masks=5, time_mask_max_ratio=0.1)
    inputs = _features(_waves(2.0))
    with torch.no_grad():
        first = model(**inputs).logits
        second = model(**inputs).logits
        torch.testing.assert_close(first, second, rtol=0, atol=0)  # eval: deterministic, no masks
        model.train()  # dropout is 0, so SpecAugment is the only randomness left
        torch.manual_seed(1)
        augmented = model(**inputs).logits
    assert not torch.allclose(augmented, first, atol=1e-4)
    model.config.apply_spec_augment = False
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, first, rtol=1e-5, atol=1e-5)


def _loss_and_grads(model: AI2TextForCTC, batch: dict, labels: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad()
    loss = model(**batch, labels=labels).loss
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("block_type", ["conformer", "transformer"])
def test_gradient_checkpointing_trains_with_the_same_loss(block_type: str) -> None:
    model = _model(block_type=block_type).train()
    batch = _features(_waves(1.2, 2.0))
    labels = torch.tensor([[5, 6, 2, 7, -100, -100], [3, 4, 5, 2, 6, 7]])
    loss, grads = _loss_and_grads(model, batch, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated alias of activation_checkpointing_enable
        model.gradient_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.layers)
    checkpointed_loss, checkpointed_grads = _loss_and_grads(model, batch, labels)
    assert checkpointed_loss == pytest.approx(loss, rel=1e-6)
    for grad, checkpointed in zip(grads, checkpointed_grads):
        torch.testing.assert_close(checkpointed, grad, rtol=1e-4, atol=1e-6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    optimizer.step()
    with torch.no_grad():
        assert float(model(**batch, labels=labels).loss) < checkpointed_loss


def test_pipeline_batch_of_different_lengths_matches_one_by_one(tmp_path: Path) -> None:
    """The ASR pipeline decodes padded frames too: they must not become characters."""
    folder = _save_folder(_model(seed=5), tmp_path / "model")
    asr = pipeline("automatic-speech-recognition", model=str(folder))
    waves = _waves(0.6, 2.5, 1.1, seed=1)
    one_by_one = [asr(wave.copy())["text"] for wave in waves]
    assert [out["text"] for out in asr([wave.copy() for wave in waves], batch_size=3)] == one_by_one


def test_feature_extractor_refuses_a_wrong_sampling_rate() -> None:
    extractor = AI2TextFeatureExtractor()
    with pytest.raises(ValueError, match=r"8000 Hz.*expects 16000 Hz.*[Rr]esample"):
        extractor(_waves(1.0)[0], sampling_rate=8000)


def test_feature_extractor_refuses_empty_audio() -> None:
    with pytest.raises(ValueError, match="empty"):
        AI2TextFeatureExtractor()([np.zeros(SR, np.float32), np.zeros(0, np.float32)], sampling_rate=SR)


def test_feature_extractor_takes_read_only_buffers_without_warning() -> None:
    """The ASR pipeline decodes files into ``np.frombuffer`` arrays, which are read-only."""
    audio = _waves(1.0)[0]
    read_only = np.frombuffer(audio.tobytes(), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        features = AI2TextFeatureExtractor()(read_only, sampling_rate=SR)["input_features"]
    np.testing.assert_array_equal(features, AI2TextFeatureExtractor()(audio, sampling_rate=SR)["input_features"])


def test_feature_extractor_padded_batch_equals_one_by_one() -> None:
    extractor = AI2TextFeatureExtractor()
    waves = _waves(0.4, 2.9, 1.33)
    batch = extractor(waves, sampling_rate=SR)
    unpadded = extractor(waves, sampling_rate=SR, padding=False)["input_features"]
    for index, wave in enumerate(waves):
        alone = extractor(wave, sampling_rate=SR)["input_features"][0]
        frames = int(batch["attention_mask"][index].sum())
        assert frames == alone.shape[0] == extractor.num_frames(len(wave))
        np.testing.assert_allclose(batch["input_features"][index, :frames], alone, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(unpadded[index], alone, rtol=1e-5, atol=1e-5)
        assert (batch["input_features"][index, frames:] == extractor.padding_value).all()
    assert batch["input_features"].shape[2] == 80


def test_saved_folder_holds_weights_processor_and_remote_code(tmp_path: Path) -> None:
    folder = _save_folder(_model(), tmp_path / "model")
    names = {p.name for p in folder.iterdir()}
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "vocab.json", *CODE_FILES):
        assert name in names, f"{name} missing from {sorted(names)}"
    assert "preprocessor_config.json" in names or "processor_config.json" in names
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoConfig"] == "configuration_ai2text.AI2TextConfig"
    assert auto_map["AutoModelForCTC"] == "modeling_ai2text.AI2TextForCTC"
    for name in ("tokenizer_config.json", "preprocessor_config.json", "processor_config.json"):
        if (folder / name).is_file():
            assert "auto_map" in json.loads((folder / name).read_text()), name
    # The shipped code is the package's own code, byte for byte.
    package = Path(ai2text_hf.__file__).parent
    for name in CODE_FILES:
        assert (folder / name).read_bytes() == (package / name).read_bytes(), name


def test_auto_classes_load_a_saved_folder(tmp_path: Path) -> None:
    model = _model()
    folder = _save_folder(model, tmp_path / "model")
    assert isinstance(AutoConfig.from_pretrained(folder), AI2TextConfig)
    assert isinstance(AutoFeatureExtractor.from_pretrained(folder), AI2TextFeatureExtractor)
    assert isinstance(AutoTokenizer.from_pretrained(folder), AI2TextTokenizer)
    processor = AutoProcessor.from_pretrained(folder)
    assert isinstance(processor, AI2TextProcessor)
    loaded = AutoModelForCTC.from_pretrained(folder).eval()
    assert isinstance(loaded, AI2TextForCTC)
    inputs = processor(audio=_waves(1.0)[0], sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)


_REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["ai2text_hf"] = None  # the package must not be importable: only the folder's code may run
    import json
    import numpy as np
    import torch
    from transformers import AutoFeatureExtractor, AutoModelForCTC, pipeline

    folder = sys.argv[1]
    audio = np.load(sys.argv[2])
    asr = pipeline("automatic-speech-recognition", model=folder, trust_remote_code=True)
    text = asr(audio.copy())["text"]
    model = AutoModelForCTC.from_pretrained(folder, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    inputs = extractor(audio, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    print(json.dumps({
        "classes": [type(o).__module__ for o in (asr.model, asr.tokenizer, asr.feature_extractor, model)],
        "text": text,
        "logits": logits.tolist(),
    }))
    """
)


def test_trust_remote_code_loads_without_the_package(tmp_path: Path) -> None:
    model = _model(seed=3)
    folder = _save_folder(model, tmp_path / "model")
    audio = _waves(1.5, seed=4)[0]
    np.save(tmp_path / "audio.npy", audio)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),  # a fresh copy of the remote code, no stale one
        "PYTHONPATH": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", _REMOTE_SCRIPT, str(folder), str(tmp_path / "audio.npy")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(module.startswith("transformers_modules") for module in remote["classes"]), remote["classes"]

    inputs = _features([audio])
    with torch.no_grad():
        local_logits = model(**inputs).logits[0]
    np.testing.assert_allclose(np.array(remote["logits"]), local_logits.numpy(), rtol=1e-5, atol=1e-5)
    local_text = pipeline("automatic-speech-recognition", model=str(folder))(audio.copy())["text"]
    assert remote["text"] == local_text
