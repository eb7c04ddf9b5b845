"""The documentation is executable: a command that changes in the code and not in the docs fails here.

Fenced blocks carry a mark after the language (```` ```bash runnable ````):

- ``runnable``: executed, in document order, in one scratch folder laid out like a clone (``recipes/``,
  ``accelerate_configs/`` and ``scripts/`` linked in), after the explicit SUBSTITUTIONS below shrink
  corpus sizes and epochs (slow test);
- ``gpu`` / ``hub``: need a GPU or the Hugging Face Hub, so only checked: every ``ai2text`` command line
  parses with :func:`build_parser` and its recipe overrides are real keys; Python compiles;
- ``manual``: long-running or interactive (a TensorBoard server, ``wandb login``); checked like ``gpu``;
- ``yaml recipe``: loaded with :func:`load_recipe`, so a renamed key fails; the ``yaml recipe reference``
  block of docs/training.md must list every recipe key with its default, and a
  ``yaml recipe from=recipes/X.yaml`` excerpt must match that file;
- ``text message``: a message the tool prints, quoted in docs/troubleshooting.md; the code must print exactly
  that.

Fast tests check every command, block and key; ``test_docs_run_as_written`` (slow) executes them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import REPO, SHARED, TrainedModel

from ai2text_hf.cli import build_parser, main
from ai2text_hf.training import arguments
from ai2text_hf.training.guards import OOM_ADVICE, BlankPredictionGuard, NonFiniteLossReport, OverfittingGuard
from ai2text_hf.training.recipe import Recipe, RecipeError, load_recipe, parse_overrides

DOC_DIR = REPO / "docs"
TRAINING = DOC_DIR / "training.md"  # the recipe reference block and the recipe excerpts
TROUBLESHOOTING = DOC_DIR / "troubleshooting.md"  # the ``text message`` blocks
MIGRATION = DOC_DIR / "migration.md"
# Executed in this order, in one scratch folder: each page uses what the pages before it made (the corpus of
# data.md, the runs of training.md, the speech.wav of using-models.md); the README's examples come last.
DOCS = [
    DOC_DIR / "data.md",
    DOC_DIR / "recipes.md",
    TRAINING,
    DOC_DIR / "evaluation.md",
    DOC_DIR / "using-models.md",
    DOC_DIR / "language-model.md",
    DOC_DIR / "distributed.md",
    DOC_DIR / "pretrained-models.md",
    DOC_DIR / "corpus-tools.md",
    DOC_DIR / "streaming.md",
    TROUBLESHOOTING,
    MIGRATION,
    DOC_DIR / "results.md",
    REPO / "README.md",
]
MARKS = {"runnable", "gpu", "hub", "manual"}
SHELLS = {"bash", "sh", "shell"}
# Subcommands that take recipe keys as --key value.
RECIPE_COMMANDS = {"train", "tune"}
# Folders of the clone the docs refer to by relative path; symlinked into the scratch folder, so runnable
# blocks must not write into them.
CLONE_FOLDERS = ["recipes", "accelerate_configs", "scripts"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# What the slow test runs instead of what the docs say: sizes, epochs, pitch and the server's port only, so the
# whole documentation runs in minutes on 2 CPU cores. Every entry must be used (test_every_substitution_is_used).
_PORT = _free_port()
SUBSTITUTIONS = {
    # 40 sentences, one voice each, instead of the demo corpus's 8 902 utterances
    "ai2text synth --output data/demo": "ai2text synth --output data/demo --max-sentences 40 --val-sentences 4 "
    "--test-sentences 6 --train-renditions 1",
    # one epoch instead of the recipe's; and no pitch columns, like the fixture model standing in for the demo
    # model below (pitch hurts a model trained on the fixture's 0.3 h corpus)
    "--recipe recipes/demo-cpu.yaml": "--recipe recipes/demo-cpu.yaml --num_epochs 1 --pitch false",
    "--config recipes/demo-cpu.yaml": "--config recipes/demo-cpu.yaml --pitch false",
    "--recipe recipes/finetune-cpu.yaml": "--recipe recipes/finetune-cpu.yaml --num_epochs 1 --validate_every 1",
    "--output data/processed/demo --pitch": "--output data/processed/demo",
    "runs/tiny --num_epochs 2 --pitch true": "runs/tiny --num_epochs 2",
    "--recipe recipes/cpu-weak.yaml": "--recipe recipes/cpu-weak.yaml --num_epochs 1",
    "--num_epochs 20": "--num_epochs 2",  # two checkpoints, for `ai2text average`
    "--max_steps 2000": "--max_steps 4",
    # a trained model (the session's `trained_model` fixture, copied) where the docs use the demo model
    "runs/demo/model": "runs/trained/model",
    "runs/demo/eval": "runs/trained/eval",
    # the README's VIVOS corpus: a small one in VIVOS's layout (the workdir fixture), at an absolute path as a
    # user's would be; and no pitch, like the stand-in demo model it fine-tunes
    "ai2text import vivos /corpora/vivos": 'ai2text import vivos "$PWD/corpora/vivos"',
    "--output data/processed/vivos --pitch": "--output data/processed/vivos",
    # a free port: the machine may already serve something on 8000
    "--port 8000": f"--port {_PORT}",
    "127.0.0.1:8000": f"127.0.0.1:{_PORT}",
}


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    language: str
    marks: frozenset[str]
    text: str

    def __str__(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


_FENCE = re.compile(r"^( *)```(\S*)[ \t]*(.*)$")  # indented fences too (blocks inside list items)


def read_blocks(doc: Path) -> list[Block]:
    blocks, current, start, body = [], None, 0, []
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        fence = _FENCE.match(line)
        if current is None and fence:
            current, start, body = fence, number, []
        elif current is not None and line.strip().startswith("```"):
            marks = frozenset(current[3].split())
            blocks.append(Block(doc, start, current[2], marks, "\n".join(body) + "\n"))
            current = None
        elif current is not None:
            body.append(line.removeprefix(current[1]))
    assert current is None, f"{doc}:{start}: unclosed code fence"
    return blocks


def all_blocks() -> list[Block]:
    return [block for doc in DOCS for block in read_blocks(doc)]


def command_lines(block: Block) -> list[list[str]]:
    """Each ``ai2text ...`` (or ``scripts/train.py ...``) invocation in a shell block, as argv after the program."""
    logical = re.sub(r"\\\n", " ", block.text)
    commands = []
    for line in logical.splitlines():
        tokens = shlex.split(line, comments=True)
        current: list[str] | None = None
        for token in tokens + [";"]:
            if token in {"&&", "||", ";", "|", "&"} or token.endswith(";") or re.match(r"\d?>", token):
                if current is not None:
                    commands.append(current)
                current = None
            elif current is not None:
                current.append(token)
            elif token == "ai2text":
                current = []
            elif token.endswith("scripts/train.py"):
                current = ["train"]
    return commands


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices if actions else None


def check_command(argv: list[str]) -> str | None:
    """Why ``ai2text <argv>`` would be refused, or None: unknown subcommands, options and recipe keys fail."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            args, extra = build_parser().parse_known_args(argv)
    except SystemExit as exit_:
        return None if exit_.code == 0 else stderr.getvalue().strip().splitlines()[-1]
    if args.command not in RECIPE_COMMANDS:
        return f"unrecognized arguments: {' '.join(extra)}" if extra else None
    # Shipped recipes must exist; a recipe the reader writes (outside recipes/) is not checked here.
    recipe = REPO / args.recipe if args.recipe and args.recipe.startswith("recipes/") else None
    try:
        load_recipe(recipe, parse_overrides(extra))
    except RecipeError as error:
        return str(error)
    return None


def _recipe_key_problem(key: str) -> str | None:
    """Why ``--key`` is not a recipe override (a Recipe key, ``section.key`` or TrainingArguments field)."""
    defaults = Recipe().to_dict()
    section, _, sub = key.partition(".")
    value = defaults[section].get(sub, 1) if sub and isinstance(defaults.get(section), dict) else defaults.get(key, 1)
    try:
        load_recipe(None, {key: value})
    except RecipeError as error:
        return str(error)
    return None


def check_option_names(argv: list[str]) -> str | None:
    """For command fragments in prose: the subcommand and every ``--option`` exist (values are not needed)."""
    parser, rest = build_parser(), list(argv)
    while (choices := _subcommands(parser)) is not None:
        if not rest or rest[0] not in choices:
            return f"{parser.prog}: not a subcommand: {rest[:1]}"
        parser = choices[rest.pop(0)]
    known = {option for action in parser._actions for option in action.option_strings}
    for token in rest:
        name = token.split("=", 1)[0]
        if not name.startswith("--") or name in known:
            continue
        recipe_command = parser.prog.split()[-1] in RECIPE_COMMANDS
        problem = _recipe_key_problem(name[2:].replace("-", "_")) if recipe_command else "unknown"
        if problem:
            return f"{parser.prog} {name}: {problem}"
    return None


# ---------------------------------------------------------------------------------------------- fast checks


def test_docs_exist_and_every_shell_and_python_block_is_marked() -> None:
    for doc in DOCS:
        assert doc.is_file(), f"{doc} is missing"
    unmarked = [
        str(b) for b in all_blocks() if b.language in SHELLS | {"python"} and len(b.marks & MARKS) != 1
    ]
    assert not unmarked, f"blocks without exactly one of {sorted(MARKS)}: {unmarked}"


def test_every_ai2text_command_in_the_docs_parses() -> None:
    failures, seen = [], 0
    for block in all_blocks():
        if block.language not in SHELLS:
            continue
        for argv in command_lines(block):
            seen += 1
            problem = check_command(argv)
            if problem:
                failures.append(f"{block}: ai2text {shlex.join(argv)}\n    -> {problem}")
    assert seen > 20
    assert not failures, "\n".join(failures)


def test_every_ai2text_command_in_the_prose_names_real_options() -> None:
    failures = []
    for doc in DOCS:
        prose = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.S | re.M)
        for span in re.findall(r"`ai2text ([^`]+)`", prose):
            problem = check_option_names(shlex.split(span))
            if problem:
                failures.append(f"{doc.name}: `ai2text {span}` -> {problem}")
    assert not failures, "\n".join(failures)


def test_files_the_docs_name_exist() -> None:
    """Accelerate configs, recipes and scripts named anywhere in the docs are in the repository."""
    pattern = r"(?:accelerate_configs|recipes|scripts)/[\w.-]+\.(?:yaml|json|py)"
    named = {m for doc in DOCS for m in re.findall(pattern, doc.read_text(encoding="utf-8"))}
    assert "accelerate_configs/multi-gpu.yaml" in named
    assert not sorted(path for path in named if not (REPO / path).is_file())


def test_every_python_block_compiles() -> None:
    for block in all_blocks():
        if block.language == "python":
            compile(block.text, str(block), "exec")


def test_every_recipe_block_loads(tmp_path: Path) -> None:
    blocks = [b for b in all_blocks() if b.language == "yaml" and "recipe" in b.marks]
    assert len(blocks) > 5
    for index, block in enumerate(blocks):
        path = tmp_path / f"{index}.yaml"
        path.write_text(block.text, encoding="utf-8")
        try:
            load_recipe(path)
        except RecipeError as error:
            pytest.fail(f"{block}: {error}")


def test_recipe_excerpts_match_their_files() -> None:
    """A ``yaml recipe from=recipes/X.yaml`` block quotes keys of that file with the file's values."""
    excerpts = [b for b in all_blocks() if b.language == "yaml" and any(m.startswith("from=") for m in b.marks)]
    assert excerpts
    for block in excerpts:
        (source,) = [m.removeprefix("from=") for m in block.marks if m.startswith("from=")]
        shipped = yaml.safe_load((REPO / source).read_text(encoding="utf-8"))
        quoted = yaml.safe_load(block.text)
        assert {k: shipped.get(k) for k in quoted} == quoted, f"{block} differs from {source}"


def test_recipe_reference_lists_every_key_with_its_default(tmp_path: Path) -> None:
    """A new, renamed or re-defaulted Recipe key must be explained in the training page's key reference."""
    (block,) = [b for b in all_blocks() if "reference" in b.marks]
    assert block.doc == TRAINING
    listed = yaml.safe_load(block.text)
    defaults = Recipe().to_dict()
    assert list(listed) == list(defaults), "top-level keys differ (order too: the reference follows recipe.py)"
    for key, value in defaults.items():
        if isinstance(value, dict) and key != "training_args":
            assert set(listed[key]) == set(value), f"keys of section {key!r} differ"
    path = tmp_path / "reference.yaml"
    path.write_text(block.text, encoding="utf-8")
    assert load_recipe(path).to_dict() == defaults


def test_every_recipe_file_is_in_the_recipes_doc() -> None:
    text = (REPO / "docs" / "recipes.md").read_text(encoding="utf-8")
    missing = [p.name for p in sorted((REPO / "recipes").glob("*.yaml")) if f"recipes/{p.name}" not in text]
    assert not missing, f"recipes not described in docs/recipes.md: {missing}"


def test_every_subcommand_is_in_the_docs() -> None:
    text = "".join(doc.read_text(encoding="utf-8") for doc in DOCS)
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name in action.choices if f"ai2text {name}" not in text]
    assert not missing, f"subcommands the docs never show: {missing}"


def test_migration_table_covers_the_old_guide() -> None:
    """Every flag, script and file the old guide names has a row (where the old guide is at hand)."""
    seed = SHARED / "seed" / "TRAINING_GUIDE.md"
    if not seed.is_file():
        pytest.skip(f"{seed} is not present (shared data only exists beside the project checkout)")
    old = seed.read_text(encoding="utf-8")
    page = MIGRATION.read_text(encoding="utf-8")
    table = page[page.index("## Migration table") :]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z_]*", old)) | set(re.findall(r"[\w/]+\.(?:py|pt|db|yaml|log)\b", old))
    assert not sorted(name for name in named if name not in table)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_the_docs_resolve() -> None:
    anchors = {
        doc: {_anchor(h) for h in re.findall(r"^#+ (.+)$", doc.read_text(encoding="utf-8"), flags=re.M)}
        for doc in DOCS
    }
    broken = []
    for doc in DOCS:
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md|)(?:#([\w-]+))?\)", doc.read_text(encoding="utf-8")):
            linked = (doc.parent / target).resolve() if target else doc
            if not linked.is_file() or (anchor and anchor not in anchors.get(linked, set())):
                broken.append(f"{doc.name}: ({target}#{anchor})")
    assert not broken, broken


def test_every_substitution_is_used() -> None:
    runnable = "".join(b.text for b in all_blocks() if "runnable" in b.marks)
    assert not [key for key in SUBSTITUTIONS if key not in runnable]


def _printed_messages(capsys, caplog, monkeypatch) -> list[str]:
    """What the tool prints for the Troubleshooting examples, made by the code itself with the values the docs quote."""
    monkeypatch.setattr(arguments, "_available_device", lambda: "cpu")  # the docs' example machine
    hardware = arguments.resolve_hardware(load_recipe(None, {"use_amp": True}), environ={})
    with pytest.raises(RecipeError) as no_gpu:
        arguments.resolve_hardware(load_recipe(None, {"device": "cuda"}), environ={})
    state = SimpleNamespace(log_history=[])
    args = SimpleNamespace(metric_for_best_model="cer")
    messages = [OOM_ADVICE.format(where=" at step 120", max_batch_seconds=200, grad_accum_steps=1)]
    with caplog.at_level(logging.WARNING, logger="ai2text_hf.training"):
        NonFiniteLossReport().check(torch.tensor([1.0, math.inf]), ["x", "000123_vi-f2-s145-p60"], step=37)
        NonFiniteLossReport().check(torch.tensor([math.nan]), ["004211_vi-vn-x-south-m1-s160-p40"], step=512)
        blank = BlankPredictionGuard()
        for _ in range(3):
            blank.on_evaluate(args, state, None, metrics={"eval_empty_share": 1.0})
        overfitting = OverfittingGuard()
        for train_loss, val_loss in [(0.517, 0.701), (0.452, 0.733), (0.415, 0.768)]:
            state.log_history.append({"loss": train_loss})
            overfitting.on_evaluate(args, state, None, metrics={"eval_loss": val_loss})
    messages += [record.getMessage() for record in caplog.records]
    messages += [f"Preflight: {note}" for note in hardware.notes] + [f"error: {no_gpu.value}"]
    assert main(["train", "--learning_rat", "1e-3"]) == 2
    messages.append(capsys.readouterr().err.strip())
    return messages


def test_troubleshooting_quotes_the_messages_the_tool_prints(capsys, caplog, monkeypatch) -> None:
    """Each ``text message`` block is exactly what the code prints for its example values, and vice versa."""
    quoted = [b.text.strip() for b in all_blocks() if b.language == "text" and "message" in b.marks]
    assert {b.doc for b in all_blocks() if "message" in b.marks} == {TROUBLESHOOTING}
    printed = _printed_messages(capsys, caplog, monkeypatch)
    assert len(printed) == 8
    assert sorted(quoted) == sorted(printed)


def test_command_checks_catch_renamed_options() -> None:
    """The checks above can fail: an unknown option, subcommand or recipe key is reported."""
    assert check_command(["train", "--recipe", "recipes/tiny.yaml", "--learning_rate", "1e-3"]) is None
    assert "num_epoch" in check_command(["train", "--num_epoch", "3"])
    assert "--beam" in check_command(["evaluate", "--model", "m", "--dataset", "d", "--beam", "3"])
    assert check_command(["fly", "--model", "m"])
    assert check_option_names(["evaluate", "--html"]) is None
    assert check_option_names(["evaluate", "--htm"])
    assert check_option_names(["train", "--grad_accum_steps", "--early_stopping.patience"]) is None
    assert check_option_names(["train", "--early_stopping.patients"])
    text = "ai2text stats d && \\\n ai2text lm build --text a b > out.txt\n"
    expected = [["stats", "d"], ["lm", "build", "--text", "a", "b"]]
    assert command_lines(Block(TRAINING, 1, "bash", frozenset(), text)) == expected


# ---------------------------------------------------------------------------------------------- running


def substitute(text: str) -> str:
    for old, new in SUBSTITUTIONS.items():
        text = text.replace(old, new)
    return text


def _vivos_layout(trained_model: TrainedModel, target: Path, per_split: int = 40) -> None:
    """A corpus laid out like VIVOS (``{train,test}/prompts.txt``, ``waves/<speaker>/<id>.wav``, upper-case
    prompts, no validation split) from the fixture corpus, for the README's own-recordings commands."""
    speakers: dict[str, str] = {}
    for split in ("train", "test"):
        lines = []
        for row in trained_model.rows(split)[:per_split]:
            speaker = speakers.setdefault(row["speaker_id"], f"VIVOSSPK{len(speakers) + 1:02d}")
            utterance = f"{speaker}_R{len(lines) + 1:03d}"
            wav = target / split / "waves" / speaker / f"{utterance}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(trained_model.corpus_dir / row["file_path"], wav)
            lines.append(f"{utterance} {row['transcript'].upper()}\n")
        (target / split / "prompts.txt").write_text("".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, trained_model: TrainedModel) -> Path:
    root = tmp_path_factory.mktemp("docs")
    for name in CLONE_FOLDERS:
        (root / name).symlink_to(REPO / name)
    shutil.copytree(trained_model.model_dir, root / "runs" / "trained" / "model")
    _vivos_layout(trained_model, root / "corpora" / "vivos")
    return root


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_docs_run_as_written(doc: Path, workdir: Path) -> None:
    blocks = [b for b in read_blocks(doc) if "runnable" in b.marks]
    for block in blocks:
        script = substitute(block.text)
        if block.language == "python":
            argv = [sys.executable, "-c", script]
        else:
            argv = ["bash", "-e", "-o", "pipefail", "-c", script]
        start = time.monotonic()
        result = subprocess.run(
            argv, cwd=workdir, env=_environment(), capture_output=True, text=True, timeout=600
        )
        print(f"{block}: {time.monotonic() - start:.1f} s")  # shown with pytest -s: where the minutes go
        output = (result.stdout + result.stderr)[-4000:]
        assert result.returncode == 0, f"{block} failed (exit {result.returncode}):\n{script}\n---\n{output}"
