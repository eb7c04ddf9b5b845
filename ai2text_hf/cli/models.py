"""``ai2text transcribe``, ``export``, ``push`` and ``serve``: using and shipping a trained model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..serving.limits import AudioLimits, StreamLimits
from ..streaming.options import StreamingOptions
from .compat import add_export_compat
from .corpus import add_subtitle_arguments, write_subtitles
from .decoding import add_decoding_options, decoding_options
from .options import add_dataclass_arguments, dataclass_from_args

if TYPE_CHECKING:
    from ..serving import ServeSettings


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    _add_transcribe(sub)
    _add_export(sub)
    _add_push(sub)
    _add_serve(sub)


def _add_transcribe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transcribe",
        help="Transcribe audio files.",
        description="Print one line per file ('file<TAB>text'), or with --json one JSON object per file with "
        "text, confidence, duration and word timestamps with confidences. Any sample rate and channel count; "
        "WAV, FLAC, OGG, MP3. Files are batched by duration.",
    )
    p.add_argument("files", nargs="+", help="Audio files.")
    p.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    p.add_argument(
        "--json", action="store_true", help="One JSON object per file: file, text, confidence, duration, words."
    )
    add_subtitle_arguments(p)
    add_decoding_options(p)
    stream = p.add_argument_group(
        "streaming (--stream: a model trained with recipes/streaming-cpu.yaml; docs/streaming.md)",
    )
    stream.add_argument(
        "--stream",
        action="store_true",
        help="Feed each file through a streaming session: partials on the terminal (standard error), each final "
        "utterance on standard output ('file<TAB>start-end<TAB>text', or a JSON event with --json). Greedy decoding.",
    )
    stream.add_argument(
        "--realtime", action="store_true", help="With --stream: feed audio at real time, as a microphone would."
    )
    add_dataclass_arguments(stream, StreamingOptions)
    p.set_defaults(handler=_run_transcribe)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="Export a model to ONNX (optionally int8-quantized / graph-optimised) and check parity.",
        description="Write --output with model.onnx (dynamic batch and time axes, run by onnxruntime) and the "
        "config, tokenizer and feature-extractor files, so `ai2text transcribe --model OUTPUT` (and evaluate) run "
        "the export. Parity with the PyTorch model (max |logit difference|, identical greedy transcripts, model "
        "time, WER/CER with --dataset) is printed and written to OUTPUT/export_report.json. Needs the export extra "
        "(pip install 'ai2text-hf[export]').",
    )
    p.add_argument("--model", required=True, help="PyTorch model folder, e.g. runs/demo/model.")
    p.add_argument("--output", required=True, help="Folder to write the export into, e.g. runs/demo/onnx.")
    p.add_argument(
        "--quantize", choices=["int8"], help="int8 dynamic quantization of the weight matrices (onnxruntime's)."
    )
    p.add_argument(
        "--optimize", action="store_true", help="onnxruntime's offline graph optimisation of the final ONNX graph."
    )
    p.add_argument(
        "--dataset", help="Prepared dataset to check parity and WER/CER on (default: random features, no WER/CER)."
    )
    p.add_argument("--split", default="test", help="Split of --dataset to check on (default test).")
    p.add_argument("--limit", type=int, help="Check on only the first N utterances of the split.")
    p.add_argument(
        "--stream-chunk-ms",
        type=int,
        help="For a model trained to stream: the chunk size its streaming step (streaming_step.onnx) is exported for "
        f"(default {StreamingOptions.chunk_ms}); transcribe --stream and serve run that step from the export.",
    )
    add_export_compat(p)
    p.set_defaults(handler=_run_export)


def _add_push(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push",
        help="Upload a model folder to the Hugging Face Hub with a generated model card.",
        description="Upload the model folder (weights, config, tokenizer, feature extractor/processor, the code "
        "files config.json names, and subfolders such as language_model/ with the pipeline that decodes with it) "
        "plus a generated README.md model card: language vi, license, tags, base_model (the run's init_from or "
        "--base-model), datasets (--dataset-name), model-index from --evaluation or else the run's own test-split "
        "evaluations (runs/<name>/eval/: the latest greedy and the latest with an LM, each named with its "
        "decoding), the training recipe and a pipeline(..., trust_remote_code=True) snippet. A folder missing a "
        "file the model needs is refused before anything is sent; --to-folder writes exactly what would be "
        "uploaded instead. The token comes from --token, HF_TOKEN or `hf auth login`.",
    )
    p.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    p.add_argument("--repo-id", required=True, help="Hub repository ORG/NAME; created when it does not exist.")
    p.add_argument("--private", action="store_true", help="Create the repository as private (no effect if it exists).")
    p.add_argument("--revision", help="Branch to commit to (created from main when missing; default main).")
    p.add_argument("--license", default="apache-2.0", help="License id for the model card (default apache-2.0).")
    p.add_argument("--token", help="Hub token with write access (default: HF_TOKEN or the saved login).")
    p.add_argument("--commit-message", help="Commit message (default 'Upload <model folder>').")
    p.add_argument(
        "--to-folder",
        metavar="DIR",
        help="Dry run: write exactly what would be uploaded (files, subfolders, README.md) into DIR, a new or empty "
        "folder, and upload nothing.",
    )
    p.add_argument(
        "--evaluation",
        action="append",
        metavar="PATH",
        help="Evaluation folder or eval_results.json the card's model-index reports (repeatable; default: the "
        "run's own test-split evaluations).",
    )
    p.add_argument(
        "--dataset-name",
        help="The Hub id (or name) of the evaluated dataset, for the card's datasets and model-index (default: "
        "the local dataset folder's name in model-index only).",
    )
    p.add_argument(
        "--base-model", help="Hub id of the model this one was fine-tuned from (default: the run's init_from)."
    )
    p.set_defaults(handler=_run_push)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="Serve models over HTTP: a transcription API and a web page to try it.",
        description="Run the HTTP API (FastAPI + uvicorn; needs the serve extra: pip install 'ai2text-hf[serve]'). "
        "POST /transcribe takes a multipart 'audio' file and the form fields model, beam_width, use_lm (false: "
        "without the model folder's language model, which is used by default), timestamps (none|word) and "
        "hotwords, and format (json, or srt|vtt subtitles; also as ?format=); any other query parameter or unknown "
        "field is refused. WebSocket /stream: live transcription (16 kHz 16-bit PCM frames in, JSON partial and final "
        "text out; the protocol is in the API docs). GET /health (503 while the "
        "default model is not loaded), GET /models; API docs at /docs and a page at / to upload or record audio. "
        "Concurrent requests to a model are micro-batched into shared model runs. Every upload's channels, rate and "
        "length are checked from its header before it is decoded; other request bodies are limited to 64 KiB. "
        "Security: it listens on 127.0.0.1; it answers only for localhost, IP addresses and --allowed-host names "
        "(against DNS rebinding); with an API key (--api-key-file or $AI2TEXT_API_KEY) every request but the page, "
        "/docs and /health must send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'; POST /models/load and "
        "DELETE /models/{name} are off unless --allow-model-management; browsers may call it from other sites only "
        "with --cors-origin.",
    )
    p.add_argument(
        "--model", required=True, help="Model folder loaded at start and used by default, e.g. runs/demo/model."
    )
    p.add_argument(
        "--models-dir",
        default="runs",
        help="With --allow-model-management, every <DIR>/<name>/model folder can be loaded by name with "
        "POST /models/load (default runs). Clients name runs, never paths.",
    )
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1: this machine only).")
    p.add_argument("--port", type=int, default=8000, help="Port to listen on (default 8000; 0 picks a free one).")
    add_dataclass_arguments(p, AudioLimits)
    add_dataclass_arguments(p, StreamLimits)
    add_dataclass_arguments(p.add_argument_group("live streams: chunks and endpointing"), StreamingOptions)
    p.add_argument(
        "--decode-workers", type=int, default=2, help="Uploads decoded at once; the others wait (default 2)."
    )
    p.add_argument("--max-beam-width", type=int, default=64, help="Largest beam width a request may ask (default 64).")
    p.add_argument("--batch-size", type=int, default=16, help="Most requests run together in one batch (default 16).")
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=2.0,
        help="How long a batch waits for more requests after its first, milliseconds (default 2); requests "
        "arriving while the model runs join the next batch anyway.",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=64,
        help="Transcriptions the server holds at once (being uploaded, decoded or waiting for a model); more get "
        "503 before their upload is read (default 64).",
    )
    access = p.add_argument_group("access")
    access.add_argument(
        "--api-key-file",
        help="File whose first line is the API key every request must send (except the page, /docs and /health). "
        "Default: $AI2TEXT_API_KEY when set, else no key. The key is never logged.",
    )
    access.add_argument(
        "--allow-model-management",
        action="store_true",
        help="Enable POST /models/load and DELETE /models/{name} (off by default: 403). Use with an API key.",
    )
    access.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="Host name clients may reach the server by, besides localhost and IP addresses (repeatable; '*' for "
        "any). Other names are refused (400), which stops DNS-rebinding pages.",
    )
    access.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="Origin (e.g. https://app.example.com) whose web pages may call the API from a browser (repeatable). "
        "Default none: browsers keep other sites' pages from reading its answers.",
    )
    p.add_argument("--device", help="Torch device for the models, e.g. cpu or cuda (default: CUDA when available).")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (default info: one line per request).",
    )
    p.set_defaults(handler=_run_serve)


def _run_transcribe(args: argparse.Namespace) -> None:
    from ..inference import Transcriber

    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"No such audio file: {', '.join(missing)}")
    if args.stream:
        _run_stream(args)
        return
    given = [
        f"--{n.replace('_', '-')}"
        for n in StreamingOptions.__dataclass_fields__
        if getattr(args, n) not in (None, False)
    ]
    if args.realtime or given:
        raise ValueError(f"{', '.join(given) or '--realtime'} only apply with --stream.")
    results = Transcriber(args.model, decoding=decoding_options(args)).transcribe_batch(args.files)
    if args.format:
        write_subtitles(results, args.format, args.output_dir)
        return
    for result in results:
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            print(f"{result['file']}\t{result['text']}")


def _run_stream(args: argparse.Namespace) -> None:
    """``transcribe --stream``: each file through a streaming session, block by block."""
    import time

    from ..data.audio import load_audio
    from ..streaming import StreamingRecognizer

    if args.format:
        raise ValueError("--format writes subtitles of whole-file transcripts: leave out --stream for them.")
    recognizer = StreamingRecognizer(args.model, dataclass_from_args(StreamingOptions, args))
    terminal = sys.stderr.isatty()
    block = recognizer.sample_rate // 10  # 100 ms blocks, as a microphone delivers them
    for path in args.files:
        audio = load_audio(path, recognizer.sample_rate)[0]
        session, started, computing = recognizer.session(), time.perf_counter(), 0.0
        for offset in range(0, len(audio) + 1, block):
            if args.realtime:
                time.sleep(max(0.0, started + offset / recognizer.sample_rate - time.perf_counter()))
            tick = time.perf_counter()
            end = offset + block >= len(audio)
            events = session.accept_audio(audio[offset : offset + block])
            events += session.finish() if end else []
            computing += time.perf_counter() - tick
            for event in events:
                _show_event(path, event, args.json, terminal)
            if end:
                break
        if terminal:
            sys.stderr.write("\r\033[K")
        seconds = len(audio) / recognizer.sample_rate
        print(f"{path}: {seconds:.1f} s streamed, compute RTF {computing / max(seconds, 1e-9):.3f}", file=sys.stderr)


def _show_event(path: str, event, as_json: bool, terminal: bool) -> None:
    """A final on standard output; a partial on the terminal's status line (or a line of standard error)."""
    if event.type == "partial":
        line = f"... {event.text}"
        sys.stderr.write(f"\r\033[K{line[-200:]}" if terminal else f"{line}\n")
        sys.stderr.flush()
        return
    if terminal:
        sys.stderr.write("\r\033[K")
    if as_json:
        print(json.dumps({"file": path, **event.to_dict()}, ensure_ascii=False), flush=True)
    else:
        print(f"{path}\t{event.start:.2f}-{event.end:.2f}\t{event.text}", flush=True)


def _run_export(args: argparse.Namespace) -> None:
    from ..export import export_model, format_export_report

    result = export_model(
        args.model,
        args.output,
        optimize=args.optimize,
        quantize=args.quantize,
        dataset=args.dataset,
        split=args.split,
        limit=args.limit,
        stream_chunk_ms=args.stream_chunk_ms,
    )
    print(format_export_report(result.report))
    print(f"Export written to {result.output_dir} (report: export_report.json)")


def _run_push(args: argparse.Namespace) -> None:
    from ..hub import card_info_for_folder, push_model, push_plan

    info = card_info_for_folder(args.model, args.evaluation, args.dataset_name, args.base_model, args.license)
    if args.to_folder:
        plan = push_plan(args.model, args.repo_id, info)
        folder = plan.write_to(args.to_folder)
        for path in [*plan.files, Path("README.md")]:
            print(path.as_posix())
        print(f"Wrote what pushing {args.model} to {args.repo_id} would upload into {folder} (nothing uploaded).")
        return
    commit = push_model(
        args.model,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        token=args.token,
        commit_message=args.commit_message,
        info=info,
    )
    print(f"Pushed {args.model} to {args.repo_id} ({args.revision or 'main'}): {commit.commit_url}")


def serve_settings(args: argparse.Namespace) -> ServeSettings:
    """The server's settings from ``ai2text serve``'s arguments (the API key from a file or the environment)."""
    from ..serving import AccessSettings, BatchSettings, ServeSettings
    from ..serving.guards import read_api_key

    try:
        api_key = read_api_key(args.api_key_file)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    return ServeSettings(
        models_dir=Path(args.models_dir),
        audio=dataclass_from_args(AudioLimits, args),
        streams=dataclass_from_args(StreamLimits, args),
        streaming=dataclass_from_args(StreamingOptions, args),
        access=AccessSettings(
            api_key=api_key,
            model_management=args.allow_model_management,
            allowed_hosts=(*args.allowed_host, args.host),
            cors_origins=tuple(args.cors_origin),
        ),
        max_beam_width=args.max_beam_width,
        decode_workers=args.decode_workers,
        batching=BatchSettings(args.batch_size, args.batch_wait_ms / 1000, args.max_queue),
        device=args.device,
    )


def _run_serve(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from ..serving import create_app
        from ..serving.server import uvicorn_options
    except ModuleNotFoundError as error:
        message = f"error: ai2text serve needs the serve extra ({error}): pip install 'ai2text-hf[serve]'"
        raise SystemExit(message) from error
    settings = serve_settings(args)
    if settings.access.model_management and not settings.access.api_key:
        print(
            "warning: --allow-model-management without an API key: anyone who can reach the server can load and "
            "unload models (set --api-key-file or $AI2TEXT_API_KEY).",
            file=sys.stderr,
        )
    app = create_app(args.model, settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, **uvicorn_options(app))
