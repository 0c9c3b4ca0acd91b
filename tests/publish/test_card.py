"""The dataset card's Hub metadata: features derived from the export schemas, the
published run files, and the front matter as the Hub and ``datasets`` read it."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prmsynth import FORMATS, export_records
from prmsynth.export._formats import load_schema
from prmsynth.publish._card import (
    TASK_CATEGORIES,
    ConfigFiles,
    front_matter,
    public_config,
    public_settings,
    sample_shown,
    source_datasets,
)
from prmsynth.publish._features import Unrepresentable, features_from_schema

from ..export_strategies import export_settings, forests

yaml = pytest.importorskip("yaml", reason="reading the card's front matter needs PyYAML")

#: The Hub's task categories a prmsynth card may name (huggingface.co/tasks).
HUB_TASKS = {"text-classification", "text-generation", "reinforcement-learning"}
#: Formats whose schema no column type describes: a tree nests itself.
RECURSIVE = {"tree"}


def test_every_format_has_task_categories_the_hub_knows():
    assert set(TASK_CATEGORIES) == set(FORMATS)
    assert all(tasks and set(tasks) <= HUB_TASKS for tasks in TASK_CATEGORIES.values())


@pytest.mark.parametrize("format", FORMATS)
def test_every_schema_gives_features_or_says_why_not(format):
    schema = load_schema(format)
    if format in RECURSIVE:
        with pytest.raises(Unrepresentable, match=r"any keys|itself"):
            features_from_schema(schema)
        return
    features = features_from_schema(schema)
    # One column per schema property, in the schema's order.
    assert [feature["name"] for feature in features] == list(schema["properties"])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    trees=forests(max_size=3),
    format=st.sampled_from([f for f in FORMATS if f not in RECURSIVE]),
    soft=st.booleans(),
    data=st.data(),
)
def test_any_export_casts_to_the_features_its_schema_gives(trees, format, soft, data):
    datasets = pytest.importorskip("datasets", reason="casting records needs datasets")
    soft = soft and format in ("trl", "math-shepherd")
    records = list(export_records(trees, format, data.draw(export_settings(soft_labels=soft))))
    features = datasets.Features._from_yaml_list(features_from_schema(load_schema(format), records))
    if not records:
        return
    table = datasets.Dataset.from_list(records, features=features)
    # Casting keeps every value: the records read back as they were written.
    for written, read in zip(records, table, strict=True):
        assert as_written(read, written) == written


def as_written(read, written):
    """``read`` (a row as datasets gives it) without the fields ``written``
    lacks, which a struct column fills with None (checked here)."""
    if isinstance(written, dict) and isinstance(read, dict):
        assert all(read[key] is None for key in read.keys() - written.keys())
        return {key: as_written(read[key], value) for key, value in written.items()}
    if isinstance(written, list) and isinstance(read, list) and len(read) == len(written):
        return [as_written(r, w) for r, w in zip(read, written, strict=True)]
    return read


def test_a_column_the_schema_gives_two_types_takes_the_records_type():
    schema = load_schema("trl")
    record = {"prompt": "p", "completions": ["a", "b"], "labels": [True, False]}
    labels = {f["name"]: f for f in features_from_schema(schema, [record])}["labels"]
    assert labels == {"name": "labels", "list": "bool"}
    soft = {**record, "labels": [0.75, 0.0]}
    labels = {f["name"]: f for f in features_from_schema(schema, [soft])}["labels"]
    assert labels == {"name": "labels", "list": "float64"}
    with pytest.raises(Unrepresentable, match="labels"):
        features_from_schema(schema, [record, soft])


def test_a_record_field_the_schema_does_not_name_gives_no_features():
    record = {"prompt": "p", "completions": ["a"], "labels": [True], "extra": 1}
    with pytest.raises(Unrepresentable, match="extra"):
        features_from_schema(load_schema("trl"), [record])


@given(name=st.from_regex(r"[a-z][a-z0-9-]{0,8}/[A-Za-z0-9][\w.-]{0,12}", fullmatch=True))
def test_a_hub_seed_source_is_the_source_dataset_and_a_path_is_none(name):
    assert source_datasets({"seed_file": f"hf:{name}"}) == [name]
    assert source_datasets({"seed_file": f"/home/me/{name}"}) == []
    assert source_datasets({"seed_file": f"hf:/home/me/{name}"}) == []
    assert source_datasets(None) == []


def _parts(value):
    yield value
    if isinstance(value, list):
        for item in value:
            yield from _parts(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _parts(item)


@given(
    record=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=2000),
        lambda inner: st.lists(inner, max_size=40) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=200,
    )
)
@settings(max_examples=50, deadline=None)
def test_a_sample_record_shows_short_texts_and_lists_and_all_of_a_small_record(record):
    shown = sample_shown({"record": record})
    for part in _parts(shown):
        if isinstance(part, str):
            assert len(part) <= 300 + len("... (2000 more characters)")
        elif isinstance(part, list):
            assert len(part) <= 8 + 1  # the items shown, and how many more there were
    small = all(
        len(part) <= 300 if isinstance(part, (str, list)) else True for part in _parts(record)
    ) and all(len(part) <= 8 for part in _parts(record) if isinstance(part, list))
    if small and len(json.dumps({"record": record}, indent=2, ensure_ascii=False)) <= 4_000:
        assert shown == {"record": record}


def test_the_front_matter_is_yaml_with_the_fields_and_types_the_hub_reads():
    config = ConfigFiles(
        name="trl",
        splits={
            "train": {"path": "trl/trl.train.jsonl", "records": 3, "questions": 2, "bytes": 120}
        },
        manifest={"format": "trl"},
        features=[{"name": "prompt", "dtype": "string"}],
        download_size=120,
    )
    text = front_matter(
        [config],
        license="mit",
        pretty_name='a "quoted": name',
        records=3,
        language=["en", "de"],
        sources=["openai/gsm8k"],
    )
    assert text.startswith("---\n") and text.endswith("---\n")
    header = yaml.safe_load(text.removeprefix("---\n").removesuffix("---\n"))
    assert header["pretty_name"] == 'a "quoted": name'
    for key in ("language", "task_categories", "tags", "size_categories", "source_datasets"):
        assert isinstance(header[key], list) and all(isinstance(v, str) for v in header[key])
    assert header["language"] == ["en", "de"]
    assert header["source_datasets"] == ["openai/gsm8k"]
    assert header["task_categories"] == ["text-classification"]
    assert header["dataset_info"] == [
        {
            "config_name": "trl",
            "features": [{"name": "prompt", "dtype": "string"}],
            "splits": [{"name": "train", "num_bytes": 120, "num_examples": 3}],
            "download_size": 120,
            "dataset_size": 120,
        }
    ]
    hub = pytest.importorskip("huggingface_hub", reason="the Hub's card parser")
    data = hub.DatasetCard(text + "\n# card\n").data
    assert data.language == ["en", "de"] and data.source_datasets == ["openai/gsm8k"]


SECRET = "hush0123456789abcdef"


def test_published_run_files_hold_no_credential_server_or_local_path(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", SECRET)
    run_info = {
        "seed_file": "/home/me/data/seeds.jsonl",
        "api_base": "http://me:pa55word@10.1.2.3:8000/v1",
        "model": f"openai/{SECRET}",
        "judge": {"model": "m", "api_base": "http://10.1.2.3:9000/v1", "api_key": "k" * 20},
        "command": "prmsynth run /home/me/data/seeds.jsonl --out /home/me/out "
        "--api-base http://10.1.2.3:8000/v1",
    }
    shown = json.dumps(public_settings(run_info))
    config = (
        "seed-file: /home/me/data/seeds.jsonl\nout: /home/me/out\n"
        "api-base: http://me:pa55word@10.1.2.3:8000/v1\njudge-api-base: http://10.1.2.3:9000\n"
        f"model: openai/{SECRET}\nhf-token: {SECRET}\nray: ray://10.1.2.3:10001\n"
        "router-config: /home/me/router.yaml\n"
    )
    text, removed = public_config(config, run_info)
    assert removed == ["api-base", "judge-api-base", "ray", "router-config"]
    for published in (shown, text):
        for private in (SECRET, "pa55word", "10.1.2.3", "/home/me", "api_key", "hf-token"):
            assert private not in published
    loaded = yaml.safe_load(text)
    assert (loaded["seed-file"], loaded["out"], loaded["api-base"]) == ("seeds.jsonl", "out", None)
    # Ray on this machine, or the cluster the command runs in, names no machine.
    for portable in ("local", "auto"):
        text, removed = public_config(f"ray: {portable}\n")
        assert (yaml.safe_load(text)["ray"], removed) == (portable, [])


def test_a_hub_seed_source_without_a_revision_gets_the_commit_run_json_pinned():
    config = "seed-file: hf:openai/gsm8k\nrevision: null\n"
    text, _ = public_config(config, {"seed_file": "hf:openai/gsm8k", "seed_revision": "abc123"})
    assert yaml.safe_load(text)["revision"] == "abc123"
    mine = "seed-file: hf:openai/gsm8k\nrevision: v1\n"
    assert yaml.safe_load(public_config(mine, {"seed_revision": "abc123"})[0])["revision"] == "v1"
