"""Reliability, data side: each data-loss case of issue 24 run as a user would, with the `ai2text` command.

Reports, per case, what happened (exit code, the message's first words) and what it shows: CSV rows
accounted for, user files surviving, bytes of a model left unchanged, file modes. The full-disk case trains
into a real size-limited tmpfs when this process may mount one (root with CAP_SYS_ADMIN), else it says so.
Bounded: a 30-utterance espeak-ng corpus and a 1-layer model; about 2-3 minutes on 2 cores.

    python -m benchmarks.bench_reliability_data
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np
import soundfile as sf

from .common import REPO, print_table

TINY = [
    "--d_model", "32", "--num_encoder_layers", "1", "--num_heads", "2", "--d_ff", "64", "--max_batch_seconds", "20",
    "--disable_tqdm", "true", "--logging_steps", "1",
]  # fmt: skip
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def ai2text(*args: str) -> tuple[int, str]:
    """Exit code and the last line of stderr of one `ai2text` command."""
    proc = subprocess.run(
        [sys.executable, "-m", "ai2text_hf.cli", *args], capture_output=True, text=True, env=ENV, cwd=REPO
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return proc.returncode, lines[-1] if lines else ""


def _said(message: str, length: int = 110) -> str:
    return message.replace("|", "/")[:length] + ("…" if len(message) > length else "")


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _wav(path: Path, seconds: float = 0.9) -> None:
    t = np.arange(int(seconds * 16000)) / 16000
    noise = np.random.default_rng(len(str(path))).standard_normal(t.size)
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t) + 0.02 * noise, 16000)


def prepare_cases(work: Path) -> list[tuple[str, ...]]:
    rows = []
    corpus = work / "corpus"
    (corpus / "wavs").mkdir(parents=True)
    _wav(corpus / "wavs" / "a.wav")
    (corpus / "metadata.csv").write_text("file_path,transcript\nwavs/a.wav,anh trai tôi làm kỹ sư\n", encoding="utf-8")
    before = _tree(corpus)
    code, said = ai2text("prepare", "--csv", str(corpus / "metadata.csv"), "--output", str(corpus), "--overwrite")
    kept = sum(_tree(corpus).get(name) == data for name, data in before.items())
    rows.append(("1. prepare --overwrite into the corpus folder", str(code), f"{kept}/{len(before)} files intact",
                 _said(said)))  # fmt: skip

    lines = ["file_path,transcript", "wavs/a.wav,một", 'wavs/a.wav,"hai ba', "wavs/a.wav,bốn", "wavs/a.wav,năm"]
    (corpus / "quote.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, said = ai2text("prepare", "--csv", str(corpus / "quote.csv"), "--output", str(work / "quoted"))
    rows.append(("4. unterminated quote (5 lines)", str(code), "no dataset written" if not (work / "quoted").exists()
                 else "a dataset was written", _said(said)))  # fmt: skip
    huge = ["file_path,transcript", "wavs/a.wav,một", 'wavs/a.wav,"' + "x" * 200_000]
    (corpus / "huge.csv").write_text("\n".join(huge) + "\n", encoding="utf-8")
    code, said = ai2text("prepare", "--csv", str(corpus / "huge.csv"), "--output", str(work / "huge"))
    rows.append(("4. unterminated quote past csv's field limit", str(code), "no traceback" if "Traceback" not in said
                 else "traceback", _said(said)))  # fmt: skip

    nfc = unicodedata.normalize("NFC", "câu một.wav")
    _wav(corpus / "wavs" / nfc)
    (work / "secret.wav").write_bytes((corpus / "wavs" / "a.wav").read_bytes())
    (corpus / "wavs" / "link.wav").symlink_to(work / "secret.wav")
    paths = [f"wavs/{unicodedata.normalize('NFD', nfc)}", "wavs/link.wav", "wavs/a.wav"]
    (corpus / "paths.csv").write_text(
        "file_path,transcript\n" + "".join(f"{path},một\n" for path in paths), encoding="utf-8"
    )
    code, said = ai2text("prepare", "--csv", str(corpus / "paths.csv"), "--output", str(work / "paths"))
    report = (work / "paths" / "report.json").read_text(encoding="utf-8") if code == 0 else ""
    found = "NFD path kept" if '"row": 1, "line": 2, "file_path"' in report and report.count('"kept"') == 2 else "?"
    escaped = "symlink outside_root" if "outside_root" in report else "symlink accepted"
    rows.append(("5. NFD path + symlink leaving the root", str(code), f"{found}; {escaped}", "3 rows, 3 in report"))
    return rows


def _corpus(work: Path) -> Path:
    from ai2text_hf.data.synth import SynthConfig, default_sentences_path, synthesize_corpus

    config = SynthConfig(max_sentences=30, val_sentences=4, test_sentences=1, train_renditions=1, seed=5, workers=2)
    metadata = synthesize_corpus(default_sentences_path(), work / "synth", config, progress=False)
    code, said = ai2text("prepare", "--csv", str(metadata), "--output", str(work / "dataset"))
    if code:
        raise RuntimeError(said)
    return work / "dataset"


def _train(dataset: Path, run: Path, *extra: str) -> tuple[int, str]:
    return ai2text("train", "--recipe", "recipes/tiny.yaml", "--dataset", str(dataset), "--output-dir", str(run),
                   *TINY, *extra)  # fmt: skip


def training_cases(work: Path, dataset: Path) -> list[tuple[str, ...]]:
    rows = []
    run = work / "run"
    code, said = _train(dataset, run, "--num_epochs", "1")
    if code:
        raise RuntimeError(said)
    model = _tree(run / "model")
    code, said = _train(dataset, run, "--num_epochs", "1", "--learning_rate", "0.01")
    rows.append(("2. train into a finished run, no --resume", str(code),
                 "model unchanged" if _tree(run / "model") == model else "model replaced", _said(said)))  # fmt: skip
    record = _tree(run)
    record = {name: record[name] for name in ("recipe.yaml", "hyperparameters.json")}
    code, said = _train(dataset, run, "--num_epochs", "1", "--max_batch_seconds", "7", "--resume", "latest")
    now = _tree(run)
    same = all(now[name] == data for name, data in record.items())
    shown = "recipe.yaml, hyperparameters.json unchanged" if same else "run files rewritten"
    rows.append(("3. refused resume (other batch size)", str(code), shown, _said(said)))
    code, said = _train(dataset, run, "--num_epochs", "2", "--overwrite")
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*"))
    rows.append(("2. the same with --overwrite", str(code), f"checkpoints now {', '.join(checkpoints)}", ""))
    umask = os.umask(0o022)
    os.umask(umask)
    modes = sorted({oct(p.stat().st_mode & 0o777) for p in run.rglob("*.safetensors")})
    rows.append(("11. weight file modes (umask " + oct(umask) + ")", "", ", ".join(modes), "expected "
                 + oct(0o666 & ~umask)))  # fmt: skip
    rows.append(full_disk_case(work, dataset))
    return rows


def full_disk_case(work: Path, dataset: Path) -> tuple[str, ...]:
    """Train into a 32 MB tmpfs that another program fills after the first checkpoint; then free it and resume."""
    from ai2text_hf.training.checkpoints import complete_checkpoints

    disk = work / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        return ("6. full disk while checkpointing", "skipped", "cannot mount a tmpfs here (needs root)", "")
    try:
        command = [sys.executable, "-m", "ai2text_hf.cli", "train", "--recipe", "recipes/tiny.yaml", "--dataset",
                   str(dataset), "--output-dir", str(disk / "run"), *TINY, "--num_epochs", "30"]  # fmt: skip
        process = subprocess.Popen(command, env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)  # fmt: skip
        deadline = time.monotonic() + 300
        while not complete_checkpoints(disk / "run" / "checkpoints") and time.monotonic() < deadline:
            time.sleep(0.05)
        filler = disk / "filler.bin"
        with open(filler, "wb") as handle:  # what another program filling the disk does
            try:
                while True:
                    handle.write(b"\0" * (1 << 20))
                    handle.flush()
            except OSError:
                pass
        said = [line for line in process.communicate(timeout=300)[1].splitlines() if line.strip()]
        intact = [p.name for p in complete_checkpoints(disk / "run" / "checkpoints")]
        filler.unlink()
        resumed, _ = _train(dataset, disk / "run", "--num_epochs", "30", "--resume", "latest")
        outcome = f"intact: {', '.join(intact) or 'none'}; resumed after freeing space: exit {resumed}"
        return ("6. disk filled during training (32 MB tmpfs)", str(process.returncode), outcome,
                _said(said[-1] if said else "", 220))  # fmt: skip
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ai2text-reliability-"))
    try:
        rows = prepare_cases(work)
        rows += training_cases(work, _corpus(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(
        "Reliability: data-loss cases (issue 24), each run as an `ai2text` command",
        rows,
        ("case", "exit", "what survived / what it showed", "message (last stderr line)"),
    )


if __name__ == "__main__":
    main()
