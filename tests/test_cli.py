"""The ``ai2text`` command line: help texts, transcribe, evaluate and error exits."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from conftest import REPO, TrainedModel

from ai2text_hf.cli import build_parser, main

# Options these subcommands must offer (the user guide's names); every other subcommand is checked too.
OPTIONS = {
    "synth": ["--sentences", "--output", "--seed", "--val-sentences", "--test-sentences", "--train-renditions",
              "--max-sentences", "--workers"],
    "prepare": ["--csv", "--output", "--audio-root", "--num-proc", "--min-duration", "--max-duration",
                "--tone-placement", "--overwrite"],
    "train": ["--recipe", "--dataset", "--output-dir", "--resume"],
    "evaluate": ["--model", "--dataset", "--split", "--output", "--limit"],
    "transcribe": ["--model", "--json"],
}


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    assert set(OPTIONS) <= set(_subcommands())
    for name in _subcommands():
        assert name in out


@pytest.mark.parametrize("command", sorted(set(_subcommands()) | set(OPTIONS)))
def test_subcommand_help_mentions_every_option(capsys: pytest.CaptureFixture, command: str) -> None:
    code, out, _ = _run(capsys, command, "--help")
    assert code == 0
    declared = {s for a in _subcommands()[command]._actions for s in a.option_strings if s.startswith("--")}
    assert set(OPTIONS.get(command, [])) <= declared
    for option in declared:
        assert option in out, f"{command} --help does not mention {option}"


def _program_help(*argv: str) -> str:
    result = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
    return result.stdout


def test_ai2text_program_help() -> None:
    script = Path(sys.executable).parent / "ai2text"  # the console script; the module where it is not installed
    out = _program_help(str(script)) if script.is_file() else _program_help(sys.executable, "-m", "ai2text_hf.cli")
    assert all(name in out for name in OPTIONS)


def test_train_script_help_shows_the_train_options() -> None:
    out = _program_help(sys.executable, str(REPO / "scripts" / "train.py"))
    assert all(option in out for option in OPTIONS["train"])


@pytest.fixture(scope="module")
def two_files(trained_model: TrainedModel) -> list[str]:
    rows = trained_model.rows("test")[:2]
    return [str(trained_model.corpus_dir / row["file_path"]) for row in rows]


def test_transcribe_prints_one_line_per_file(capsys, trained_model: TrainedModel, two_files: list[str]) -> None:
    code, out, _ = _run(capsys, "transcribe", "--model", str(trained_model.model_dir), *two_files)
    assert code == 0
    lines = out.strip("\n").split("\n")
    assert len(lines) == 2
    for line, path in zip(lines, two_files):
        name, text = line.split("\t")
        assert name == path and text.strip()


def test_transcribe_json_gives_text_duration_and_word_times(capsys, trained_model, two_files) -> None:
    code, out, _ = _run(capsys, "transcribe", "--model", str(trained_model.model_dir), "--json", *two_files)
    assert code == 0
    results = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["file"] for r in results] == two_files
    for result in results:
        assert set(result) >= {"file", "text", "duration", "words"}
        assert result["duration"] == pytest.approx(sf.info(result["file"]).duration, abs=1e-3)
        assert result["words"] and " ".join(w["word"] for w in result["words"]) == result["text"]
        for word in result["words"]:
            assert {"word", "start", "end"} <= set(word)
            assert 0 <= word["start"] <= word["end"] <= result["duration"] + 0.04  # one logit frame


def test_transcribe_missing_file_exits_2_naming_it(capsys, trained_model, two_files, tmp_path) -> None:
    missing = str(tmp_path / "nope.wav")
    code, out, err = _run(capsys, "transcribe", "--model", str(trained_model.model_dir), two_files[0], missing)
    assert code == 2
    assert missing in err and not out


def test_missing_model_folder_exits_2(capsys, two_files, tmp_path) -> None:
    code, _, err = _run(capsys, "transcribe", "--model", str(tmp_path / "no-model"), two_files[0])
    assert code == 2 and "no-model" in err and "config.json" in err


def test_evaluate_writes_results_and_predictions(capsys, trained_model: TrainedModel, tmp_path: Path) -> None:
    out_dir = tmp_path / "eval"
    code, out, _ = _run(capsys, "evaluate", "--model", str(trained_model.model_dir), "--dataset",
                        str(trained_model.dataset_dir), "--split", "test", "--output", str(out_dir))
    assert code == 0
    assert "Character Error Rate (CER)" in out
    results = json.loads((out_dir / "eval_results.json").read_text(encoding="utf-8"))
    assert {"wer", "cer", "num_samples", "hours", "rtf", "split"} <= set(results)
    assert 0.0 <= results["cer"] <= 1.0 and 0.0 <= results["wer"] <= 1.0
    assert results["cer"] < results["wer"]  # one wrong letter spoils a whole syllable
    assert results["num_samples"] == len(trained_model.rows("test")) and results["split"] == "test"
    with open(out_dir / "predictions.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["id", "reference", "hypothesis", "cer", "wer"]
    assert len(rows) == results["num_samples"]
    for row in rows:
        assert row["reference"] and 0.0 <= float(row["wer"])
        assert float(row["cer"]) >= 0.0


def test_evaluate_limit_and_unknown_split(capsys, trained_model: TrainedModel, tmp_path: Path) -> None:
    model, dataset = str(trained_model.model_dir), str(trained_model.dataset_dir)
    code, _, _ = _run(capsys, "evaluate", "--model", model, "--dataset", dataset, "--split", "val", "--limit", "3",
                      "--output", str(tmp_path / "val"))
    assert code == 0
    assert json.loads((tmp_path / "val" / "eval_results.json").read_text())["num_samples"] == 3
    code, _, err = _run(capsys, "evaluate", "--model", model, "--dataset", dataset, "--split", "dev",
                        "--output", str(tmp_path / "dev"))
    assert code == 2 and "dev" in err


def test_unknown_option_is_refused(capsys) -> None:
    code, _, err = _run(capsys, "transcribe", "--model", "m", "a.wav", "--bogus")
    assert code == 2 and "--bogus" in err


def _leaf_parsers(parser: argparse.ArgumentParser, name: str = "ai2text") -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        return {name: parser}
    return {k: v for sub, p in actions[0].choices.items() for k, v in _leaf_parsers(p, f"{name} {sub}").items()}


def test_every_subcommand_sets_its_own_handler() -> None:
    leaves = _leaf_parsers(build_parser())
    assert {"ai2text lm build", "ai2text lm tune", "ai2text prepare", "ai2text train"} <= set(leaves)
    handlers = {name: parser.get_default("handler") for name, parser in leaves.items()}
    assert all(callable(handler) for handler in handlers.values()), handlers
    assert len(set(handlers.values())) == len(handlers)  # one handler per command, no shared dispatcher


def test_only_train_and_tune_take_recipe_keys(capsys: pytest.CaptureFixture) -> None:
    takes = {name for name, p in _leaf_parsers(build_parser()).items() if p.get_default("takes_recipe_overrides")}
    assert takes == {"ai2text train", "ai2text tune"}
    code, _, err = _run(capsys, "stats", "data/x", "--learning_rate", "1")
    assert code == 2 and "--learning_rate" in err


def test_prepare_arguments_are_generated_from_prepare_options() -> None:
    from ai2text_hf.cli.options import dataclass_from_args
    from ai2text_hf.data.options import PrepareOptions

    parser = build_parser()
    options = dataclass_from_args(PrepareOptions, parser.parse_args(["prepare", "--csv", "a.csv", "--output", "v"]))
    assert options == PrepareOptions(csv_path=["a.csv"], output_dir="v")  # every other field at its one default
    argv = ["prepare", "--csv", "a.csv", "--csv", "b.csv", "--max-clipped", "0.2", "--pitch-norm-window", "0",
            "--auto-split", "0.8,0.1,0.1", "--validation-from-train", "0"]  # fmt: skip
    options = dataclass_from_args(PrepareOptions, parser.parse_args(argv))
    assert options.csv_path == ["a.csv", "b.csv"] and options.max_clipped_share == 0.2
    assert options.pitch_norm_window == 0 and options.auto_split_ratios == "0.8,0.1,0.1"
    assert options.validation_from_train == 0 and options.checks().max_clipped_share == 0.2


def test_compatibility_flags_live_in_one_group() -> None:
    leaves = _leaf_parsers(build_parser())
    for name, flags in {"ai2text train": {"--config", "--multi_gpu"}, "ai2text export": {"--onnx"}}.items():
        [group] = [g for g in leaves[name]._action_groups if g.title.startswith("compatibility")]
        assert flags <= {s for a in group._group_actions for s in a.option_strings}
    assert build_parser().parse_args(["train", "--config", "r.yaml"]).recipe == "r.yaml"
