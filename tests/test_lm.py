"""The Kneser-Ney n-gram estimator, its ARPA output as KenLM reads it, and ``ai2text lm build``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary

from ai2text_hf.cli import main
from ai2text_hf.configuration_ai2text import AI2TextConfig
from ai2text_hf.data.synth import default_sentences_path
from ai2text_hf.decoding.kenlm_binary import find_build_binary
from ai2text_hf.decoding.lm import (
    BOS,
    EOS,
    UNK,
    build_lm,
    estimate_kneser_ney,
    kneser_ney_discounts,
    read_text_lines,
    syllable_sentences,
)
from ai2text_hf.language_model_ai2text import (
    arpa_vocabulary,
    language_model_file,
    lm_vocabulary,
    vocabulary_fingerprint,
)
from ai2text_hf.tokenization_ai2text import AI2TextTokenizer


@pytest.fixture(scope="module")
def sentences() -> list[list[str]]:
    return syllable_sentences(read_text_lines(default_sentences_path()))[0]


def test_discounts_follow_the_modified_kneser_ney_formula() -> None:
    # Y = 10 / (10 + 2*5) = 0.5; D(k) = k - (k+1) Y t(k+1)/t(k)
    assert kneser_ney_discounts([10, 5, 3, 2]) == pytest.approx((0.5, 2 - 3 * 0.5 * 3 / 5, 3 - 4 * 0.5 * 2 / 3))
    assert kneser_ney_discounts([10, 5, 0, 2]) is None  # undefined: the caller falls back


def test_toy_corpus_matches_hand_computed_probabilities() -> None:
    # <s> a b </s> (twice), <s> b </s>. Counts-of-counts have zeros, so the fallback discounts 0.5/1/1.5 apply.
    # Unigram continuation counts a=1, b=2, </s>=1 (total 4), interpolation weight (0.5*2 + 1)/4 = 0.5 with the
    # uniform 1/4 over {a, b, </s>, <unk>}: p(a) = 0.5/4 + 0.125, p(b) = 1/4 + 0.125, p(<unk>) = 0.125.
    model = estimate_kneser_ney([["a", "b"], ["a", "b"], ["b"]], order=2)
    assert model.estimated_discounts == [False, False]
    expected = {
        ("a", ()): 0.25,
        ("b", ()): 0.375,
        (EOS, ()): 0.25,
        (UNK, ()): 0.125,
        # after <s>: a (2), b (1); weight (1 + 0.5)/3 = 0.5
        ("a", (BOS,)): (2 - 1) / 3 + 0.5 * 0.25,
        ("b", (BOS,)): (1 - 0.5) / 3 + 0.5 * 0.375,
        (EOS, (BOS,)): 0.5 * 0.25,
        # after a: b (2), weight 1/2; after b: </s> (3), weight 1.5/3
        ("b", ("a",)): (2 - 1) / 2 + 0.5 * 0.375,
        ("a", ("a",)): 0.5 * 0.25,
        (EOS, ("b",)): (3 - 1.5) / 3 + 0.5 * 0.25,
        ("zzz", ("b",)): 0.5 * 0.125,  # an unseen word is <unk>
    }
    for (word, context), probability in expected.items():
        assert 10 ** model.log10_prob(word, context) == pytest.approx(probability, rel=1e-6), (word, context)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_distribution_sums_to_one(sentences, order: int) -> None:
    model = estimate_kneser_ney(sentences, order)
    assert all(model.estimated_discounts)  # the package sentences are enough to estimate every discount
    vocabulary = [gram[0] for gram in model.probs[0] if gram[0] != BOS]
    contexts = [()] + [gram for level in model.probs[: order - 1] for gram in list(level)[:40]]
    for context in contexts:
        total = sum(10 ** model.log10_prob(word, context) for word in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-6), context


def test_kenlm_reads_the_arpa_file_as_the_model_computes(sentences, tmp_path) -> None:
    model = estimate_kneser_ney(sentences, 3)
    model.write_arpa(tmp_path / "lm.arpa")
    words = Dictionary(arpa_vocabulary(tmp_path / "lm.arpa"))
    words.set_default_index(words.get_index(UNK))
    kenlm = KenLM(str(tmp_path / "lm.arpa"), words)
    for sentence in random.Random(0).sample(sentences, 30):
        state, context = kenlm.start(False), [BOS]
        for word in [*sentence, "từ-lạ"]:
            state, score = kenlm.score(state, words.get_index(word))
            assert score == pytest.approx(model.log10_prob(word, context), abs=1e-5)
            context.append(word)
        assert kenlm.finish(state)[1] == pytest.approx(model.log10_prob(EOS, context), abs=1e-5)


def test_build_lm_reads_csv_transcripts_and_leaves_out_excluded_sentences(tmp_path) -> None:
    corpus = tmp_path / "metadata.csv"
    corpus.write_text(
        "file_path,transcript\na.wav,Xin chào Việt Nam.\nb.wav,Hôm nay trời đẹp.\nc.wav,Tôi là sinh viên.\n",
        encoding="utf-8",
    )
    (tmp_path / "test.txt").write_text("hôm nay trời đẹp\n", encoding="utf-8")
    info = build_lm([corpus], tmp_path / "lm", order=2, exclude_files=[tmp_path / "test.txt"])
    assert info["sentences"] == 2 and info["excluded_sentences"] == 1 and info["tokens"] == 8
    vocabulary = arpa_vocabulary(tmp_path / "lm" / "lm.arpa")
    assert "việt" in vocabulary and "trời" not in vocabulary
    assert json.loads((tmp_path / "lm" / "lm.json").read_text(encoding="utf-8"))["unit"] == "syllable"


def test_build_lm_keeps_only_the_requested_splits_of_a_metadata_csv(tmp_path) -> None:
    corpus = tmp_path / "metadata.csv"
    corpus.write_text(
        "file_path,transcript,split\na.wav,xin chào,train\nb.wav,trời đẹp,test\nc.wav,sinh viên,val\n",
        encoding="utf-8",
    )
    info = build_lm([corpus], tmp_path / "lm", order=2, splits=["train"])
    assert info["sentences"] == 1
    assert "trời" not in arpa_vocabulary(tmp_path / "lm" / "lm.arpa")
    (tmp_path / "nosplit.csv").write_text("file_path,transcript\na.wav,xin chào\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no split column"):
        build_lm([tmp_path / "nosplit.csv"], tmp_path / "lm2", splits=["train"])


def test_lm_build_command_writes_the_model(capsys, tmp_path) -> None:
    text = tmp_path / "text.tsv"
    text.write_text("sentence\tsource\nmột hai ba\tx\nhai ba bốn\ty\n", encoding="utf-8")
    code = main(["lm", "build", "--text", str(text), "--order", "3", "--output", str(tmp_path / "lm")])
    assert code == 0
    assert "3-gram syllable LM from 2 sentences" in capsys.readouterr().out
    arpa = (tmp_path / "lm" / "lm.arpa").read_text(encoding="utf-8")
    assert arpa.startswith("\\data\\") and "\\3-grams:" in arpa and arpa.rstrip().endswith("\\end\\")


def test_metadata_csv_gives_each_distinct_transcript_once(tmp_path) -> None:
    corpus = tmp_path / "metadata.csv"
    rows = [f"{name}.wav,Xin chào Việt Nam.,train" for name in "abc"] + ["d.wav,Hôm nay trời đẹp.,train"]
    corpus.write_text("file_path,transcript,split\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert read_text_lines(corpus) == ["Xin chào Việt Nam.", "Hôm nay trời đẹp."]
    assert build_lm([corpus], tmp_path / "lm", order=2)["sentences"] == 2


@pytest.fixture
def model_folder(tmp_path) -> Path:
    """The files of a model folder that building an LM for it reads: config and tokenizer (no weights needed)."""
    folder = tmp_path / "run" / "model"
    AI2TextConfig().save_pretrained(folder)
    AI2TextTokenizer(tone_placement="modern").save_pretrained(folder)
    return folder


def test_lm_build_for_a_model_stores_it_in_the_model_folder_with_its_vocabulary(model_folder, tmp_path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("hôm nay trời đẹp\nhôm qua trời mưa\n", encoding="utf-8")
    assert main(["lm", "build", "--model", str(model_folder), "--text", str(text), "--order", "2"]) == 0
    stored = model_folder / "language_model"
    info = json.loads((stored / "lm.json").read_text(encoding="utf-8"))
    tokenizer = AI2TextTokenizer.from_pretrained(str(model_folder))
    assert info["tokenizer"] == {"model": str(model_folder), **vocabulary_fingerprint(tokenizer)}
    assert info["tone_placement"] == "modern"  # the model's, unless asked otherwise
    config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
    assert config["custom_pipelines"]["automatic-speech-recognition"]["pt"] == ["AutoModelForCTC"]
    assert (model_folder / "pipeline_ai2text.py").is_file() and (model_folder / "language_model_ai2text.py").is_file()

    (stored / "decoding.json").write_text('{"lm_weight": 1, "word_score": 1}', encoding="utf-8")
    again = ["lm", "build", "--output", str(stored), "--text", str(text), "--order", "3"]  # the same folder
    assert main(again) == 2 and (stored / "decoding.json").is_file()  # nothing replaced unasked
    assert main([*again, "--overwrite"]) == 0
    assert (
        json.loads((stored / "lm.json").read_text(encoding="utf-8"))["tokenizer"]["sha256"]
        == info["tokenizer"]["sha256"]
    )
    assert not (stored / "decoding.json").exists()  # the weights were tuned for the LM replaced
    wrong = ["lm", "build", "--model", str(model_folder), "--text", str(text), "--overwrite"]
    assert main([*wrong, "--tone-placement", "classic"]) == 2


# --- KenLM binary ---------------------------------------------------------------------------------------------


@pytest.fixture
def build_binary_tool() -> Path:
    """KenLM's build_binary (`make test` compiles it with `ai2text lm install-kenlm`)."""
    tool = find_build_binary()
    if tool is None:
        pytest.skip("KenLM's build_binary is not compiled: ai2text lm install-kenlm (make test does it)")
    return tool


def test_kenlm_binary_scores_exactly_as_the_arpa_file(sentences, build_binary_tool, tmp_path) -> None:
    build_lm([default_sentences_path()], tmp_path / "lm", order=3, binary="yes")
    assert language_model_file(tmp_path / "lm") == tmp_path / "lm" / "lm.bin"  # what the decoder loads
    assert lm_vocabulary(tmp_path / "lm" / "lm.bin") == arpa_vocabulary(tmp_path / "lm" / "lm.arpa")
    scorers = {}
    for name in ("lm.arpa", "lm.bin"):
        words = Dictionary(lm_vocabulary(tmp_path / "lm" / name))
        words.set_default_index(words.get_index(UNK))
        scorers[name] = (KenLM(str(tmp_path / "lm" / name), words), words)
    for sentence in random.Random(1).sample(sentences, 20):
        states = {name: kenlm.start(False) for name, (kenlm, _) in scorers.items()}
        for word in [*sentence, "từ-lạ"]:
            scores = {}
            for name, (kenlm, words) in scorers.items():
                states[name], scores[name] = kenlm.score(states[name], words.get_index(word))
            assert scores["lm.bin"] == pytest.approx(scores["lm.arpa"], abs=1e-6)


def test_rebuilding_without_the_binary_removes_the_stale_one(build_binary_tool, tmp_path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("hôm nay trời đẹp\nhôm qua trời mưa\n", encoding="utf-8")
    assert build_lm([text], tmp_path / "lm", order=2, binary="yes")["kenlm_binary"]
    info = build_lm([text], tmp_path / "lm", order=3, binary="no")
    assert not info["kenlm_binary"] and not (tmp_path / "lm" / "lm.bin").exists()
    assert language_model_file(tmp_path / "lm") == tmp_path / "lm" / "lm.arpa"  # never the older model's binary


def test_binary_required_without_build_binary_names_the_fix(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("AI2TEXT_BUILD_BINARY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    text = tmp_path / "text.txt"
    text.write_text("hôm nay trời đẹp\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="ai2text lm install-kenlm"):
        build_lm([text], tmp_path / "lm", order=2, binary="yes")
    assert not build_lm([text], tmp_path / "lm", order=2)["kenlm_binary"]  # auto: ARPA only, no error
