"""Options of the corpus tools, in a module that imports neither torch nor transformers (the CLI builds its
arguments from them on every start)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AlignOptions:
    """How alignment cuts long inputs and what it reports as unaligned."""

    chunk_seconds: float = field(
        default=60.0, metadata={"help": "forced alignment runs on pieces of about this many seconds"}
    )
    max_gap_seconds: float = field(
        default=180.0,
        metadata={"help": "audio longer than this without a word the model agrees on is reported as unaligned"},
    )
    min_word_score: float = field(
        default=0.1, metadata={"help": "words whose mean label probability is below this are reported unaligned"}
    )
    snap_seconds: float = field(
        default=0.8,
        metadata={
            "help": "a word start or end next to a pause moves up to this far to where the sound starts or stops "
            "(0 turns it off): a CTC model marks a word where it is sure of it, often after its onset"
        },
    )
    anchor_words: int = field(
        default=3, metadata={"help": "agreeing words in a row (model transcript vs text) that make a cut point"}
    )


@dataclass
class SegmentOptions:
    """Where recordings are cut and what is left out."""

    max_seconds: float = field(default=15.0, metadata={"help": "longest utterance written"})
    pause_seconds: float = field(default=0.4, metadata={"help": "a pause between words this long ends an utterance"})
    min_seconds: float = field(
        default=1.0, metadata={"help": "shorter utterances are merged with a neighbour when that stays under max"}
    )
    padding_seconds: float = field(
        default=0.05,
        metadata={
            "help": "audio kept before the first and after the last word (at most half a pause); small, since "
            "word edges are already moved to where the sound starts and stops"
        },
    )
    min_score: float = field(default=0.3, metadata={"help": "utterances whose mean word score is lower are left out"})
    max_model_cer: float = field(
        default=0.6,
        metadata={"help": "above this CER of the model's transcript against the text, the two are taken not to match"},
    )
    min_aligned_share: float = field(
        default=0.5, metadata={"help": "below this share of aligned words, the transcript is taken not to match"}
    )


@dataclass
class CleanOptions:
    """Thresholds; ``None`` for loss and CER means "an outlier of this corpus" (see the module docstring)."""

    max_loss_per_char: float | None = field(
        default=None, metadata={"help": "drop rows above this CTC loss per character (default: corpus outliers)"}
    )
    max_cer: float | None = field(
        default=None, metadata={"help": "drop rows whose transcript differs more from the model's (default: outliers)"}
    )
    min_align_score: float = field(default=0.1, metadata={"help": "drop rows whose forced alignment scores lower"})
    max_chars_per_second: float = field(default=25.0, metadata={"help": "drop rows read faster than this"})
    max_duration_mismatch: float = field(
        default=0.5, metadata={"help": "drop rows whose declared duration is off by more seconds than this"}
    )
    strict: bool = field(
        default=False,
        metadata={
            "help": "drop a row when any one threshold is crossed. By default the CER and the alignment score, which "
            "read the model's single best path, drop a row only together or with the loss per character (which drops "
            "alone, as the non-model checks do): a clean row the model merely mishears is kept"
        },
    )
    spread: float = field(default=5.0, metadata={"help": "outlier thresholds: median + spread x MAD"})
    min_cer: float = field(default=0.5, metadata={"help": "floor of the automatic CER threshold"})
    min_loss_per_char: float = field(default=3.0, metadata={"help": "floor of the automatic loss threshold"})
    batch_rows: int = field(default=256, metadata={"help": "rows whose audio is held in memory at once"})
