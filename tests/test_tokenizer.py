"""Pins the CTC tokenizer: its ids are the model's output layer, its decoding is what users read."""

import json
import logging

import pytest

from ai2text_hf.normalization_vi import VIETNAMESE_ALPHABET, normalize_text
from ai2text_hf.tokenization_ai2text import AI2TextTokenizer

LOGGER = "ai2text_hf.tokenization_ai2text"


@pytest.fixture
def tokenizer() -> AI2TextTokenizer:
    return AI2TextTokenizer()


def ids_of(tokenizer: AI2TextTokenizer, text: str) -> list[int]:
    """Expected ids of an already normalised text, spelled out character by character."""
    return tokenizer.convert_tokens_to_ids(["|" if char == " " else char for char in text])


def test_default_vocab_is_specials_then_alphabet(tokenizer):
    assert tokenizer.vocab_size == len(tokenizer) == 96
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.word_delimiter_token_id) == (0, 1, 2)
    assert tokenizer.pad_token == "<pad>" and tokenizer.unk_token == "<unk>"
    assert tokenizer.bos_token is None and tokenizer.eos_token is None
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(3, 96)] == list(VIETNAMESE_ALPHABET)


def test_encoding_normalises_the_text(tokenizer):
    expected = "hòa bình hai nghìn không trăm hai mươi tư"
    assert tokenizer("Hòa BÌNH, 2024!").input_ids == ids_of(tokenizer, expected)
    assert tokenizer.tokenize("Thuỷ") == ["t", "h", "ủ", "y"]


def test_encode_decode_round_trip_on_normalised_text(tokenizer):
    text = normalize_text("Người Việt Nam khỏe mạnh, quý hòa bình!")
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(ids, group_tokens=False) == text


def test_batch_encoding_pads_with_the_ctc_blank(tokenizer):
    batch = tokenizer(["a b", "xin chào"], padding=True)
    assert batch.input_ids[0] == ids_of(tokenizer, "a b") + [0] * 5
    assert batch.attention_mask[0] == [1, 1, 1, 0, 0, 0, 0, 0]


def test_ctc_decode_collapses_repeats_and_drops_blanks(tokenizer):
    x, i, n, a = tokenizer.convert_tokens_to_ids(["x", "i", "n", "a"])
    frames = [0, x, x, 0, i, i, n, 2, 2, 0, 2, n, 0, 0, a, 0, a, 0]
    assert tokenizer.decode(frames) == "xin naa"
    assert tokenizer.batch_decode([frames, [0, 0]]) == ["xin naa", ""]


def test_ctc_decode_gives_single_spaces_between_words(tokenizer):
    x, a = tokenizer.convert_tokens_to_ids(["x", "a"])
    assert tokenizer.decode([2, x, 2, 0, 2, 0, a, 2]) == "x a"


def test_word_offsets_from_ctc_frames(tokenizer):
    x, i, n, a = tokenizer.convert_tokens_to_ids(["x", "i", "n", "a"])
    #        0  1  2  3  4  5  6  7  8  9  10 11
    frames = [0, x, x, i, n, 0, 2, 0, a, a, 0, a]
    output = tokenizer.decode(frames, output_word_offsets=True)
    assert output.text == "xin aa"
    assert [(w["word"], int(w["start_offset"]), int(w["end_offset"])) for w in output.word_offsets] == [
        ("xin", 1, 5),
        ("aa", 8, 12),
    ]


def test_pipeline_word_timestamp_path(tokenizer):
    """The ASR pipeline's return_timestamps="word" calls these two methods with these arguments."""
    x, i, n = tokenizer.convert_tokens_to_ids(["x", "i", "n"])
    frames = [x, 0, i, 2, 2, n, n]
    decoded = tokenizer.decode(frames, skip_special_tokens=False, output_char_offsets=True)
    words = tokenizer._get_word_offsets(decoded["char_offsets"], tokenizer.replace_word_delimiter_char)
    spans = [(w["word"], int(w["start_offset"]), int(w["end_offset"])) for w in words]
    assert spans == [("xi", 0, 3), ("n", 5, 7)]


def test_unknown_character_becomes_unk_and_is_named_in_a_warning(tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ids = tokenizer("tuyết ☃").input_ids
    assert ids == ids_of(tokenizer, "tuyết") + [2, tokenizer.unk_token_id]
    assert "☃" in caplog.text
    assert tokenizer.unknown_characters("Tuyết ☃ 漢") == ["☃", "漢"]


def test_unknown_character_is_warned_about_once_per_tokenizer(tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        tokenizer("☃")
        tokenizer("☃ ☃")
        tokenizer("α")
    assert len(caplog.records) == 2


def test_markup_in_text_is_not_encoded_as_control_tokens(tokenizer):
    ids = tokenizer("a|b <pad>").input_ids
    assert ids[1] == tokenizer.unk_token_id
    assert tokenizer.pad_token_id not in ids
    assert tokenizer.unknown_characters("a|b <pad>") == ["<", ">", "|"]


def test_do_lower_case_is_forced_off(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        tokenizer = AI2TextTokenizer(do_lower_case=True)
    assert tokenizer.do_lower_case is False
    assert tokenizer.decode(tokenizer("Hòa").input_ids) == "hòa"
    assert "do_lower_case" in caplog.text


@pytest.mark.parametrize("style, expected", [("classic", "thủy hòa"), ("modern", "thuỷ hoà")])
def test_tone_placement_is_applied_when_encoding(style, expected):
    tokenizer = AI2TextTokenizer(tone_placement=style)
    assert tokenizer.decode(tokenizer("Thuỷ hòa").input_ids) == expected


def test_save_load_round_trip_keeps_vocab_and_tone_placement(tmp_path):
    tokenizer = AI2TextTokenizer(tone_placement="modern")
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tone_placement"] == "modern"
    loaded = AI2TextTokenizer.from_pretrained(tmp_path)
    assert loaded.tone_placement == "modern"
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.do_lower_case is False
    assert loaded("hòa").input_ids == tokenizer("hoà").input_ids == ids_of(tokenizer, "hoà")


def test_from_texts_builds_vocab_from_normalised_characters(tmp_path):
    tokenizer = AI2TextTokenizer.from_texts(["Xin CHÀO!", "hoà 1"], tone_placement="classic")
    assert list(tokenizer.get_vocab()) == ["<pad>", "<unk>", "|", *"achimnotxàòộ"]
    assert tokenizer.decode(tokenizer("chào").input_ids) == "chào"
    assert tokenizer("b").input_ids == [tokenizer.unk_token_id]
    tokenizer.save_pretrained(tmp_path)
    assert AI2TextTokenizer.from_pretrained(tmp_path).get_vocab() == tokenizer.get_vocab()


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="tone_placement"):
        AI2TextTokenizer(tone_placement="new")
    with pytest.raises(ValueError, match="vocab"):
        AI2TextTokenizer(vocab_file="vocab.json", vocab={"<pad>": 0})
