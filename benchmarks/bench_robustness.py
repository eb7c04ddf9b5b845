"""Robustness: greedy CER of a model beyond its clean synthetic test split (issue 19's conditions).

Three tables, all greedy decoding through ``Transcriber`` (the project's inference path, which resamples
anything to 16 kHz):

1. the synthetic test split (held-out sentences, voice settings train never used) clean, and the same
   utterances under seven recording conditions made with the tools the issue names (numpy noise, sox,
   LAME through ffmpeg), each seeded; an SNR is against the power of the whole clean file. The clean
   CER is the baseline every ratio divides by. Also 100 held-out sentences of ``../shared`` spoken in the
   voice settings synth reserves for test;
2. first word wrong: the share of utterances whose first normalised word differs from the reference's,
   on the clean audio as recorded and with the leading silence trimmed to the speech onset;
3. zero-shot on the real recordings of ``../shared/data`` (VIVOS sentences, isolated syllables with tone
   accuracy, 8 kHz telephone phrases); rows say "skipped" where ``../shared`` is absent.

    .venv/bin/python -m benchmarks.bench_robustness --model runs/demo/model [--corpus data/demo]
        [--count N] [--real-count N]     # --count 30 --real-count 30: a quick run
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from ai2text_hf.data.audio import load_audio
from ai2text_hf.data.synth import SynthConfig, coloured_noise, read_sentences, synthesize_corpus
from ai2text_hf.inference import Transcriber
from ai2text_hf.metrics import error_rates, strip_tone
from ai2text_hf.normalization_vi import normalize_text

from .common import REPO, SHARED, print_table

SR = 16000
SEED = 19
ONSET_TOP_DB = 35.0  # speech starts at the first 10 ms frame within this of the loudest one...
ONSET_ABOVE_FLOOR_DB = 12.0  # ...and this far above the quietest (a noise floor is not speech)
HELD_OUT_SENTENCES = 100
REAL_SETS = {  # folder under ../shared/data -> what it holds
    "real-vi": "VIVOS read sentences, 16 kHz, 2 speakers",
    "real-syllables": "isolated syllables, one northern speaker, 16 kHz",
    "real-keywords-8k": "8 short phrases over an 8 kHz telephone channel, many speakers",
}


@dataclass(frozen=True)
class Condition:
    """A recording condition: ``apply(index, waves, rng, scratch)`` is utterance ``index`` put through it."""

    name: str
    how: str
    apply: Callable[[int, list[np.ndarray], np.random.Generator, Path], np.ndarray]
    tools: tuple[str, ...] = ()


def _power(wave: np.ndarray) -> float:
    return float(np.mean(np.square(wave, dtype=np.float64))) + 1e-20


def _add_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float, reference: np.ndarray) -> np.ndarray:
    """``signal`` plus ``noise`` scaled so that ``reference`` (the speech) is ``snr_db`` above it."""
    scale = np.sqrt(_power(reference) / (_power(noise) * 10 ** (snr_db / 10)))
    return (signal + scale * noise).astype(np.float32)


def _run_tools(wave: np.ndarray, scratch: Path, commands: list[list[str]]) -> np.ndarray:
    """Write ``wave`` to in.wav in ``scratch``, run the commands there and read their out.wav back at 16 kHz
    with the project's loader (so an 8 kHz result is resampled as at inference)."""
    sf.write(scratch / "in.wav", wave, SR, subtype="FLOAT")
    for command in commands:
        subprocess.run(command, cwd=scratch, check=True, capture_output=True)
    return load_audio(scratch / "out.wav", SR)[0]


def _sox(*effects: str) -> Callable[[int, list[np.ndarray], np.random.Generator, Path], np.ndarray]:
    # -R: sox seeds its dither with a fixed number, so every run writes the same samples.
    return lambda i, waves, rng, scratch: _run_tools(waves[i], scratch, [["sox", "-R", "in.wav", "out.wav", *effects]])


def _pink_noise(i: int, waves: list[np.ndarray], rng: np.random.Generator, scratch: Path) -> np.ndarray:
    padded = np.concatenate([np.zeros(int(0.3 * SR), np.float32), waves[i]])
    return _add_at_snr(padded, coloured_noise(len(padded), 1.0, rng, SR), 20.0, waves[i])


def _babble(i: int, waves: list[np.ndarray], rng: np.random.Generator, scratch: Path) -> np.ndarray:
    others = rng.choice([j for j in range(len(waves)) if j != i], size=2, replace=False)
    babble = sum(np.resize(waves[j], len(waves[i])) for j in others)  # a shorter one repeats
    return _add_at_snr(waves[i], babble, 10.0, waves[i])


def _telephone(i: int, waves: list[np.ndarray], rng: np.random.Generator, scratch: Path) -> np.ndarray:
    commands = [
        ["sox", "-R", "in.wav", "-r", "8000", "-b", "16", "mid.gsm", "sinc", "300-3400"],
        ["sox", "-R", "mid.gsm", "out.wav"],
    ]
    return _run_tools(waves[i], scratch, commands)


def _mp3(i: int, waves: list[np.ndarray], rng: np.random.Generator, scratch: Path) -> np.ndarray:
    ffmpeg = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i"]
    commands = [[*ffmpeg, "in.wav", "-c:a", "libmp3lame", "-b:a", "24k", "mid.mp3"], [*ffmpeg, "mid.mp3", "out.wav"]]
    return _run_tools(waves[i], scratch, commands)


def _quiet(i: int, waves: list[np.ndarray], rng: np.random.Generator, scratch: Path) -> np.ndarray:
    noise = rng.standard_normal(len(waves[i])) * 10 ** (-70 / 20)
    return (waves[i] * 10 ** (-30 / 20) + noise).astype(np.float32)


CONDITIONS = (
    Condition("pink noise, SNR 20 dB, 0.3 s noise lead-in", "1/f noise (numpy)", _pink_noise),
    Condition("babble, SNR 10 dB", "sum of two other test utterances", _babble),
    Condition("reverberation", "`sox reverb 60 50 80`", _sox("reverb", "60", "50", "80"), ("sox",)),
    Condition("telephone: 300-3400 Hz, 8 kHz, GSM 06.10", "`sox sinc 300-3400`, .gsm and back", _telephone, ("sox",)),
    Condition("MP3 24 kb/s", "ffmpeg libmp3lame -b:a 24k and back", _mp3, ("ffmpeg",)),
    Condition("tempo x1.25", "`sox tempo 1.25`", _sox("tempo", "1.25"), ("sox",)),
    Condition("-30 dB gain + white noise at -70 dBFS", "numpy", _quiet),
)


def missing_tools(condition: Condition) -> str | None:
    """Why the machine cannot make this condition, or None."""
    for tool in condition.tools:
        if shutil.which(tool) is None:
            return f"skipped: {tool} not installed"
    if condition.apply is _telephone and " gsm " not in _output("sox", "-h"):
        return "skipped: this sox cannot write GSM"
    if condition.apply is _mp3 and "libmp3lame" not in _output("ffmpeg", "-hide_banner", "-encoders"):
        return "skipped: this ffmpeg lacks libmp3lame"
    return None


def _output(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True).stdout


def degrade(condition_index: int, waves: list[np.ndarray], workers: int) -> list[np.ndarray]:
    """Every wave through one condition; each utterance's randomness is seeded by (condition, utterance)."""
    condition = CONDITIONS[condition_index]

    def one(i: int) -> np.ndarray:
        with tempfile.TemporaryDirectory() as scratch:
            return condition.apply(i, waves, np.random.default_rng([SEED, condition_index, i]), Path(scratch))

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(len(waves))))


def speech_onset(wave: np.ndarray) -> int:
    """First sample of the first 10 ms frame loud enough to be speech (see ONSET_TOP_DB, ONSET_ABOVE_FLOOR_DB)."""
    rms = librosa.feature.rms(y=wave, frame_length=160, hop_length=160, center=False)[0]
    levels = 20 * np.log10(rms + 1e-10)
    threshold = max(levels.max() - ONSET_TOP_DB, np.percentile(levels, 5) + ONSET_ABOVE_FLOOR_DB)
    return int(np.argmax(levels >= threshold)) * 160


def first_word_wrong(references: list[str], hypotheses: list[str], tone_placement: str) -> float:
    def first(text: str) -> str:
        words = normalize_text(text, tone_placement).split()
        return words[0] if words else ""

    return float(np.mean([first(r) != first(h) for r, h in zip(references, hypotheses)]))


def tone_of(syllable: str) -> str:
    """The combining tone mark of a syllable ("" when unmarked): what ``strip_tone`` removes."""
    nfd = Counter(unicodedata.normalize("NFD", syllable))
    return "".join((nfd - Counter(unicodedata.normalize("NFD", strip_tone(syllable)))).elements())


def tone_accuracy(references: list[str], hypotheses: list[str], tone_placement: str) -> float:
    """Share of one-syllable references whose tone the hypothesis's first syllable carries (none: wrong)."""
    right = []
    for reference, hypothesis in zip(references, hypotheses):
        words = normalize_text(hypothesis, tone_placement).split()
        right.append(bool(words) and tone_of(words[0]) == tone_of(normalize_text(reference, tone_placement)))
    return float(np.mean(right))


def read_rows(metadata: Path, count: int | None, split: str | None = None) -> list[dict[str, str]]:
    """Rows of a metadata CSV (of one split), ``count`` of them spread evenly over the file when given."""
    with metadata.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if split is None or row.get("split") == split]
    if count is not None and count < len(rows):
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, count).round().astype(int)]
    return rows


class Scorer:
    """Greedy transcription and error rates, with the seconds of audio and of compute it took."""

    def __init__(self, model: str):
        self.transcriber = Transcriber(model, device="cpu")
        self.tone_placement = self.transcriber.tokenizer.tone_placement
        self.audio_seconds = 0.0
        self.compute_seconds = 0.0

    def transcribe(self, waves: list[np.ndarray]) -> list[str]:
        start = time.perf_counter()
        texts = [d.text for d in self.transcriber.transcribe_arrays(waves, word_timestamps=False)]
        self.compute_seconds += time.perf_counter() - start
        self.audio_seconds += sum(len(w) for w in waves) / SR
        return texts

    def rates(self, references: list[str], hypotheses: list[str]) -> dict[str, float]:
        return error_rates(references, hypotheses, self.tone_placement)


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def held_out_voices(count: int) -> tuple[list[np.ndarray], list[str]] | None:
    """``count`` sentences of ../shared's test list spoken in the voice settings synth reserves for test."""
    sentences_file = SHARED / "data" / "sentences" / "test.tsv"
    if not sentences_file.is_file() or shutil.which("espeak-ng") is None:
        return None
    sentences = read_sentences(sentences_file)[: count + 1]  # + 1: synth keeps at least one for train
    with tempfile.TemporaryDirectory() as scratch:
        config = SynthConfig(val_sentences=0, test_sentences=len(sentences) - 1, train_renditions=1)
        metadata = synthesize_corpus(sentences, scratch, config, progress=False)
        rows = read_rows(metadata, None, "test")
        return [load_audio(Path(scratch) / row["file_path"], SR)[0] for row in rows], [r["transcript"] for r in rows]


def synthetic_tables(scorer: Scorer, corpus: Path, count: int | None, workers: int, model: str) -> None:
    if not (corpus / "metadata.csv").is_file():
        raise SystemExit(f"no {corpus}/metadata.csv: run `make demo` (or ai2text synth), or pass --corpus")
    rows = read_rows(corpus / "metadata.csv", count, "test")
    if not rows:
        raise SystemExit(f"{corpus}/metadata.csv has no test rows: run `make demo` (or ai2text synth) first")
    references = [row["transcript"] for row in rows]
    waves = [load_audio(corpus / row["file_path"], SR)[0] for row in rows]
    clean_texts = scorer.transcribe(waves)
    clean = scorer.rates(references, clean_texts)
    table = [("clean (baseline)", "as synthesised", pct(clean["cer"]), pct(clean["wer"]), "1.00")]
    degraded = []
    for index, condition in enumerate(CONDITIONS):
        skipped = missing_tools(condition)
        if skipped:
            table.append((condition.name, condition.how, skipped, "", ""))
            continue
        rates = scorer.rates(references, scorer.transcribe(degrade(index, waves, workers)))
        degraded.append(rates["cer"])
        ratio = f"{rates['cer'] / clean['cer']:.2f}" if clean["cer"] else "n/a"
        table.append((condition.name, condition.how, pct(rates["cer"]), pct(rates["wer"]), ratio))
    if degraded:
        mean = float(np.mean(degraded))
        ratio = f"{mean / clean['cer']:.2f}" if clean["cer"] else "n/a"
        table.append((f"**mean of the {len(degraded)} conditions**", "", f"**{pct(mean)}**", "", ratio))
    held_out = held_out_voices(min(HELD_OUT_SENTENCES, len(rows)))
    if held_out is None:
        table.append(("held-out sentences, unseen voices", "", "skipped: ../shared not present", "", ""))
    else:
        rates = scorer.rates(held_out[1], scorer.transcribe(held_out[0]))
        ratio = f"{rates['cer'] / clean['cer']:.2f}" if clean["cer"] else "n/a"
        how = f"{len(held_out[1])} sentences of ../shared sentences/test.tsv, synth's reserved test voice settings"
        table.append(("held-out sentences, unseen voices, clean", how, pct(rates["cer"]), pct(rates["wer"]), ratio))
    shown = corpus.relative_to(REPO) if corpus.is_relative_to(REPO) else corpus
    print_table(
        f"Robustness on the synthetic test split ({shown}, {len(rows)} utterances: held-out sentences, voice "
        f"settings train never used), greedy, model {model}",
        table,
        ("condition", "made with", "CER", "WER", "CER / clean"),
    )

    onsets = [speech_onset(w) for w in waves]
    trimmed_texts = scorer.transcribe([w[o:] for w, o in zip(waves, onsets)])
    trimmed = scorer.rates(references, trimmed_texts)
    lead = np.array(onsets) / SR
    print_table(
        f"First word wrong on the synthetic test split ({len(rows)} utterances), greedy, model {model}",
        [
            (
                f"as recorded (speech starts after {np.median(lead):.2f} s, median)",
                pct(first_word_wrong(references, clean_texts, scorer.tone_placement)),
                pct(clean["cer"]),
            ),
            (
                "leading silence trimmed to the speech onset (energy threshold)",
                pct(first_word_wrong(references, trimmed_texts, scorer.tone_placement)),
                pct(trimmed["cer"]),
            ),
        ],
        ("audio", "first word wrong", "CER"),
    )


def real_table(scorer: Scorer, count: int | None, model: str) -> None:
    table = []
    for name, what in REAL_SETS.items():
        folder = SHARED / "data" / name
        if not (folder / "metadata.csv").is_file():
            table.append((name, what, "", "skipped: ../shared not present", "", ""))
            continue
        rows = read_rows(folder / "metadata.csv", count)
        references = [row["transcript"] for row in rows]
        hypotheses = scorer.transcribe([load_audio(folder / row["file_path"], SR)[0] for row in rows])
        rates = scorer.rates(references, hypotheses)
        tones = pct(tone_accuracy(references, hypotheses, scorer.tone_placement)) if name == "real-syllables" else ""
        table.append((name, what, str(len(rows)), pct(rates["cer"]), pct(rates["wer"]), tones))
    print_table(
        f"Zero-shot on real recordings (../shared/data), greedy, model {model}",
        table,
        ("set", "what", "utterances", "CER", "WER", "tone right"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "runs" / "demo" / "model"), help="trained model folder")
    parser.add_argument("--corpus", default="data/demo", help="synthetic corpus (metadata.csv), from the repository")
    parser.add_argument("--count", type=int, help="test utterances to use, spread over the split (default all)")
    parser.add_argument("--real-count", type=int, help="recordings per real set, spread over it (default all)")
    parser.add_argument("--workers", type=int, default=4, help="utterances degraded at once (sox/ffmpeg processes)")
    args = parser.parse_args()
    if args.count is not None and args.count < 3:
        parser.error("--count must be at least 3: babble mixes two other test utterances into each")

    start = time.perf_counter()
    scorer = Scorer(args.model)
    synthetic_tables(scorer, REPO / args.corpus, args.count, args.workers, args.model)
    real_table(scorer, args.real_count, args.model)
    print(
        f"\n{scorer.audio_seconds / 60:.1f} min of audio transcribed in {scorer.compute_seconds:.0f} s; "
        f"{time.perf_counter() - start:.0f} s in all."
    )


if __name__ == "__main__":
    main()
