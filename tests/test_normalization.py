"""Pins the label normaliser: whatever it outputs is what every model is trained to emit."""

import unicodedata

import pytest

from ai2text_hf.normalization_vi import (
    TONE_PLACEMENTS,
    VIETNAMESE_ALPHABET,
    normalize_text,
    unknown_characters,
)


def test_alphabet_is_93_unique_lowercase_nfc_letters_in_documented_order():
    assert len(VIETNAMESE_ALPHABET) == 93
    assert len(set(VIETNAMESE_ALPHABET)) == 93
    for char in VIETNAMESE_ALPHABET:
        assert len(char) == 1 and char == char.lower() and unicodedata.is_normalized("NFC", char)
    assert "".join(VIETNAMESE_ALPHABET[:29]) == "aăâbcdđeêghiklmnoôơpqrstuưvxy"
    assert VIETNAMESE_ALPHABET[29:34] == ("à", "á", "ả", "ã", "ạ")  # huyền, sắc, hỏi, ngã, nặng
    assert VIETNAMESE_ALPHABET[84:89] == ("ỳ", "ý", "ỷ", "ỹ", "ỵ")
    assert VIETNAMESE_ALPHABET[89:] == ("f", "j", "w", "z")


def test_tone_placements_classic_is_default():
    assert TONE_PLACEMENTS == ("classic", "modern")
    assert normalize_text("hoà") == normalize_text("hoà", "classic") == "hòa"


@pytest.mark.parametrize(
    "number, spoken",
    [
        ("0", "không"),
        ("10", "mười"),
        ("11", "mười một"),
        ("14", "mười bốn"),
        ("15", "mười lăm"),
        ("21", "hai mươi mốt"),
        ("24", "hai mươi tư"),
        ("25", "hai mươi lăm"),
        ("31", "ba mươi mốt"),
        ("34", "ba mươi tư"),
        ("101", "một trăm linh một"),
        ("105", "một trăm linh năm"),
        ("1000", "một nghìn"),
        ("1005", "một nghìn không trăm linh năm"),
        ("1050", "một nghìn không trăm năm mươi"),
        ("2024", "hai nghìn không trăm hai mươi tư"),
        ("1.000.000", "một triệu"),
        ("1.000.005", "một triệu không trăm linh năm"),
        ("1.000.000.000", "một tỷ"),
        ("1.000.000.000.000", "một nghìn tỷ"),
        ("3,5", "ba phẩy năm"),
        ("2,05", "hai phẩy không năm"),
        ("1.000,5", "một nghìn phẩy năm"),
        ("-5", "âm năm"),
        ("25%", "hai mươi lăm phần trăm"),
        ("-3,5 %", "âm ba phẩy năm phần trăm"),
        ("3.5", "ba chấm năm"),
        ("0912", "không chín một hai"),
        ("5.000.000.000.000.000.000", "năm tỷ tỷ"),
        ("1234567890123456", "một hai ba bốn năm sáu bảy tám chín không một hai ba bốn năm sáu"),
    ],
)
def test_numbers_are_read_in_vietnamese(number, spoken):
    assert normalize_text(number) == spoken


@pytest.mark.parametrize(
    "text, expected",
    [
        ("covid19", "covid mười chín"),
        ("2020-2021", "hai nghìn không trăm hai mươi hai nghìn không trăm hai mươi mốt"),
        ("năm 2024.", "năm hai nghìn không trăm hai mươi tư"),
        ("1, 2", "một hai"),
    ],
)
def test_numbers_in_context(text, expected):
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("xin chào,bạn", "xin chào bạn"),
        ("Xin chào!!! Bạn... khỏe không?", "xin chào bạn khỏe không"),
        ("“Việt Nam” (VN) – đẹp; «lắm»", "việt nam vn đẹp lắm"),
        ("Bà Rịa-Vũng Tàu", "bà rịa vũng tàu"),
        ("don't", "dont"),
        ("  nhiều \t khoảng\n\ntrắng  ", "nhiều khoảng trắng"),
        ("xin\u200bchào\ufeff", "xin chào"),
    ],
)
def test_punctuation_becomes_word_breaks_and_whitespace_collapses(text, expected):
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ĐÀ NẴNG", "đà nẵng"),
        ("Đường", "đường"),
        ("ƯỚC MƠ", "ước mơ"),
        ("TIẾNG VIỆT", "tiếng việt"),
        ("Ðại học", "đại học"),  # Icelandic eth, a legacy stand-in for Đ
    ],
)
def test_vietnamese_capitals_are_lowercased(text, expected):
    assert normalize_text(text) == expected


@pytest.mark.parametrize("text", ["Tiếng Việt có dấu", "HÒA BÌNH, 2024!", "Thuỷ khuỷu người quý", "ĐƯỢC"])
def test_nfd_input_gives_identical_output(text):
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text
    assert normalize_text(nfd) == normalize_text(text)
    assert unicodedata.is_normalized("NFC", normalize_text(nfd))


# (classic, modern): the open syllables oa, oe, uy, with the mark on either vowel in the input.
TONE_PAIRS = [
    ("hòa", "hoà"),
    ("hóa", "hoá"),
    ("họa", "hoạ"),
    ("tỏa", "toả"),
    ("khỏe", "khoẻ"),
    ("lòe", "loè"),
    ("thủy", "thuỷ"),
    ("thúy", "thuý"),
    ("lũy", "luỹ"),
    ("ủy", "uỷ"),
]


@pytest.mark.parametrize("classic, modern", TONE_PAIRS)
def test_classic_placement_puts_mark_on_first_vowel_of_open_oa_oe_uy(classic, modern):
    assert normalize_text(modern, "classic") == classic
    assert normalize_text(classic, "classic") == classic


@pytest.mark.parametrize("classic, modern", TONE_PAIRS)
def test_modern_placement_puts_mark_on_second_vowel_of_open_oa_oe_uy(classic, modern):
    assert normalize_text(classic, "modern") == modern
    assert normalize_text(modern, "modern") == modern


FIXED_PLACE_SYLLABLES = (
    "hoàn toán hoạch khoét huỳnh quýt "  # a final consonant: mark on the last vowel
    "khuyến uyên quyền người thuở mưa "  # a vowel with a diacritic takes the mark
    "ngoài xoáy khuỷu ngoẹo "  # a following vowel: mark in the middle
    "quý quà quẻ già gì giữa "  # the u of "qu" and the i of "gi" belong to the consonant
    "mái mía múa túi của"
).split()


@pytest.mark.parametrize("word", FIXED_PLACE_SYLLABLES)
def test_syllables_outside_open_oa_oe_uy_keep_their_mark_in_both_styles(word):
    assert normalize_text(word, "classic") == word
    assert normalize_text(word, "modern") == word


@pytest.mark.parametrize(
    "misplaced, fixed",
    [("hòan", "hoàn"), ("tóan", "toán"), ("qúy", "quý"), ("gìa", "già"), ("ngòai", "ngoài"), ("mưả", "mửa")],
)
def test_misplaced_tone_marks_are_moved_to_their_place(misplaced, fixed):
    assert normalize_text(misplaced) == fixed


def test_loanword_letters_are_kept():
    text = normalize_text("Wifi, Jazz, FIFA, Zalo")
    assert text == "wifi jazz fifa zalo"
    assert unknown_characters(text) == []


@pytest.mark.parametrize(
    "text, unknown",
    [
        ("người tuyết ☃", ["☃"]),
        ("chữ 漢字", ["字", "漢"]),
        ("góc α và β", ["α", "β"]),
        ("giá 5$", ["$"]),
    ],
)
def test_unknown_symbols_are_kept_and_reported(text, unknown):
    normalized = normalize_text(text)
    assert all(char in normalized for char in unknown)
    assert unknown_characters(normalized) == unknown


def test_unknown_characters_is_empty_for_clean_text():
    assert unknown_characters(normalize_text("Hòa bình, 2024!")) == []


def test_normalisation_is_idempotent():
    text = "Thuỷ ĐIỆN Hoà Bình: 1.920 MW (năm 1994) – 25% ☃"
    for style in TONE_PLACEMENTS:
        once = normalize_text(text, style)
        assert normalize_text(once, style) == once


def test_unknown_tone_placement_is_rejected():
    with pytest.raises(ValueError, match="tone_placement"):
        normalize_text("hòa", "new")
