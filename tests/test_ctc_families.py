"""Any CTC model folder is first-class: tiny randomly initialised models of the seven families, fine-tuned with
``ai2text train --init_from``, then every command on the result; and the loading errors that name the fix.

``make test`` runs Wav2Vec2ForCTC end to end; the whole family x command matrix is ``make test-slow``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_RECIPE, synth_tiny_corpus
from transformers import (
    AutoModelForCTC,
    Data2VecAudioConfig,
    HubertConfig,
    PretrainedConfig,
    SeamlessM4TFeatureExtractor,
    Wav2Vec2BertConfig,
    Wav2Vec2Config,
    Wav2Vec2ConformerConfig,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    WavLMConfig,
    WhisperConfig,
)

from ai2text_hf import AI2TextConfig, AI2TextFeatureExtractor, AI2TextForCTC, AI2TextProcessor
from ai2text_hf.cli import main
from ai2text_hf.data.audio import load_audio
from ai2text_hf.data.prepare import prepare_dataset
from ai2text_hf.decoding import DecodingOptions
from ai2text_hf.evaluation.evaluate import evaluate_split
from ai2text_hf.feature_extraction_ai2text import pause_segments
from ai2text_hf.inference import Transcriber, load_model_folder, samples_per_logit_frame
from ai2text_hf.tokenization_ai2text import AI2TextTokenizer

SR = 16000
_LAYERS = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
_QUIET = {"mask_time_prob": 0.0, "hidden_dropout": 0.0, "attention_dropout": 0.0, "layerdrop": 0.0}
# Three small convolutions over raw audio: 5 x 4 x 4 = 80 samples per frame.
_RAW = {
    **_LAYERS,
    **_QUIET,
    "conv_dim": (32, 32, 32),
    "conv_kernel": (10, 8, 8),
    "conv_stride": (5, 4, 4),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}
_STABLE = {"feat_extract_norm": "layer", "do_stable_layer_norm": True}
FAMILIES: dict[str, Callable[[], PretrainedConfig]] = {
    "Wav2Vec2ForCTC": lambda: Wav2Vec2Config(**_RAW, **_STABLE),
    "Wav2Vec2BertForCTC": lambda: Wav2Vec2BertConfig(
        **_LAYERS,
        **_QUIET,
        feature_projection_input_dim=160,
        conv_depthwise_kernel_size=3,
        left_max_position_embeddings=16,
        right_max_position_embeddings=4,
    ),
    "HubertForCTC": lambda: HubertConfig(**_RAW, **_STABLE),
    "WavLMForCTC": lambda: WavLMConfig(**_RAW, **_STABLE, num_buckets=16, max_bucket_distance=80),
    "Data2VecAudioForCTC": lambda: Data2VecAudioConfig(**{**_RAW, "num_conv_pos_embeddings": 5}),
    "Wav2Vec2ConformerForCTC": lambda: Wav2Vec2ConformerConfig(
        **_RAW, position_embeddings_type="rotary", conv_depthwise_kernel_size=3
    ),
}
OURS = "AI2TextForCTC"
_OUR_LAYERS = {"d_model": 32, "num_encoder_layers": 2, "num_heads": 2, "d_ff": 64, "subsampling_channels": 8}
ALL_FAMILIES = [OURS, *FAMILIES]
TRAIN_KEYS = {
    "num_epochs": "1",
    "learning_rate": "1e-3",
    "max_batch_seconds": "20",
    "logging_steps": "1",
    "disable_tqdm": "true",
    "save_total_limit": "2",
}


def build_family(family: str, folder: Path) -> Path:
    """A randomly initialised ``family`` checkpoint saved like a Hub one: weights, its own feature extractor and a
    Wav2Vec2CTCTokenizer over our Vietnamese vocabulary (ours: our processor)."""
    vocab = AI2TextTokenizer().get_vocab()
    if family == OURS:
        torch.manual_seed(0)
        AI2TextForCTC(AI2TextConfig(**_OUR_LAYERS, vocab_size=len(vocab))).save_pretrained(folder)
        AI2TextProcessor(AI2TextFeatureExtractor(), AI2TextTokenizer()).save_pretrained(folder)
        return folder
    config = FAMILIES[family]()
    config.vocab_size, config.pad_token_id = len(vocab), vocab["<pad>"]
    torch.manual_seed(0)
    AutoModelForCTC.from_config(config).save_pretrained(folder)
    if family == "Wav2Vec2BertForCTC":
        SeamlessM4TFeatureExtractor().save_pretrained(folder)
    else:
        Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True).save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 train, 2 validation and 2 test espeak-ng utterances, prepared --on-the-fly (audio) and with features."""
    root = tmp_path_factory.mktemp("families")
    metadata = synth_tiny_corpus(root, sentences=14, validation=2, test=2, seed=3)
    prepare_dataset(metadata, root / "otf", on_the_fly=True, progress=False)
    prepare_dataset(metadata, root / "features", progress=False)
    return root


def fine_tune(family: str, corpus: Path, root: Path) -> Path:
    """``ai2text train --init_from <checkpoint> --reset_head true`` for one epoch; the run folder."""
    start = build_family(family, root / f"{family}-start")
    run = root / f"{family}-run"
    overrides = [arg for key, value in TRAIN_KEYS.items() for arg in (f"--{key}", value)]
    arguments = ["train", "--recipe", str(TINY_RECIPE), "--dataset", str(corpus / "otf"), "--output-dir", str(run)]
    assert main([*arguments, "--init_from", str(start), "--reset_head", "true", *overrides]) == 0
    return run


def _evaluate(model: Path, dataset: Path, output: Path, *options: str) -> int:
    return main(
        [
            "evaluate",
            "--model",
            str(model),
            "--dataset",
            str(dataset),
            "--split",
            "test",
            "--output",
            str(output),
            *options,
        ]
    )


def every_command(run: Path, corpus: Path, tmp: Path, capsys: pytest.CaptureFixture, full: bool = True) -> None:
    """evaluate, transcribe (timestamps, long input), doctor, average, compare, export with parity, the server's
    loading, lm build/tune, evaluate with the LM and push --to-folder, on ``run``'s model folder (without ``full``:
    evaluate, transcribe, export and the server only)."""
    model, otf = run / "model", corpus / "otf"
    wavs = sorted((corpus / "corpus" / "wavs" / "test").glob("*.wav"))
    assert _evaluate(model, otf, tmp / "a") == 0
    results = json.loads((tmp / "a" / "eval_results.json").read_text())
    assert results["num_samples"] == 2 and np.isfinite(results["cer"])
    assert results["features"] == "computed from the dataset's audio"

    capsys.readouterr()
    assert main(["transcribe", "--model", str(model), "--json", *map(str, wavs)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(printed) == len(wavs) and all(0 <= r["confidence"] <= 1 for r in printed)

    transcriber = Transcriber(model, device="cpu", chunk_seconds=2.0, stride_seconds=0.5)
    joined = np.concatenate([load_audio(w, SR)[0] for w in wavs])
    (long,) = transcriber.transcribe_arrays([joined])
    times = [(w["start"], w["end"]) for w in long.words]  # parts cut in pauses, on the recording's clock
    assert times == sorted(times) and all(0 <= start <= end <= len(joined) / SR + 0.1 for start, end in times)

    if full:
        _doctor_average_compare(run, corpus, tmp)
    _export_and_serve(model, otf, wavs, printed, tmp, capsys)
    if full:
        _language_model(model, corpus, tmp)


def _doctor_average_compare(run: Path, corpus: Path, tmp: Path) -> None:
    model, otf = run / "model", corpus / "otf"
    assert main(["doctor", "--model", str(model), "--dataset", str(otf), "--output", str(tmp / "doctor.csv")]) == 0
    assert (tmp / "doctor.csv").read_text().count("\n") == 15  # header + 10 train, 2 validation, 2 test

    assert main(["average", "--run", str(run), "--last", "1", "--output", str(tmp / "averaged")]) == 0
    assert load_model_folder(tmp / "averaged", "cpu").architecture == load_model_folder(model, "cpu").architecture
    assert _evaluate(tmp / "averaged", otf, tmp / "b") == 0
    assert main(["compare", str(tmp / "a"), str(tmp / "b")]) == 0


def _export_and_serve(model: Path, otf: Path, wavs: list[Path], printed: list[dict], tmp: Path, capsys) -> None:
    assert main(["export", "--model", str(model), "--output", str(tmp / "onnx"), "--dataset", str(otf)]) == 0
    parity = json.loads((tmp / "onnx" / "export_report.json").read_text())["parity"]
    assert parity["max_abs_logit_diff"] < 1e-3 and parity["all_transcripts_identical"]
    capsys.readouterr()
    assert main(["transcribe", "--model", str(tmp / "onnx"), "--json", *map(str, wavs)]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["text"] for r in exported] == [r["text"] for r in printed]

    from ai2text_hf.serving.registry import ModelRegistry

    registry = ModelRegistry(None)
    try:
        loaded = registry.add(model)
        served = loaded.transcriber.transcribe_batch(wavs)
        assert [r["text"] for r in served] == [r["text"] for r in printed]
    finally:
        registry.close()


def _language_model(model: Path, corpus: Path, tmp: Path) -> None:
    otf, lm = corpus / "otf", tmp / "lm"
    metadata = str(corpus / "corpus" / "metadata.csv")
    assert main(["lm", "build", "--text", metadata, "--splits", "train", "--order", "2", "--output", str(lm)]) == 0
    tuned = ["lm", "tune", "--model", str(model), "--dataset", str(otf), "--lm", str(lm), "--split", "validation"]
    assert main([*tuned, "--beam-width", "4", "--lm-weights", "0.5", "--word-scores", "1"]) == 0
    assert _evaluate(model, otf, tmp / "c", "--lm", str(lm), "--beam-width", "4") == 0

    pushed = tmp / "pushed"
    assert main(["push", "--model", str(model), "--repo-id", "org/tiny", "--to-folder", str(pushed)]) == 0
    assert (pushed / "README.md").is_file()
    assert load_model_folder(pushed, "cpu").architecture == load_model_folder(model, "cpu").architecture


def test_wav2vec2_fine_tuned_from_a_checkpoint_evaluates_transcribes_exports_and_serves(corpus, tmp_path, capsys):
    run = fine_tune("Wav2Vec2ForCTC", corpus, tmp_path)
    every_command(run, corpus, tmp_path, capsys, full=False)


@pytest.mark.slow
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_each_family_fine_tuned_from_a_checkpoint_runs_every_command(family, corpus, tmp_path, capsys) -> None:
    run = fine_tune(family, corpus, tmp_path)
    every_command(run, corpus, tmp_path, capsys)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_frame_rate_of_each_family_is_its_output_length_over_the_audio(family, tmp_path) -> None:
    folder = load_model_folder(build_family(family, tmp_path / family), "cpu")
    seconds = 7.0
    transcriber_inputs = folder.feature_extractor(
        np.zeros(int(seconds * SR), dtype=np.float32), sampling_rate=SR, return_tensors="pt"
    )
    frames = int(
        folder.model._get_feat_extract_output_lengths(torch.tensor(transcriber_inputs[folder.input_name].shape[1]))
    )
    assert folder.kind == ("ours" if family == OURS else "transformers") and folder.architecture == family
    assert abs(frames * folder.seconds_per_frame - seconds) < 3 * folder.seconds_per_frame
    assert folder.samples_per_frame == samples_per_logit_frame(folder.model.config, folder.feature_extractor)


def test_a_checkpoint_with_transformers_tokenizer_transcribes_with_timestamps(corpus, tmp_path) -> None:
    """A folder as the Hub has it (Wav2Vec2CTCTokenizer, no ai2text files) decodes with our decoders."""
    folder = build_family("Wav2Vec2ForCTC", tmp_path / "hub-like")
    wav = next((corpus / "corpus" / "wavs" / "test").glob("*.wav"))
    (result,) = Transcriber(folder, device="cpu").transcribe_batch([wav])
    assert result["text"] and result["words"] and result["words"][-1]["end"] <= result["duration"] + 0.1
    (tmp_path / "hotwords.txt").write_text("hà nội\n", encoding="utf-8")
    beam = DecodingOptions.create(beam_width=4, hotwords=str(tmp_path / "hotwords.txt"))
    (boosted,) = Transcriber(folder, device="cpu", decoding=beam).transcribe_batch([wav])
    assert boosted["text"] and 0 <= boosted["confidence"] <= 1


def test_a_whisper_folder_is_refused_naming_the_supported_families(tmp_path) -> None:
    WhisperConfig().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"'whisper' model, which is not a CTC model.*Wav2Vec2BertForCTC"):
        load_model_folder(tmp_path)


def test_a_folder_without_config_says_what_a_model_folder_is(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"not a model folder \(no config.json\).*runs/<name>/model"):
        load_model_folder(tmp_path)


def test_a_lora_adapter_folder_loads_on_its_base_with_its_own_output_layer(tmp_path) -> None:
    """peft adapter on a base whose head has another vocabulary size: the adapter's head and LoRA weights merged."""
    peft = pytest.importorskip("peft")
    base = build_family("Wav2Vec2ForCTC", tmp_path / "base")
    model = AutoModelForCTC.from_pretrained(base)
    model.lm_head = torch.nn.Linear(model.lm_head.in_features, 40)  # the run's (smaller) vocabulary
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"])
    adapted = peft.get_peft_model(model, config)
    for name, weight in adapted.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight)  # trained adapters are not the identity
    adapted.save_pretrained(tmp_path / "adapter")
    vocab = {token: index for index, token in enumerate(list(AI2TextTokenizer().get_vocab())[:40])}
    AI2TextProcessor(
        Wav2Vec2FeatureExtractor(return_attention_mask=True), AI2TextTokenizer(vocab=vocab)
    ).save_pretrained(tmp_path / "adapter")
    folder = load_model_folder(tmp_path / "adapter", "cpu")
    assert folder.kind == "lora-adapter" and folder.model.lm_head.out_features == len(folder.tokenizer) == 40
    audio = torch.randn(1, 16000)
    with torch.no_grad():
        expected = adapted.merge_and_unload().eval()(input_values=audio).logits
        torch.testing.assert_close(folder.model(input_values=audio).logits, expected)


def test_a_lora_adapter_without_its_base_model_names_the_base(tmp_path) -> None:
    adapter = {"peft_type": "LORA", "base_model_name_or_path": str(tmp_path / "missing-base"), "r": 4}
    (tmp_path / "adapter_config.json").write_text(json.dumps(adapter))
    with pytest.raises(FileNotFoundError, match=r"LoRA adapter for the base model '.*missing-base', which is not here"):
        load_model_folder(tmp_path)


def test_a_features_dataset_for_a_raw_audio_model_says_to_prepare_on_the_fly(corpus, tmp_path) -> None:
    folder = build_family("Wav2Vec2ForCTC", tmp_path / "w2v")
    with pytest.raises(ValueError, match=r"stores log-mel features.*Wav2Vec2ForCTC.*--on-the-fly"):
        evaluate_split(folder, corpus / "features", "test", output_dir=tmp_path / "eval")


def test_long_recordings_are_cut_in_the_middle_of_pauses() -> None:
    rng = np.random.default_rng(0)
    speech = [0.3 * rng.standard_normal(int(s * SR)).astype(np.float32) for s in (1.5, 2.0, 0.7)]
    floor = [1e-4 * rng.standard_normal(int(s * SR)).astype(np.float32) for s in (0.6, 0.1)]
    wave = np.concatenate([speech[0], floor[0], speech[1], floor[1], speech[2]])
    segments = pause_segments(wave, SR)
    assert len(segments) == 2, "a 0.6 s pause cuts, a 0.1 s one does not"
    assert segments[0][0] == 0 and segments[-1][1] == len(wave) and segments[0][1] == segments[1][0]
    assert abs(segments[0][1] - int(1.8 * SR)) < 0.02 * SR  # the middle of the pause
    assert pause_segments(speech[0], SR) == [(0, len(speech[0]))]
    aligned = pause_segments(wave, SR, align=640)
    assert aligned[0][1] == segments[0][1] // 640 * 640 and aligned[-1][1] == len(wave)
