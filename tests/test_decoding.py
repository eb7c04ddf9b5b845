"""Greedy and beam-search CTC decoding, the n-gram LM and hotwords in the search, and confidences.

The LM and hotword cases are built on hand-made posteriors, so they pin the search itself: one frame
is ambiguous between two spellings and greedy takes the wrong one. The trained fixture model then
checks the same machinery on real posteriors, through ``Transcriber`` and the ASR pipeline.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TrainedModel

from ai2text_hf.decoding import DecodingOptions, GreedyDecoder, build_decoder
from ai2text_hf.decoding.core import utterance_from_path
from ai2text_hf.decoding.hotwords import Hotwords
from ai2text_hf.decoding.lm import build_lm
from ai2text_hf.decoding.pipeline import asr_pipeline
from ai2text_hf.inference import Transcriber
from ai2text_hf.language_model_ai2text import vocabulary_fingerprint
from ai2text_hf.metrics import error_rates
from ai2text_hf.tokenization_ai2text import AI2TextTokenizer

SECONDS_PER_FRAME = 0.04


@pytest.fixture(scope="module")
def tokenizer() -> AI2TextTokenizer:
    return AI2TextTokenizer()


def _posteriors(tokenizer: AI2TextTokenizer, frames: list[dict[str, float]]) -> torch.Tensor:
    """``(1, frames, vocab)`` log posteriors: each frame's named tokens get their probability, the rest of the
    mass is spread over the other tokens."""
    vocab = len(tokenizer)
    rows = []
    for frame in frames:
        ids = {tokenizer.convert_tokens_to_ids(token): p for token, p in frame.items()}
        rest = (1.0 - sum(ids.values())) / (vocab - len(ids))
        rows.append([math.log(ids.get(i, rest)) for i in range(vocab)])
    return torch.tensor([rows], dtype=torch.float32)


def _spell(text: str, ambiguous: dict[int, dict[str, float]] | None = None) -> list[dict[str, float]]:
    """One confident frame per character (``|`` for spaces) with a blank after each; character ``i`` of
    ``text`` gets the distribution ``ambiguous[i]`` instead."""
    frames = []
    for i, char in enumerate(text):
        token = "|" if char == " " else char
        frames.append((ambiguous or {}).get(i, {token: 0.95}))
        frames.append({"<pad>": 0.95})
    return frames


def _decode(tokenizer, log_probs: torch.Tensor, options: DecodingOptions | None = None) -> str:
    decoder = build_decoder(tokenizer, options)
    return decoder.decode(log_probs, torch.tensor([log_probs.shape[1]]), SECONDS_PER_FRAME)[0].text


def test_beam_width_one_equals_greedy_on_random_posteriors(tokenizer) -> None:
    torch.manual_seed(0)
    logits = 4 * torch.randn(4, 60, len(tokenizer))
    lengths = torch.tensor([60, 41, 17, 1])
    greedy = GreedyDecoder(tokenizer).best_paths(logits.log_softmax(-1), lengths)
    beam = build_decoder(tokenizer, DecodingOptions(beam_width=1, token_beam=len(tokenizer)))
    for g, b in zip(greedy, beam.best_paths(logits.log_softmax(-1).contiguous(), lengths)):
        assert torch.equal(g, b)


def test_options_pick_greedy_unless_asked_for_a_beam_lm_or_hotwords() -> None:
    assert DecodingOptions.create().method == "greedy"
    assert DecodingOptions.create().to_dict() == {"method": "greedy"}
    assert DecodingOptions.create(lm="lm/").beam_width == 10
    assert DecodingOptions.create(beam_width=1, hotwords="names.txt").method == "beam"
    settings = DecodingOptions.create(beam_width=5).to_dict()
    assert settings["method"] == "beam" and settings["beam_width"] == 5 and "lm" not in settings
    with pytest.raises(ValueError):
        DecodingOptions(beam_width=0)


def test_lm_fixes_a_tone_greedy_gets_wrong(tokenizer, tmp_path) -> None:
    # "ệ" of "việt" is heard as "ê" by a hair; the LM has seen "việt nam" and never "viêt".
    log_probs = _posteriors(tokenizer, _spell("việt nam", {2: {"ê": 0.5, "ệ": 0.4}}))
    assert _decode(tokenizer, log_probs) == "viêt nam"
    text = tmp_path / "text.txt"
    text.write_text("việt nam đẹp lắm\ntôi yêu việt nam\nnước việt nam\nhôm nay trời đẹp\n", encoding="utf-8")
    build_lm([text], tmp_path / "lm", order=3)
    assert _decode(tokenizer, log_probs, DecodingOptions.create(lm=str(tmp_path / "lm"))) == "việt nam"


def test_lm_built_for_another_vocabulary_is_refused_naming_both(tokenizer, tmp_path) -> None:
    vocab = tokenizer.get_vocab()
    tokens = [t for t in sorted(vocab, key=vocab.__getitem__) if t != "x"] + ["ʼ"]
    other = AI2TextTokenizer(vocab={t: i for i, t in enumerate(tokens)})
    text = tmp_path / "text.txt"
    text.write_text("việt nam đẹp lắm\n", encoding="utf-8")
    built_for = {"model": "runs/other/model", **vocabulary_fingerprint(other)}
    build_lm([text], tmp_path / "lm", order=2, built_for=built_for)
    with pytest.raises(ValueError) as refusal:
        build_decoder(tokenizer, DecodingOptions.create(lm=str(tmp_path / "lm")))
    message = str(refusal.value)
    assert "runs/other/model" in message and built_for["sha256"][:12] in message
    assert vocabulary_fingerprint(tokenizer)["sha256"][:12] in message
    assert "only in the LM's vocabulary: ʼ; only in the model's: x" in message
    build_lm([text], tmp_path / "own", order=2, built_for=vocabulary_fingerprint(tokenizer))
    assert _decode(tokenizer, _posteriors(tokenizer, _spell("nam")), DecodingOptions.create(lm=str(tmp_path / "own")))


def test_hotword_turns_a_misspelt_name_right(tokenizer, tmp_path) -> None:
    log_probs = _posteriors(tokenizer, _spell("gặp chị thảo", {10: {"ã": 0.5, "ả": 0.4}}))
    assert _decode(tokenizer, log_probs, DecodingOptions(beam_width=10)) == "gặp chị thão"
    names = tmp_path / "names.txt"
    names.write_text("# people\nThảo\n", encoding="utf-8")
    assert _decode(tokenizer, log_probs, DecodingOptions.create(hotwords=str(names))) == "gặp chị thảo"
    names.write_text("Hà Nội\nThái\n", encoding="utf-8")  # phrases that are not said change nothing
    assert _decode(tokenizer, log_probs, DecodingOptions.create(hotwords=str(names))) == "gặp chị thão"


def test_hotword_bonus_is_kept_only_for_whole_phrases() -> None:
    hotwords = Hotwords([("hà nội", 1.0), ("hà", 0.5)])

    def total(spelling: str) -> float:
        state, score = hotwords.start(), 0.0
        for char in spelling:
            state, delta = hotwords.step(state, char)
            score += delta
        return score + hotwords.finish(state)

    assert total("hà|nội") == pytest.approx(5.0)  # five letters at weight 1
    assert total("hà|nội|ở|đây") == pytest.approx(5.0)
    assert total("hà") == pytest.approx(2.0)  # "hà" on its own is a phrase too (weight max(1, 0.5) per letter)
    assert total("hà|nam") == pytest.approx(2.0)  # "hà" complete, "hà nội" abandoned: only "hà" kept
    assert total("hàng") == pytest.approx(0.0)  # not a whole word
    assert total("nhà|nội") == pytest.approx(0.0)  # phrases start at word boundaries


def test_hotword_file_takes_per_phrase_weights(tmp_path) -> None:
    path = tmp_path / "hot.txt"
    path.write_text("Phạm Quốc Bảo\t4.5\n\n# comment\nHuế\n", encoding="utf-8")
    hotwords = Hotwords.from_file(path, weight=1.5)
    assert hotwords.phrases == ["phạm quốc bảo", "huế"]
    assert hotwords.root.children["p"].weight == 4.5 and hotwords.root.children["h"].weight == 1.5


def test_word_times_and_confidences_come_from_the_path(tokenizer) -> None:
    # path: a a <pad> b | c with posteriors 0.9 0.7 0.99 0.6 0.8 0.95
    tokens, probabilities = ["a", "a", "<pad>", "b", "|", "c"], [0.9, 0.7, 0.99, 0.6, 0.8, 0.95]
    log_probs = _posteriors(tokenizer, [{t: p} for t, p in zip(tokens, probabilities)])[0]
    path = torch.tensor(tokenizer.convert_tokens_to_ids(tokens))
    decoded = utterance_from_path(path, log_probs, tokenizer, SECONDS_PER_FRAME)
    assert decoded.text == "ab c"
    # a word is as sure as its least sure letter: "a" (mean of 0.9 and 0.7) and "b" (0.6) -> 0.6
    assert decoded.words == [
        {"word": "ab", "start": 0.0, "end": 0.16, "confidence": pytest.approx(0.6)},
        {"word": "c", "start": 0.2, "end": 0.24, "confidence": pytest.approx(0.95)},
    ]
    assert decoded.confidence == pytest.approx(np.mean([0.9, 0.7, 0.6, 0.8, 0.95]))  # emitting frames


# --- the trained fixture model ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_split(trained_model: TrainedModel):
    from ai2text_hf.data.prepare import load_prepared

    dataset = load_prepared(trained_model.dataset_dir)["test"]
    dataset = dataset.with_format("numpy", columns=["input_features"], output_all_columns=True)
    return list(dataset["input_features"]), list(dataset["text"])


@pytest.fixture(scope="module")
def fixture_lm(trained_model: TrainedModel, tmp_path_factory) -> str:
    output = tmp_path_factory.mktemp("lm")
    build_lm([trained_model.metadata], output, order=3)
    return str(output)


def test_beam_width_one_equals_greedy_on_the_model(trained_model: TrainedModel, test_split) -> None:
    features, _ = test_split
    greedy = Transcriber(trained_model.model_dir).decode_features(features)
    beam = Transcriber(trained_model.model_dir, decoding=DecodingOptions(beam_width=1, token_beam=100)).decode_features(
        features
    )
    assert [u.text for u in beam] == [u.text for u in greedy]
    assert [u.words for u in beam] == [u.words for u in greedy]


def test_lm_lowers_wer_on_the_models_test_split(trained_model: TrainedModel, test_split, fixture_lm) -> None:
    features, references = test_split
    greedy = [u.text for u in Transcriber(trained_model.model_dir).decode_features(features, False)]
    with_lm = Transcriber(trained_model.model_dir, decoding=DecodingOptions.create(lm=fixture_lm))
    rescored = [u.text for u in with_lm.decode_features(features, False)]
    assert error_rates(references, rescored)["wer"] < error_rates(references, greedy)["wer"]


def test_confidences_lie_in_unit_interval_and_are_lower_on_noise(trained_model: TrainedModel) -> None:
    files = [str(trained_model.corpus_dir / row["file_path"]) for row in trained_model.rows("test")[:4]]
    transcriber = Transcriber(trained_model.model_dir)
    speech = transcriber.transcribe_batch(files)
    rng = np.random.default_rng(0)
    noise = transcriber.transcribe_arrays(
        [(0.1 * rng.standard_normal(sf.info(f).frames)).astype(np.float32) for f in files]
    )
    for result in speech:
        assert 0.0 <= result["confidence"] <= 1.0
        assert result["words"] and all(0.0 <= w["confidence"] <= 1.0 for w in result["words"])
        assert set(result["words"][0]) == {"word", "start", "end", "confidence"}
    assert all(0.0 <= u.confidence <= 1.0 for u in noise)
    assert max(u.confidence for u in noise) < min(r["confidence"] for r in speech)


def test_pipeline_subclass_decodes_like_the_transcriber(trained_model: TrainedModel, fixture_lm) -> None:
    path = str(trained_model.corpus_dir / trained_model.rows("test")[0]["file_path"])
    audio, _ = sf.read(path, dtype="float32")
    for options in (None, DecodingOptions.create(lm=fixture_lm)):
        expected = Transcriber(trained_model.model_dir, decoding=options).transcribe_batch([path])[0]
        result = asr_pipeline(trained_model.model_dir, decoding=options)(audio, return_timestamps="word")
        assert result["text"] == expected["text"]
        assert result["confidence"] == pytest.approx(expected["confidence"], abs=1e-4)
        assert [c["text"] for c in result["chunks"]] == [w["word"] for w in expected["words"]]
        assert all(0.0 <= c["confidence"] <= 1.0 for c in result["chunks"])


def test_lm_tune_stores_the_lm_with_the_best_grid_point_in_the_model_which_decoding_then_uses(
    model_with_lm, trained_model: TrainedModel, tmp_path, capsys
) -> None:
    from ai2text_hf.cli import main

    model = tmp_path / "model"
    shutil.copytree(model_with_lm, model, ignore=shutil.ignore_patterns("language_model"))
    lm = tmp_path / "lm"
    build_lm([trained_model.metadata], lm, order=3, splits=["train"])
    args = ["lm", "tune", "--model", str(model), "--dataset", str(trained_model.dataset_dir)]
    args += ["--lm", str(lm), "--beam-width", "10", "--lm-weights", "0.1", "0.8", "--word-scores", "0", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Best: lm weight" in out and "Note: the best lm weight is at an end of the grid" in out
    stored = model / "language_model"
    tuned = json.loads((stored / "decoding.json").read_text(encoding="utf-8"))
    assert len(tuned["grid"]) == 4 and tuned["tuned_on"]["split"] in ("val", "validation")
    assert tuned["on_edge"] == ["lm_weight", "word_score"]  # two values per axis: the best is always an end
    best = min(tuned["grid"], key=lambda point: (point["cer"], point["wer"]))
    assert (tuned["lm_weight"], tuned["word_score"]) == (best["lm_weight"], best["word_score"])
    assert (stored / "lm.arpa").read_bytes() == (lm / "lm.arpa").read_bytes() and not (lm / "decoding.json").exists()
    assert json.loads((stored / "lm.json").read_text(encoding="utf-8"))["tokenizer"]["model"] == str(model)
    options = Transcriber(model).decoding  # the model's own LM, at its tuned weights, by default
    assert (options.lm, options.lm_weight, options.word_score) == (str(stored), best["lm_weight"], best["word_score"])
    assert DecodingOptions.for_model(model, lm_weight=2.0).lm_weight == 2.0  # explicit values win
    assert main(args + ["--split", "test"]) == 2
    assert "not on test" in capsys.readouterr().err
    build_lm([trained_model.metadata], tmp_path / "other", order=2, splits=["train"])
    assert main([*args[:6], "--lm", str(tmp_path / "other")]) == 2  # another LM would replace the model's own
    assert "already has a language model" in capsys.readouterr().err


def test_the_models_own_lm_decodes_by_default_and_no_lm_greedily(
    model_with_lm, trained_model: TrainedModel, test_split
) -> None:
    features, _ = test_split
    own = Transcriber(model_with_lm)
    assert own.decoding.lm == str(model_with_lm / "language_model") and own.decoding.beam_width == 10
    wav = str(trained_model.corpus_dir / trained_model.rows("test")[0]["file_path"])
    asr = asr_pipeline(model_with_lm)
    assert asr.decoding == own.decoding
    assert asr(sf.read(wav, dtype="float32")[0])["text"] == own.transcribe_batch([wav])[0]["text"]
    explicit = Transcriber(model_with_lm, decoding=DecodingOptions.create(lm=str(model_with_lm / "language_model")))
    assert [u.text for u in own.decode_features(features)] == [u.text for u in explicit.decode_features(features)]
    greedy = Transcriber(model_with_lm, decoding=DecodingOptions.for_model(model_with_lm, use_lm=False))
    assert greedy.decoding.method == "greedy"
    assert DecodingOptions.for_model(model_with_lm, use_lm=False, beam_width=4).to_dict().get("lm") is None
    with pytest.raises(ValueError, match="both asked for"):
        DecodingOptions.for_model(model_with_lm, use_lm=False, lm="lm/")
