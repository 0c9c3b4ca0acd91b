"""``prmsynth push``: a run's exports as a Hub dataset, against a stand-in for the Hub API."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import tempfile

import pytest

from prmsynth import (
    FORMATS as ALL_FORMATS,
)
from prmsynth import (
    ExportSettings,
    PublishError,
    Question,
    ReasoningTree,
    Verdict,
    export_file,
    push,
    tree_to_dict,
)
from prmsynth.cli import main
from prmsynth.testing import FakeOpenAIServer

from ..fake_hub import FakeHub
from ..test_docs_snippets import SEED_FILE, responder
from .test_card import as_written

yaml = pytest.importorskip("yaml", reason="reading the card's front matter needs PyYAML")
pytest.importorskip("huggingface_hub", reason="push needs huggingface_hub (the hf extra)")

TOKEN = "hf_prmsynthTestToken0123456789"
FORMATS = ("trl", "math-shepherd", "dpo-trl")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as ``prmsynth run`` writes it, from a fake model server."""
    folder = tmp_path_factory.mktemp("push-run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-push0123456789")
        with FakeOpenAIServer(responder=responder, keep_bodies=False) as server:
            argv = ["run", str(SEED_FILE), "--out", str(folder / "out")]
            argv += ["--model", "openai/fake", "--api-base", server.url, "--quiet"]
            assert main(argv) == 0
    return folder / "out"


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """A token in the environment, and no token file to fall back on."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    import huggingface_hub.constants

    monkeypatch.setattr(
        huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"), raising=False
    )
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: another test that
    # imported it offline must not turn the loopback Hub off for this one.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False, raising=False)
    return monkeypatch


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_dry_run_writes_the_folder_that_would_be_uploaded(run_dir, tmp_path, capsys):
    folder = tmp_path / "upload"
    argv = ["push", str(run_dir), "me/prm-data", "--dry-run", "--folder", str(folder)]
    argv += ["--formats", ",".join(FORMATS), "--validation-fraction", "0.5", "--license", "mit"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(folder)

    card = (folder / "README.md").read_text(encoding="utf-8")
    header = front_matter(card)
    assert header["license"] == "mit"
    assert "process-reward-model" in header["tags"]
    assert [config["config_name"] for config in header["configs"]] == list(FORMATS)
    settings = ExportSettings(validation_fraction=0.5)
    for config in header["configs"]:
        name = config["config_name"]
        expected = tmp_path / "expected" / name
        expected.mkdir(parents=True)
        manifest = export_file(run_dir / "trees.jsonl", name, expected / f"{name}.jsonl", settings)
        splits = {entry["split"]: entry["path"] for entry in config["data_files"]}
        assert set(splits) == {part for part, f in manifest["files"].items() if f["records"]}
        for split, path in splits.items():
            # The uploaded records are the export's, split by question the same way.
            assert read_jsonl(folder / path) == read_jsonl(expected / f"{name}.{split}.jsonl")
            assert f"| `{name}` |" in card
    # The method, its citations, and the commands that reproduce the data.
    for words in ("2406.06592", "2312.08935", "OmegaPRM", "prmsynth run seeds.jsonl"):
        assert words in card
    assert "prmsynth push out me/prm-data --license mit --validation-fraction 0.5" in card
    # The card names no machine: no server address, no local folder.
    run_info = json.loads((run_dir / "run.json").read_text())
    assert "127.0.0.1" in run_info["command"]
    assert "127.0.0.1" not in card
    assert str(tmp_path) not in card and str(run_dir) not in card
    assert json.loads((run_dir / "run.json").read_text())["seed_file_sha256"] in card


def test_each_config_loads_with_datasets_as_the_hub_would(run_dir, tmp_path, caplog):
    datasets = pytest.importorskip("datasets", reason="loading the configs needs datasets")
    settings = ExportSettings(validation_fraction=0.5)
    report = push(
        run_dir,
        "me/prm-data",
        formats=ALL_FORMATS,
        settings=settings,
        dry_run=True,
        folder=tmp_path / "upload",
    )
    assert report.url is None
    header = front_matter((report.folder / "README.md").read_text(encoding="utf-8"))
    infos = {info["config_name"]: info for info in header["dataset_info"]}
    assert list(infos) == [config["config_name"] for config in header["configs"]]
    assert list(infos) == list(report.records)
    for name, splits in report.records.items():
        # load_dataset reads the card's dataset_info: it casts every split to
        # the features and checks each split's example count.
        loaded = datasets.load_dataset(str(report.folder), name, verification_mode="all_checks")
        assert {split: len(rows) for split, rows in loaded.items()} == splits
        info = infos[name]
        assert {split["name"]: split["num_examples"] for split in info["splits"]} == splits
        files = {e["split"]: report.folder / e["path"] for e in config_files(header, name)}
        sizes = {split: path.stat().st_size for split, path in files.items()}
        assert {split["name"]: split["num_bytes"] for split in info["splits"]} == sizes
        assert info["download_size"] == info["dataset_size"] == sum(sizes.values())
        # datasets took all of it: it ignores a part it cannot read, with a warning.
        assert "dataset_info" not in caplog.text
        if name == "tree":  # a tree nests itself: no column type holds it, datasets infers
            assert "features" not in info
            continue
        features = datasets.Features._from_yaml_list(info["features"])
        assert all(rows.features == features for rows in loaded.values())
        # ... and every record reads back as it was written.
        for split, rows in loaded.items():
            written = read_jsonl(report.folder / name / f"{name}.{split}.jsonl")
            for record, read in zip(written, rows, strict=True):
                assert as_written(read, record) == record


def config_files(header: dict, name: str) -> list[dict]:
    return next(c for c in header["configs"] if c["config_name"] == name)["data_files"]


def test_the_card_carries_what_hub_users_and_the_viewer_expect(run_dir, tmp_path, capsys):
    folder = tmp_path / "upload"
    argv = ["push", str(run_dir), "me/prm-data", "--dry-run", "--folder", str(folder)]
    assert main([*argv, "--language", "en,de", "--formats", "trl,dpo-trl"]) == 0
    card = (folder / "README.md").read_text(encoding="utf-8")
    header = front_matter(card)
    assert header["language"] == ["en", "de"]
    assert header["task_categories"] == [
        "text-classification",
        "text-generation",
        "reinforcement-learning",
    ]
    assert header["annotations_creators"] == ["machine-generated"]
    assert "source_datasets" not in header  # the seeds are a local file, no Hub dataset
    trl = next(info for info in header["dataset_info"] if info["config_name"] == "trl")
    assert trl["features"] == [
        {"name": "question_id", "dtype": "string"},  # the seed's id, in every config
        {"name": "prompt", "dtype": "string"},
        {"name": "completions", "list": "string"},
        {"name": "labels", "list": "bool"},
        {"name": "mc_values", "list": "float64"},
    ]
    # One record per config, the first of its first split, in the body.
    for name in ("trl", "dpo-trl"):
        split = config_files(header, name)[0]["path"]
        first = json.dumps(read_jsonl(folder / split)[0], indent=2, ensure_ascii=False)
        section = card.split(f"### `{name}`", 1)[1]
        assert first in section.split("```json", 1)[1]
    # The run's files beside the data, and the card's commands use them.
    assert (folder / "run.json").is_file() and (folder / "config.yaml").is_file()
    assert "hf download me/prm-data run.json config.yaml --repo-type dataset" in card
    assert "prmsynth run --config config.yaml --api-base API_BASE" in card


def test_the_cards_reproduce_command_runs_the_published_config_again(run_dir, tmp_path):
    folder = tmp_path / "upload"
    push(run_dir, "me/prm-data", formats=["trl"], dry_run=True, folder=folder)
    card = (folder / "README.md").read_text(encoding="utf-8")
    here = tmp_path / "elsewhere"
    here.mkdir()
    # What `hf download` fetches, beside the seeds the card names.
    for name in ("run.json", "config.yaml"):
        shutil.copy(folder / name, here / name)
    shutil.copy(SEED_FILE, here / json.loads((folder / "run.json").read_text())["seed_file"])
    [command] = [line for line in card.splitlines() if line.startswith("prmsynth run --config")]
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(here)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-push0123456789")
        with FakeOpenAIServer(responder=responder, keep_bodies=False) as server:
            argv = shlex.split(command.replace("API_BASE", server.url))[1:]
            assert main([*argv, "--quiet"]) == 0
    out = here / yaml.safe_load((here / "config.yaml").read_text())["out"]
    again, first = (json.loads((d / "run.json").read_text()) for d in (out, run_dir))
    assert again["seed_file_sha256"] == first["seed_file_sha256"]
    assert again["pipeline"]["policy"] == first["pipeline"]["policy"]
    ids = [
        [json.loads(line)["question_id"] for line in (d / "trees.jsonl").open()]
        for d in (out, run_dir)
    ]
    assert sorted(ids[0]) == sorted(ids[1])


def test_a_bad_language_exits_2_before_writing(run_dir, tmp_path, capsys):
    folder = tmp_path / "upload"
    argv = ["push", str(run_dir), "me/prm-data", "--dry-run", "--folder", str(folder)]
    assert main([*argv, "--language", "English"]) == 2
    assert "--language" in capsys.readouterr().err
    assert not folder.exists()


def test_dry_run_without_a_folder_keeps_a_temporary_one_and_prints_it(run_dir, capsys):
    assert main(["push", str(run_dir), "me/prm-data", "--dry-run", "--formats", "trl"]) == 0
    printed = capsys.readouterr().out.strip()
    try:
        from pathlib import Path

        assert (Path(printed) / "README.md").is_file()
        assert (Path(printed) / "trl").is_dir()
    finally:
        shutil.rmtree(printed)


def test_push_creates_the_dataset_and_uploads_the_dry_run_folder(
    run_dir, tmp_path, hub_env, capsys
):
    dry = tmp_path / "dry"
    argv = ["push", str(run_dir), "me/prm-data", "--private"]
    assert main([*argv, "--dry-run", "--folder", str(dry)]) == 0
    capsys.readouterr()
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    hub_env.setattr(tempfile, "tempdir", str(temporary))
    with FakeHub() as hub:
        hub_env.setenv("HF_ENDPOINT", hub.url)
        assert main(argv) == 0
    assert list(temporary.iterdir()) == []  # the upload was assembled there, then removed
    output = capsys.readouterr()
    assert f"{hub.url}/datasets/me/prm-data" in output.err
    created = next(r for r in hub.requests if r.path == "/api/repos/create")
    body = json.loads(created.body)
    assert (body["organization"], body["name"], body["type"]) == ("me", "prm-data", "dataset")
    assert body.get("private") is True or body.get("visibility") == "private"
    expected = {
        path.relative_to(dry).as_posix(): path.read_bytes()
        for path in dry.rglob("*")
        if path.is_file()
    }
    assert hub.files == expected
    # The token goes to the Hub in the Authorization header, and nowhere else.
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.requests)
    assert TOKEN not in output.out + output.err
    assert not any(TOKEN.encode() in content for content in hub.files.values())


def test_a_hub_that_refuses_exits_1_naming_the_dataset(run_dir, hub_env, capsys):
    with FakeHub(refuse=403) as hub:
        hub_env.setenv("HF_ENDPOINT", hub.url)
        assert main(["push", str(run_dir), "me/prm-data", "--formats", "trl"]) == 1
    error = capsys.readouterr().err
    assert "me/prm-data: upload failed" in error and "403" in error
    assert TOKEN not in error


def test_push_from_python_raises_publish_error(run_dir, hub_env):
    with FakeHub(refuse=401) as hub, pytest.raises(PublishError, match="me/prm-data"):
        push(run_dir, "me/prm-data", formats=["trl"], endpoint=hub.url)


def test_no_token_exits_2_before_any_request(run_dir, hub_env, capsys):
    hub_env.delenv("HF_TOKEN")
    with FakeHub() as hub:
        hub_env.setenv("HF_ENDPOINT", hub.url)
        assert main(["push", str(run_dir), "me/prm-data"]) == 2
    assert hub.requests == []
    assert "no Hugging Face token" in capsys.readouterr().err


def test_without_huggingface_hub_the_message_says_what_to_install(
    run_dir, hub_env, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    assert main(["push", str(run_dir), "me/prm-data"]) == 2
    assert "pip install 'prmsynth[hf]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--formats", "trl,nope"], "unknown format"),
        (["--validation-fraction", "1.5"], "argument --validation-fraction"),
    ],
)
def test_bad_options_exit_2(run_dir, capsys, extra, words):
    assert main(["push", str(run_dir), "me/prm-data", "--dry-run", *extra]) == 2
    assert words in capsys.readouterr().err


def test_bad_places_exit_2(run_dir, tmp_path, capsys):
    assert main(["push", str(tmp_path), "me/prm-data", "--dry-run"]) == 2
    assert "not a prmsynth run folder" in capsys.readouterr().err
    assert main(["push", str(run_dir), "not a repo", "--dry-run"]) == 2
    assert "user/name" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    argv = ["push", str(run_dir), "me/prm-data", "--dry-run", "--folder", str(tmp_path / "busy")]
    assert main(argv) == 2
    assert "empty folder" in capsys.readouterr().err
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"


def test_a_format_without_records_is_left_out_and_the_card_still_loads(tmp_path):
    tree = ReasoningTree(Question(id="q1", text="What is 2 + 3?", reference_answer="5"))
    steps = tree.add_steps(tree.root, ["2 + 3 = 5.", "The answer is 5."])
    tree.mark_terminal(steps[-1], Verdict(status="correct"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "trees.jsonl").write_text(json.dumps(tree_to_dict(tree)) + "\n")
    settings = ExportSettings()  # no validation split: one train split
    report = push(
        run,
        "me/tiny",
        formats=["trl", "dpo-trl"],
        settings=settings,
        dry_run=True,
        folder=tmp_path / "up",
    )
    assert report.records == {"trl": {"train": 1}}
    assert report.left_out == ("dpo-trl",)
    header = front_matter((tmp_path / "up" / "README.md").read_text())
    assert header["configs"] == [
        {
            "config_name": "trl",
            "default": True,
            "data_files": [{"split": "train", "path": "trl/trl.jsonl"}],
        }
    ]
    assert not (tmp_path / "up" / "dpo-trl").exists()


def test_soft_labels_push_refuses_a_format_without_floats_before_writing(run_dir, tmp_path, capsys):
    folder = tmp_path / "up"
    argv = ["push", str(run_dir), "me/prm-data", "--dry-run", "--folder", str(folder)]
    assert main([*argv, "--soft-labels"]) == 2  # the default formats include dpo-trl
    assert "format 'dpo-trl' cannot carry float labels" in capsys.readouterr().err
    assert not folder.exists()
    assert main([*argv, "--soft-labels", "--formats", "trl,math-shepherd"]) == 0
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.count("**Soft labels**") == 2
    for name in ("trl", "math-shepherd"):
        manifest = json.loads((folder / name / f"{name}.jsonl.manifest.json").read_text())
        assert manifest["settings"]["soft_labels"] is True
    labels = [
        label for line in read_jsonl(folder / "trl" / "trl.train.jsonl") for label in line["labels"]
    ]
    assert labels and all(isinstance(label, float) and 0 <= label <= 1 for label in labels)
    # The card says so: the labels column holds numbers.
    [trl] = [info for info in front_matter(card)["dataset_info"] if info["config_name"] == "trl"]
    assert {"name": "labels", "list": "float64"} in trl["features"]


def test_a_bad_config_yaml_in_the_run_folder_exits_2_naming_it(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("cache.sqlite"))
    (run / "config.yaml").write_text("model: [unclosed\n")
    folder = tmp_path / "upload"
    argv = ["push", str(run), "me/prm-data", "--dry-run", "--folder", str(folder)]
    assert main(argv) == 2
    assert f"{run / 'config.yaml'}: cannot read: not YAML" in capsys.readouterr().err
    assert not folder.exists()
