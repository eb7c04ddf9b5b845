"""``ai2text align``, ``segment`` and ``clean``: word timings, cutting long recordings, dropping bad rows."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ..corpus.formats import FORMATS
from ..corpus.options import AlignOptions, CleanOptions, SegmentOptions
from .options import add_dataclass_arguments, dataclass_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    _add_align(sub)
    _add_segment(sub)
    _add_clean(sub)


def _add_text_arguments(p: argparse.ArgumentParser) -> None:
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text", help="The transcript, as written (numbers, punctuation and case are kept).")
    text.add_argument("--text-file", help="A UTF-8 file holding the transcript.")


def _add_align(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align",
        help="Word and character timings of known transcripts (CTC forced alignment).",
        description="Align transcripts to audio with a CTC model: word timings (as the words were written) and "
        "character timings, a score each, and the stretches of text the audio does not seem to hold. Input: one "
        "audio file with --text/--text-file, a metadata CSV (--csv) or a prepared dataset split (--dataset).",
    )
    p.add_argument("audio", nargs="?", help="One audio file (with --text or --text-file).")
    _add_text_arguments(p)
    p.add_argument("--csv", help="A metadata CSV (file_path, transcript): every row is aligned.")
    p.add_argument("--audio-root", help="Folder the CSV's file_path values are relative to (default: the CSV's).")
    p.add_argument("--dataset", help="A prepared dataset folder (ai2text prepare): every row of --split is aligned.")
    p.add_argument("--split", default="test", help="Split of --dataset (default test).")
    p.add_argument("--model", required=True, help="Model folder (any CTC model folder), e.g. runs/demo/model.")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=["json"], help="Output format(s) (default json).")
    p.add_argument(
        "--output",
        help="One input: the output file (with one format) or folder; many inputs: a folder, with one file per "
        "input and format plus report.csv. Default for one input and one format: standard output.",
    )
    add_dataclass_arguments(p, AlignOptions)
    p.set_defaults(handler=_run_align)


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="Cut a long recording into training utterances with a metadata CSV.",
        description="With its transcript (--text/--text-file): align and cut at pauses; parts that do not align "
        "are listed in excluded.csv and left out. Without one: voice-activity segmentation (silero-vad), each part "
        "transcribed by the model. Writes OUTPUT/metadata.csv (ready for `ai2text prepare`) and OUTPUT/wavs/.",
    )
    p.add_argument("audio", help="The long recording.")
    _add_text_arguments(p)
    p.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    p.add_argument("--output", required=True, help="Folder for metadata.csv, excluded.csv and wavs/.")
    p.add_argument("--speaker-id", default="", help="speaker_id written on every row.")
    add_dataclass_arguments(p, SegmentOptions)
    add_dataclass_arguments(p, AlignOptions)
    p.set_defaults(handler=_run_segment)


def _add_clean(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "clean",
        help="Drop rows of a metadata CSV whose audio and transcript disagree; report each and why.",
        description="Score every row with a model (loss per character, CER against its transcript, alignment "
        "score, characters per second, declared vs real duration) and write the rows that pass to a new CSV "
        "(input unchanged) and the dropped ones, with their reasons, to <output>.dropped.csv.",
    )
    p.add_argument("csv", help="The metadata CSV (file_path, transcript[, duration, ...]).")
    p.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    p.add_argument("--output", help="The filtered CSV (default <csv name>.clean.csv beside the input).")
    p.add_argument("--audio-root", help="Folder the CSV's file_path values are relative to (default: the CSV's).")
    add_dataclass_arguments(p, CleanOptions)
    p.set_defaults(handler=_run_clean)


def _transcript(args: argparse.Namespace) -> str | None:
    if args.text_file:
        return Path(args.text_file).read_text(encoding="utf-8")
    return args.text


def _aligner(args: argparse.Namespace):
    from ..corpus.align import Aligner
    from ..inference import Transcriber

    return Aligner(Transcriber(args.model), dataclass_from_args(AlignOptions, args))


def _run_align(args: argparse.Namespace) -> None:
    from ..corpus.align import AlignItem, render
    from ..corpus.inputs import items_from_csv, items_from_dataset

    sources = [bool(args.audio), bool(args.csv), bool(args.dataset)]
    if sum(sources) != 1:
        raise ValueError("Give one input: an audio file (with --text/--text-file), --csv or --dataset.")
    text = _transcript(args)
    if args.audio:
        if text is None:
            raise ValueError("An audio file needs its transcript: --text '...' or --text-file FILE.")
        items = [AlignItem(Path(args.audio).stem, text, path=Path(args.audio))]
    elif args.csv:
        items = items_from_csv(args.csv, args.audio_root)
    else:
        items = items_from_dataset(args.dataset, args.split)
    single = bool(args.audio)
    if not single and not args.output:
        raise ValueError("Many inputs need --output FOLDER (one file per input and format, plus report.csv).")
    to_file = single and args.output and len(args.format) == 1 and Path(args.output).suffix
    folder = None if (single and not args.output) or to_file else Path(args.output)
    if single and folder is None and not to_file and len(args.format) > 1:
        raise ValueError("Several formats need --output FOLDER.")
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    aligner = _aligner(args)
    report = []
    for result in aligner.align(items):
        unaligned = sum(span.last - span.first + 1 for span in result.unaligned)
        report.append(
            {
                "name": result.name,
                "duration": round(result.duration, 3),
                "score": round(result.score, 4),
                "words": len(result.words),
                "unaligned_words": unaligned,
                "error": result.error or "",
            }
        )
        if result.error:
            print(f"{result.name}: {result.error}", file=sys.stderr)
            if single:
                raise ValueError(f"{args.audio}: {result.error}")
            continue
        for span in result.unaligned:
            where = f"{span.start:.2f}-{span.end:.2f} s" if span.start is not None else "no audio"
            print(f"{result.name}: unaligned ({where}): {span.text!r}: {span.reason}", file=sys.stderr)
        for fmt in args.format:
            rendered = render(result, fmt)
            if folder is not None:
                (folder / f"{result.name}.{'TextGrid' if fmt == 'textgrid' else fmt}").write_text(
                    rendered, encoding="utf-8"
                )
            elif to_file:
                Path(args.output).write_text(rendered, encoding="utf-8")
            else:
                sys.stdout.write(rendered)
    if folder is not None and not single:
        with open(folder / "report.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(report[0]))
            writer.writeheader()
            writer.writerows(report)
        failed = sum(bool(r["error"]) for r in report)
        print(f"Aligned {len(report) - failed} of {len(report)} inputs -> {folder} (report.csv)", file=sys.stderr)


def _run_segment(args: argparse.Namespace) -> None:
    from ..corpus.segment import segment_recording, segment_untranscribed

    options = dataclass_from_args(SegmentOptions, args)
    text = _transcript(args)
    audio, output = Path(args.audio), Path(args.output)
    if text is None:
        from ..inference import Transcriber

        result = segment_untranscribed(Transcriber(args.model), audio, output, options, args.speaker_id)
    else:
        result = segment_recording(_aligner(args), audio, text, output, options, args.speaker_id)
    seconds = sum(c.end - c.start for c in result.kept)
    print(
        f"{len(result.kept)} utterances ({seconds / 60:.1f} min) -> {result.metadata}; "
        f"{len(result.excluded)} parts left out -> {result.excluded_report}"
    )


def _run_clean(args: argparse.Namespace) -> None:
    from ..corpus.clean import clean_metadata

    result = clean_metadata(
        _aligner(args), args.csv, args.output, args.audio_root, dataclass_from_args(CleanOptions, args)
    )
    print(result.summary())


SUBTITLE_FORMATS = ("srt", "vtt")


def add_subtitle_arguments(p: argparse.ArgumentParser) -> None:
    """``--format srt|vtt`` and ``--output-dir`` for ``ai2text transcribe``."""
    p.add_argument(
        "--format",
        choices=SUBTITLE_FORMATS,
        help="Subtitles from the word timestamps instead of text: to standard output for one file, else one "
        "<name>.srt/.vtt per file in --output-dir.",
    )
    p.add_argument("--output-dir", help="Folder for the subtitle files (existing files are never overwritten).")


def write_subtitles(results: list[dict], fmt: str, output_dir: str | None) -> None:
    """Subtitles of ``Transcriber.transcribe_batch`` results."""
    from ..corpus.formats import word_subtitles

    if output_dir is None and len(results) > 1:
        raise ValueError(f"Subtitles of {len(results)} files need --output-dir FOLDER.")
    targets = [Path(output_dir) / f"{Path(r['file']).stem}.{fmt}" for r in results] if output_dir else []
    taken = [str(t) for t in targets if t.exists()]
    if taken or len(set(targets)) < len(targets):
        raise FileExistsError(f"Subtitle files already exist or two inputs share a name: {taken or targets}")
    for index, result in enumerate(results):
        text = word_subtitles(result["words"], fmt)
        if not targets:
            sys.stdout.write(text)
            continue
        targets[index].parent.mkdir(parents=True, exist_ok=True)
        targets[index].write_text(text, encoding="utf-8")
        print(f"{result['file']} -> {targets[index]}", file=sys.stderr)
