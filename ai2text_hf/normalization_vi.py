"""Vietnamese text normalisation for CTC speech-recognition labels.

This module is deliberately self-contained (standard library only, no package imports): it is uploaded to
the Hugging Face Hub next to the model weights and imported by the tokenizer through a single-dot relative
import, so a model loaded with ``trust_remote_code=True`` normalises text exactly as it did during training.

:func:`normalize_text` turns written text into what a speaker says, as a string of characters a CTC head can
emit:

1. Unicode NFC and lowercasing (``str.lower`` handles every Vietnamese capital, ``Đ`` included), so NFD
   input (e.g. from macOS) gives byte-identical labels. ``ð``/``Ð`` (Icelandic eth, a common legacy-encoding
   stand-in for ``đ``) becomes ``đ``.
2. Invisible format characters (BOMs, soft hyphens, joiners) are removed; control characters and the
   zero-width space become spaces. They carry no sound and would only show up as false "unknown characters".
3. Numbers are read out: ``1.000.000`` (the dot groups thousands), ``3,5`` (the comma is the decimal mark),
   ``-5``, ``25%``; a dot between digits that do not form thousand groups (``3.5``) is read "chấm".
   Ungrouped integers with a leading zero or more than 15 digits (phone numbers, codes) are read digit by
   digit. Digits glued to letters are split from them (``covid19`` -> ``covid mười chín``). Times, dates,
   units, currencies and abbreviations are out of scope: they need context this rule set does not have.
4. Punctuation (Unicode categories ``P*``) becomes a space, so ``chào,bạn`` and ``chào-bạn`` give two words;
   an apostrophe inside a word is dropped instead (``don't`` -> ``dont``) to avoid a spurious one-letter word.
5. Tone marks are placed by the standard orthographic rule, with the open syllables ``oa``/``oe``/``uy``
   following ``tone_placement`` (see :data:`TONE_PLACEMENTS`). Misplaced marks (``hòan``, ``qúy``) are fixed.
6. Whitespace is collapsed and stripped.

Anything else outside :data:`VIETNAMESE_ALPHABET` (symbols such as ``☃`` or ``$``, CJK, Greek, leftover
combining marks) is kept, never dropped, so callers can find and report it with :func:`unknown_characters`.
Spelling variants (``kĩ``/``kỹ``, ``quí``/``quý``) are not unified.
"""

import re
import unicodedata

_BASE_LETTERS = "aăâbcdđeêghiklmnoôơpqrstuưvxy"
_VOWELS = "aăâeêioôơuưy"
# Combining marks in the conventional tone order: huyền, sắc, hỏi, ngã, nặng.
_TONE_MARKS = ("\u0300", "\u0301", "\u0309", "\u0303", "\u0323")
_LOANWORD_LETTERS = "fjwz"

VIETNAMESE_ALPHABET: tuple[str, ...] = (
    *_BASE_LETTERS,
    *(unicodedata.normalize("NFC", vowel + mark) for vowel in _VOWELS for mark in _TONE_MARKS),
    *_LOANWORD_LETTERS,
)
"""The 93 lowercase NFC letters a label may contain, in this fixed order (a tokenizer's ids depend on it):
the 29 base letters in Vietnamese alphabetical order (a ă â b c d đ e ê g h i k l m n o ô ơ p q r s t u ư v
x y); then, for each vowel a ă â e ê i o ô ơ u ư y, its 5 toned forms in the order huyền, sắc, hỏi, ngã,
nặng (à á ả ã ạ, ằ ắ ẳ ẵ ặ, ...); then f j w z for loanwords."""

TONE_PLACEMENTS: tuple[str, ...] = ("classic", "modern")
"""Where the tone mark goes in the open syllables oa, oe, uy: "classic" (the default, the more common style
and what underthesea produces) writes hòa, khỏe, thủy; "modern" writes hoà, khoẻ, thuỷ. Every other syllable
(hoàn, toán, khuyến, quý, ngoài, ...) has a single correct position, the same in both styles."""

_ALPHABET_SET = frozenset(VIETNAMESE_ALPHABET)

# (toneless vowel, tone index 0..5) for every plain or toned vowel; tone 0 means no mark.
_SPLIT_TONE: dict[str, tuple[str, int]] = {vowel: (vowel, 0) for vowel in _VOWELS}
_SPLIT_TONE.update(
    {
        unicodedata.normalize("NFC", vowel + mark): (vowel, tone)
        for vowel in _VOWELS
        for tone, mark in enumerate(_TONE_MARKS, start=1)
    }
)
_JOIN_TONE: dict[tuple[str, int], str] = {split: char for char, split in _SPLIT_TONE.items()}

# Onset, vowel nucleus and coda of a toneless syllable. "qu" and "gi" are onsets when a vowel follows (the u
# of "quý" and the i of "giá" belong to the consonant); "gì" backtracks to onset "g" + nucleus "i".
_SYLLABLE = re.compile(
    r"(ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdđghklmnprstvx]?)([aăâeêioôơuưy]{1,3})(ch|nh|ng|[cmnpt]?)"
)
_DIACRITIC_VOWELS = frozenset("ăâêôơư")

_DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")
_MAX_CARDINAL_DIGITS = 15
_NUMBER = re.compile(
    r"(?P<sign>(?<![\w.,])[-\u2212])?"
    r"(?P<int>[0-9]{1,3}(?:\.[0-9]{3})+(?![0-9])|[0-9]+)"
    r"(?:,(?P<comma>[0-9]+)|\.(?P<point>[0-9]+))?"
    r"(?P<percent>\s*%)?"
)
_INNER_APOSTROPHE = re.compile(r"(?<=[^\W\d_])['\u2019](?=[^\W\d_])")
_WORD = re.compile(r"\w+")


def _read_hundreds(n: int, full: bool) -> list[str]:
    """Read 0 < n < 1000; ``full`` (a higher group precedes) makes "không trăm" and "linh" spoken."""
    hundreds, tens, units = n // 100, n // 10 % 10, n % 10
    words = [_DIGITS[hundreds], "trăm"] if hundreds or full else []
    if tens == 1:
        words.append("mười")
    elif tens > 1:
        words += [_DIGITS[tens], "mươi"]
    elif units and words:
        words.append("linh")
    if units == 1 and tens > 1:
        words.append("mốt")
    elif units == 4 and tens > 1:
        words.append("tư")
    elif units == 5 and tens > 0:
        words.append("lăm")
    elif units:
        words.append(_DIGITS[units])
    return words


def _read_below_billion(n: int, full: bool) -> list[str]:
    words: list[str] = []
    for scale, name in ((10**6, "triệu"), (10**3, "nghìn"), (1, "")):
        group = n // scale % 1000
        if group:
            words += _read_hundreds(group, full or bool(words))
            if name:
                words.append(name)
    return words


def _read_cardinal(n: int) -> list[str]:
    """Read a non-negative integer; above 10^9 the count of "tỷ" is itself read (nghìn tỷ, tỷ tỷ)."""
    if n == 0:
        return ["không"]
    if n < 10**9:
        return _read_below_billion(n, full=False)
    billions, rest = divmod(n, 10**9)
    return [*_read_cardinal(billions), "tỷ", *_read_below_billion(rest, full=True)]


def _read_integer(digits: str) -> list[str]:
    """Leading zeros or very long digit strings mark codes (phone numbers, ids): read those digit by digit."""
    if (len(digits) > 1 and digits[0] == "0") or len(digits) > _MAX_CARDINAL_DIGITS:
        return [_DIGITS[int(d)] for d in digits]
    return _read_cardinal(int(digits))


def _read_fraction(digits: str) -> list[str]:
    """Short decimals are read as a number after their leading zeros (05 -> không năm), long ones digit by
    digit, as people say them."""
    if len(digits) > 3:
        return [_DIGITS[int(d)] for d in digits]
    return _read_integer(digits)


def _read_number(match: re.Match[str]) -> str:
    words = ["âm"] if match["sign"] else []
    integer = match["int"]
    # Thousand groups say "this is a quantity", however long or zero-led.
    words += _read_cardinal(int(integer.replace(".", ""))) if "." in integer else _read_integer(integer)
    if match["comma"] is not None:
        words += ["phẩy", *_read_fraction(match["comma"])]
    elif match["point"] is not None:
        words += ["chấm", *_read_fraction(match["point"])]
    if match["percent"]:
        words += ["phần", "trăm"]
    return f" {' '.join(words)} "


def _tone_index(nucleus: str, has_coda: bool, tone_placement: str) -> int:
    """Index of the vowel in ``nucleus`` that carries the tone mark, by the standard orthographic rule."""
    marked = [i for i, vowel in enumerate(nucleus) if vowel in _DIACRITIC_VOWELS]
    if marked:  # a vowel with a diacritic takes the mark (the ơ of ươ)
        return marked[-1]
    if has_coda:  # hoàn, toán, huỳnh
        return len(nucleus) - 1
    if len(nucleus) == 3:  # ngoài, khuỷu, ngoẹo
        return 1
    if nucleus in ("oa", "oe", "uy"):
        return 0 if tone_placement == "classic" else 1
    return 0  # mái, mía, múa, túi


def _place_tone(word: str, tone_placement: str) -> str:
    """Move the tone mark of one lowercase syllable to its place; words that are not one syllable with exactly
    one mark (loanwords, compounds, typos) are returned unchanged."""
    letters = [_SPLIT_TONE.get(char, (char, 0)) for char in word]
    tones = [tone for _, tone in letters if tone]
    if len(tones) != 1:
        return word
    bare = "".join(letter for letter, _ in letters)
    syllable = _SYLLABLE.fullmatch(bare)
    if syllable is None:
        return word
    onset, nucleus, coda = syllable.groups()
    position = len(onset) + _tone_index(nucleus, bool(coda), tone_placement)
    return bare[:position] + _JOIN_TONE[bare[position], tones[0]] + bare[position + 1 :]


def _clean_character(char: str) -> str:
    """Punctuation, controls and the zero-width space separate words; other invisible format characters
    vanish; everything else is kept for :func:`unknown_characters` to report."""
    category = unicodedata.category(char)
    if category == "Cc" or category.startswith("P") or char == "\u200b":
        return " "
    if category == "Cf":
        return ""
    return char


def normalize_text(text: str, tone_placement: str = "classic") -> str:
    """Normalise ``text`` into a CTC label: see the module docstring for the steps. Idempotent."""
    if tone_placement not in TONE_PLACEMENTS:
        raise ValueError(f"tone_placement must be one of {TONE_PLACEMENTS}, got {tone_placement!r}")
    text = unicodedata.normalize("NFC", text.lower()).replace("ð", "đ")
    text = _INNER_APOSTROPHE.sub("", text)
    text = _NUMBER.sub(_read_number, text)
    text = "".join(_clean_character(char) for char in text)
    text = _WORD.sub(lambda word: _place_tone(word.group(), tone_placement), text)
    return " ".join(text.split())


def unknown_characters(text: str) -> list[str]:
    """Sorted unique characters of an already normalised ``text`` outside :data:`VIETNAMESE_ALPHABET` (spaces
    excepted): the rows a data pipeline should report or drop, since the tokenizer maps these to ``<unk>``."""
    return sorted(set(text) - _ALPHABET_SET - {" "})
