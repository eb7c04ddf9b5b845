"""Pushing to the Hub and pulling back: ``ai2text push``, the Trainer's pushes, offline loads by repo id.

The Hub is unreachable here, so the WRITE side uses ``LocalHubWriteStandIn``, a stand-in for the Hub's
write API: it takes the place of transformers' shared client ``transformers.utils.hub.hf_api()`` (through
which the Trainer and ``ai2text push`` send every write) and stores each commit in the standard Hugging
Face cache layout. The READ side is real: with ``HF_HUB_OFFLINE=1`` transformers and huggingface_hub
resolve the repo id and revision from that cache as they would after a download, in a subprocess where the
``ai2text_hf`` package cannot be imported, so only the pushed code files can run.
``test_real_hub_round_trip`` does the same against the real Hub when ``HF_TOKEN`` and network are present.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from concurrent.futures import Future
from pathlib import Path

import pytest
import torch
from conftest import TINY_RECIPE
from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, RepoUrl
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects
from transformers.utils import hub as transformers_hub

from ai2text_hf import AI2TextForCTC
from ai2text_hf.cli import main
from ai2text_hf.hub import push_model

REPO_ID = "ai2text-test/vi-tiny"
ENDPOINT = "https://huggingface.co"


class LocalHubWriteStandIn(HfApi):
    """STAND-IN for the Hub's write API: commits land in a local HF cache folder, not on huggingface.co.

    Layout as huggingface_hub writes it when downloading: ``models--org--name/blobs/<sha256>``,
    ``snapshots/<commit>/<path>`` (relative symlinks to the blobs) and ``refs/<branch>`` holding the commit
    id. A commit starts from the branch's previous snapshot and adds the operations' files, as on the Hub.
    """

    def __init__(self, cache_dir: Path):
        super().__init__(endpoint=ENDPOINT)
        self.cache_dir = cache_dir
        self.commits: list[dict] = []  # {"branch", "id", "message", "added"} in commit order

    def _repo(self, repo_id: str) -> Path:
        return self.cache_dir / ("models--" + repo_id.replace("/", "--"))

    def _head(self, repo_id: str, branch: str) -> str | None:
        ref = self._repo(repo_id) / "refs" / branch
        return ref.read_text().strip() if ref.is_file() else None

    def create_repo(self, repo_id: str, *, exist_ok: bool = False, **kwargs) -> RepoUrl:
        repo = self._repo(repo_id)
        if repo.exists() and not exist_ok:
            raise FileExistsError(repo_id)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        return RepoUrl(f"{ENDPOINT}/{repo_id}", endpoint=ENDPOINT)

    def create_branch(self, repo_id: str, *, branch: str, exist_ok: bool = False, **kwargs) -> None:
        if self._head(repo_id, branch) is not None:
            if not exist_ok:
                raise FileExistsError(branch)
            return
        (self._repo(repo_id) / "refs" / branch).write_text(self._head(repo_id, "main") or "")

    def create_commit(
        self, repo_id: str, operations, *, commit_message: str, revision: str | None = None, **kwargs
    ) -> CommitInfo:
        repo, branch = self._repo(repo_id), revision or "main"
        if not (repo / "refs").is_dir():
            raise FileNotFoundError(f"Repository {repo_id} not found (create_repo first)")
        parent = self._head(repo_id, branch)
        if parent is None and branch != "main":
            raise FileNotFoundError(f"Revision {branch} not found (create_branch first)")
        files: dict[str, str] = {}  # path in repo -> blob name
        if parent:
            snapshot = repo / "snapshots" / parent
            files = {p.relative_to(snapshot).as_posix(): p.resolve().name for p in snapshot.rglob("*") if p.is_file()}
        (repo / "blobs").mkdir(exist_ok=True)
        added = []
        for op in operations:
            if not isinstance(op, CommitOperationAdd):
                raise NotImplementedError(f"the stand-in only adds files, not {type(op).__name__}")
            with op.as_file() as handle:
                content = handle.read()
            blob = hashlib.sha256(content).hexdigest()
            (repo / "blobs" / blob).write_bytes(content)
            files[op.path_in_repo] = blob
            added.append(op.path_in_repo)
        commit = hashlib.sha1(json.dumps([parent, sorted(files.items()), commit_message]).encode()).hexdigest()
        for path, blob in files.items():
            link = repo / "snapshots" / commit / path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(repo / "blobs" / blob, link.parent))
        (repo / "refs" / branch).write_text(commit)
        self.commits.append({"branch": branch, "id": commit, "message": commit_message, "added": added})
        return CommitInfo(
            commit_url=f"{ENDPOINT}/{repo_id}/commit/{commit}",
            commit_message=commit_message,
            commit_description="",
            oid=commit,
        )

    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path,
        path_in_repo: str | None = None,
        commit_message: str | None = None,
        revision: str | None = None,
        allow_patterns=None,
        ignore_patterns=None,
        run_as_future: bool = False,
        **kwargs,
    ) -> CommitInfo | Future:
        if run_as_future:  # the Trainer pushes in the background, as on the Hub
            return self.run_as_future(
                self.upload_folder,
                repo_id=repo_id,
                folder_path=folder_path,
                path_in_repo=path_in_repo,
                commit_message=commit_message,
                revision=revision,
                allow_patterns=allow_patterns,
                ignore_patterns=ignore_patterns,
            )
        folder = Path(folder_path)
        ignore = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
        paths = sorted(  # os.walk, as it skips folders that vanish meanwhile (the Trainer renames checkpoints)
            (Path(root) / name).relative_to(folder).as_posix() for root, _, names in os.walk(folder) for name in names
        )
        prefix = f"{path_in_repo.strip('/')}/" if path_in_repo else ""
        operations = [
            CommitOperationAdd(path_in_repo=prefix + path, path_or_fileobj=str(folder / path))
            for path in filter_repo_objects(
                paths, allow_patterns=allow_patterns, ignore_patterns=ignore + DEFAULT_IGNORE_PATTERNS
            )
        ]
        return self.create_commit(
            repo_id, operations, commit_message=commit_message or "Upload folder", revision=revision
        )


@pytest.fixture
def hub(tmp_path: Path, monkeypatch) -> LocalHubWriteStandIn:
    """The stand-in installed as transformers' shared Hub client for the test."""
    stand_in = LocalHubWriteStandIn(tmp_path / "hub-cache")
    monkeypatch.setattr(transformers_hub, "_hf_api", stand_in)
    return stand_in


_PULL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["ai2text_hf"] = None  # only the code files pulled from the repository may run
    import json
    from transformers import AutoModelForCTC, pipeline

    repo_id, revision, wav = sys.argv[1:4]
    asr = pipeline("automatic-speech-recognition", model=repo_id, revision=revision, trust_remote_code=True)
    model = AutoModelForCTC.from_pretrained(repo_id, revision=revision, trust_remote_code=True)
    print(json.dumps({
        "text": asr(wav)["text"],
        "classes": [type(o).__module__ for o in (asr.model, asr.tokenizer, asr.feature_extractor, model)],
        "weights_sum": float(sum(p.detach().double().sum() for p in model.parameters())),
        "with_lm": getattr(asr, "beam_search", None) is not None,
    }))
    """
)


def _pull(cache: Path, revision: str, wav: str, tmp_path: Path, offline: bool = True, repo_id: str = REPO_ID) -> dict:
    """Load ``repo_id`` at ``revision`` with pipeline(trust_remote_code=True) in a fresh process; its results."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "HF_HUB_CACHE": str(cache),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", _PULL_SCRIPT, repo_id, revision, wav],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    pulled = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(module.startswith("transformers_modules") for module in pulled["classes"]), pulled["classes"]
    return pulled


def _weights_sum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def _local_copy(trained_model, tmp_path: Path) -> Path:
    """The fixture's model as ``<tmp>/run/model`` beside its recipe (the shared cache is never written), without
    the evaluations other tests may have recorded in the fixture's folder."""
    run = tmp_path / "run"
    shutil.copytree(trained_model.model_dir, run / "model", ignore=shutil.ignore_patterns("evaluations.json"))
    shutil.copy(trained_model.run_dir / "recipe.yaml", run / "recipe.yaml")
    return run / "model"


def test_pushed_model_loads_offline_by_repo_id_and_revision(trained_model, hub, tmp_path: Path) -> None:
    from ai2text_hf.evaluation import evaluate_split
    from ai2text_hf.inference import Transcriber

    model_dir = _local_copy(trained_model, tmp_path)
    assert main(["push", "--model", str(model_dir), "--repo-id", REPO_ID]) == 0
    # A later evaluation of the run's test split, pushed to another branch: main keeps the card without results.
    evaluation = evaluate_split(model_dir, trained_model.dataset_dir, "test", limit=8)
    push_model(model_dir, REPO_ID, revision="v1")

    repo = hub.cache_dir / f"models--{REPO_ID.replace('/', '--')}"
    main_commit, v1_commit = (repo / "refs" / "main").read_text(), (repo / "refs" / "v1").read_text()
    assert main_commit != v1_commit
    snapshot = repo / "snapshots" / v1_commit
    pushed = {p.name for p in snapshot.iterdir()}
    auto_map = json.loads((snapshot / "config.json").read_text())["auto_map"]
    assert {f"{ref.split('.')[0]}.py" for ref in auto_map.values()} <= pushed
    assert {"model.safetensors", "tokenizer_config.json", "vocab.json", "README.md", "normalization_vi.py"} <= pushed
    assert not {"training_args.bin", "evaluations.json"} & pushed
    assert "model-index" not in (repo / "snapshots" / main_commit / "README.md").read_text()
    card = (snapshot / "README.md").read_text()
    assert "language: vi" in card and "trust_remote_code=True" in card and "## Training recipe" in card
    assert f"value: {round(100 * evaluation.metrics['wer'], 2)}" in card
    assert f"value: {round(100 * evaluation.metrics['cer'], 2)}" in card

    wav = str(trained_model.corpus_dir / trained_model.rows("test")[0]["file_path"])
    local = Transcriber(model_dir).transcribe_batch([wav])[0]["text"]
    expected = _weights_sum(AI2TextForCTC.from_pretrained(str(model_dir)))
    pulled = _pull(hub.cache_dir, "v1", wav, tmp_path)
    assert pulled["text"] == local
    assert pulled["weights_sum"] == pytest.approx(expected, rel=1e-9)
    # In this process too, by the package's own class, from the cache folder with HF_HUB_OFFLINE=1.
    for revision in ("main", "v1"):
        loaded = AI2TextForCTC.from_pretrained(REPO_ID, revision=revision, cache_dir=str(hub.cache_dir))
        assert _weights_sum(loaded) == pytest.approx(expected, rel=1e-9)


def test_push_refuses_a_folder_whose_auto_map_names_missing_code(trained_model, hub, tmp_path: Path) -> None:
    model_dir = _local_copy(trained_model, tmp_path)
    (model_dir / "modeling_ai2text.py").unlink()
    with pytest.raises(FileNotFoundError, match="modeling_ai2text.py"):
        push_model(model_dir, REPO_ID)
    assert hub.commits == []


def test_push_without_the_hub_exits_with_what_to_check(trained_model, monkeypatch, capsys) -> None:
    """The real client in offline mode (as in every test here): a clear error, not a traceback."""
    monkeypatch.setattr(transformers_hub, "_hf_api", None)  # hf_api() makes a real HfApi
    assert main(["push", "--model", str(trained_model.model_dir), "--repo-id", REPO_ID]) == 2
    assert "HF_HUB_OFFLINE is unset" in capsys.readouterr().err


def test_trainer_pushes_during_training_are_complete_folders(trained_model, hub, tmp_path: Path) -> None:
    from ai2text_hf.training.recipe import load_recipe
    from ai2text_hf.training.trainer import train

    recipe = load_recipe(
        TINY_RECIPE,
        {
            "num_epochs": 2,
            "seed": 1,
            "disable_tqdm": True,
            "push_to_hub": True,
            "hub_model_id": REPO_ID,
            "hub_strategy": "every_save",
        },
    )
    train(recipe, dataset_dir=trained_model.dataset_dir, output_dir=tmp_path / "train-run")

    intermediate = [c for c in hub.commits if c["message"].startswith("Training in progress")]
    assert len(intermediate) == 2, hub.commits
    for commit in intermediate:
        # The Trainer copies only config and weights (and saves the processor): the code comes from our callback.
        assert {"modeling_ai2text.py", "configuration_ai2text.py", "README.md", "model.safetensors"} <= set(
            commit["added"]
        ), commit
    first_epoch = intermediate[0]["id"]
    wav = str(trained_model.corpus_dir / trained_model.rows("test")[0]["file_path"])
    pulled = _pull(hub.cache_dir, first_epoch, wav, tmp_path)
    assert isinstance(pulled["text"], str)


def _hub_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not os.environ.get("HF_TOKEN"), reason="opt-in: needs HF_TOKEN with write access")
def test_real_hub_round_trip(trained_model, tmp_path: Path) -> None:
    """Against huggingface.co: push to a private repo (AI2TEXT_TEST_REPO or <user>/ai2text-hf-test) and pull it."""
    if not _hub_reachable():
        pytest.skip("huggingface.co is not reachable")
    model_dir = _local_copy(trained_model, tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "0"}
    api = HfApi(token=os.environ["HF_TOKEN"])
    repo_id = os.environ.get("AI2TEXT_TEST_REPO") or f"{api.whoami()['name']}/ai2text-hf-test"
    push = subprocess.run(
        [sys.executable, "-m", "ai2text_hf.cli", "push", "--model", str(model_dir), "--repo-id", repo_id, "--private"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert push.returncode == 0, push.stderr[-4000:]
    wav = str(trained_model.corpus_dir / trained_model.rows("test")[0]["file_path"])
    pulled = _pull(tmp_path / "real-cache", "main", wav, tmp_path, offline=False, repo_id=repo_id)
    assert pulled["weights_sum"] == pytest.approx(_weights_sum(AI2TextForCTC.from_pretrained(str(model_dir))))


# --- push --to-folder (the dry run), the card's facts, refusals ---------------------------------------------------


def _run_with_lm(model_with_lm: Path, tmp_path: Path, init_from: str | None = None) -> Path:
    """A copy of the run holding ``model_with_lm`` (its recipe's init_from set), with a legacy evaluations.json."""
    run = tmp_path / "run"
    shutil.copytree(model_with_lm.parent, run)
    if init_from:
        recipe = run / "recipe.yaml"
        recipe.write_text(recipe.read_text(encoding="utf-8").replace("init_from: null", f"init_from: {init_from}"))
    (run / "model" / "evaluations.json").write_text("[]", encoding="utf-8")
    return run / "model"


def _tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_dry_run_folder_holds_exactly_what_push_uploads(
    model_with_lm, trained_model, hub, tmp_path: Path, capsys
) -> None:
    from ai2text_hf.inference import Transcriber

    model = _run_with_lm(model_with_lm, tmp_path)
    dry_run = tmp_path / "upload"
    assert main(["push", "--model", str(model), "--repo-id", REPO_ID, "--to-folder", str(dry_run)]) == 0
    assert hub.commits == [] and "nothing uploaded" in capsys.readouterr().out
    files = _tree(dry_run)
    assert {"language_model/lm.json", "pipeline_ai2text.py", "README.md"} <= files
    # With its KenLM binary (make test compiles build_binary), the binary travels and the ARPA text stays home.
    binary = (model / "language_model" / "lm.bin").is_file()
    lm_files = {"language_model/lm.bin", "language_model/words.txt"} if binary else {"language_model/lm.arpa"}
    assert lm_files <= files and (not binary or "language_model/lm.arpa" not in files)
    assert {"language_model_ai2text.py", "model.safetensors", "config.json", "vocab.json"} <= files
    assert not {"training_args.bin", "evaluations.json"} & files
    config = json.loads((dry_run / "config.json").read_text(encoding="utf-8"))
    assert config["custom_pipelines"]["automatic-speech-recognition"]["impl"] == "pipeline_ai2text.AI2TextCTCPipeline"
    for name in files - {"README.md"}:
        assert (dry_run / name).read_bytes() == (model / name).read_bytes(), name
    push_model(model, REPO_ID)
    assert set(hub.commits[-1]["added"]) == files
    # By repo id, without ai2text: the pipeline config.json registers decodes with the repository's LM.
    wav = str(trained_model.corpus_dir / trained_model.rows("test")[0]["file_path"])
    pulled = _pull(hub.cache_dir, "main", wav, tmp_path)
    assert pulled["with_lm"] and pulled["text"] == Transcriber(model).transcribe_batch([wav])[0]["text"]
    snapshot = hub.cache_dir / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / hub.commits[-1]["id"]
    assert (snapshot / "README.md").read_text(encoding="utf-8") == (dry_run / "README.md").read_text(encoding="utf-8")
    assert main(["push", "--model", str(model), "--repo-id", REPO_ID, "--to-folder", str(dry_run)]) == 2
    assert "not an empty folder" in capsys.readouterr().err  # never written over


def test_card_reports_the_runs_test_evaluations_each_with_its_decoding(
    model_with_lm, trained_model, tmp_path: Path
) -> None:
    from ai2text_hf.decoding import DecodingOptions
    from ai2text_hf.evaluation import evaluate_split
    from ai2text_hf.hub import card_info_for_folder, push_plan

    model = _run_with_lm(model_with_lm, tmp_path, init_from="org/base-ctc")
    dataset = trained_model.dataset_dir
    with_lm = evaluate_split(model, dataset, "test", limit=6).metrics  # the model's LM, by default
    greedy = evaluate_split(model, dataset, "test", limit=6, decoding=DecodingOptions()).metrics
    evaluate_split(model, dataset, "val", limit=3)  # not the test split: not on the card
    card = push_plan(model, REPO_ID, card_info_for_folder(model, dataset_name="org/vi-speech")).card
    assert card.data.base_model == "org/base-ctc" and card.data.datasets == ["org/vi-speech"]
    reported = {(r.metric_name, r.metric_value, r.dataset_name, r.dataset_split) for r in card.data.eval_results}
    assert reported == {
        (f"Test {m.upper()} ({name})", round(100 * metrics[m], 2), "org/vi-speech", "test")
        for name, metrics in (("greedy", greedy), ("beam 10 + LM", with_lm))
        for m in ("wer", "cer")
    }
    assert "language_model/" in card.text and "flashlight-text" in card.text

    (validation,) = (model.parent / "eval").glob("val*")
    named = card_info_for_folder(model, evaluations=[validation], base_model="org/other")
    assert [(e.split != "test", e.decoded_with) for e in named.evaluations] == [(True, "beam 10 + LM")]
    assert named.base_model == "org/other"
    evaluate_split(model, trained_model.dataset_dir, "test", tmp_path / "elsewhere", limit=2)  # not the run's
    other = model.parent / "eval" / "test-other"
    shutil.copytree(model.parent / "eval" / "test", other)
    results = json.loads((other / "eval_results.json").read_text(encoding="utf-8"))
    results["data_version"]["name"] = "scratch-set"
    (other / "eval_results.json").write_text(json.dumps(results), encoding="utf-8")
    with pytest.raises(ValueError, match="several datasets"):
        card_info_for_folder(model)


def _without_vocab(model: Path) -> None:
    (model / "vocab.json").unlink()


def _without_lm_file(model: Path) -> None:
    for name in ("lm.arpa", "lm.bin"):  # neither the ARPA nor its KenLM binary
        (model / "language_model" / name).unlink(missing_ok=True)


def _without_pipeline_code(model: Path) -> None:
    (model / "pipeline_ai2text.py").unlink()


def _lm_without_registered_pipeline(model: Path) -> None:
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    del config["custom_pipelines"]
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (_without_vocab, "vocab.json"),
        (_without_lm_file, "neither lm.arpa nor lm.bin"),
        (_without_pipeline_code, "pipeline_ai2text.py"),
        (_lm_without_registered_pipeline, "registers no pipeline"),
    ],
)
def test_push_refuses_a_folder_missing_what_the_model_needs_before_uploading(
    model_with_lm, hub, tmp_path: Path, capsys, damage, named: str
) -> None:
    model = _run_with_lm(model_with_lm, tmp_path)
    damage(model)
    assert main(["push", "--model", str(model), "--repo-id", REPO_ID]) == 2
    assert named in capsys.readouterr().err and hub.commits == []
    assert main(["push", "--model", str(model), "--repo-id", REPO_ID, "--to-folder", str(tmp_path / "up")]) == 2
    assert not (tmp_path / "up").exists()
