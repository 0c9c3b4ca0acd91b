"""Seeds from anywhere a researcher keeps them: JSON, CSV, Parquet, a datasets folder, the Hub,
or rows from Python, read as a stream, with the same located messages for bad input."""

from __future__ import annotations

import csv
import itertools
import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prmsynth import InputError, load_questions
from prmsynth.cli import main

ROWS = [
    {"id": "a", "question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"},
    {"id": "b", "question": 'Quote "this", then\na new line.', "answer": "7"},
    {"id": "c", "question": "Über 3 · 4?", "answer": "12"},
]
FIELDS = {"question_fields": ["question"], "answer_field": "answer"}
EXPECTED = [("a", "What is 2 + 3?", "5"), ("b", 'Quote "this", then\na new line.', "7")]
EXPECTED.append(("c", "Über 3 · 4?", "12"))
HF = "pip install 'prmsynth[hf]'"


def triples(questions):
    return [(q.id, q.text, q.reference_answer) for q in questions]


def needs(module):
    return pytest.importorskip(module, reason=f"{module} is not installed (the hf extra)")


# -- writers, one per source kind -----------------------------------------------------


def write_jsonl(rows, folder):
    path = folder / "seeds.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path), {}


def write_json_array(rows, folder):
    path = folder / "seeds.json"
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return str(path), {}


def write_csv(rows, folder, name="seeds.csv", delimiter=","):
    path = folder / name
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return str(path), {}


def write_tsv(rows, folder):
    return write_csv(rows, folder, "seeds.tsv", "\t")


def write_parquet(rows, folder):
    parquet = needs("pyarrow.parquet")
    import pyarrow

    path = folder / "seeds.parquet"
    parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return str(path), {}


def write_saved_dataset(rows, folder):
    datasets = needs("datasets")
    path = folder / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return str(path), {}


def write_saved_splits(rows, folder):
    datasets = needs("datasets")
    path = folder / "saved-splits"
    other = datasets.Dataset.from_list([{"id": "z", "question": "Other?", "answer": "1"}])
    datasets.DatasetDict(train=other, test=datasets.Dataset.from_list(rows)).save_to_disk(str(path))
    return str(path), {"split": "test"}


def write_hub_folder(rows, folder):
    """A folder of data files as a Hub dataset repository holds them, read with hf:PATH."""
    needs("datasets")
    repo = folder / "repo"
    (repo / "main").mkdir(parents=True)
    write_jsonl(rows, repo / "main")
    (repo / "main" / "seeds.jsonl").rename(repo / "main" / "test.jsonl")
    (repo / "main" / "train.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    return f"hf:{repo}", {"split": "test"}


WRITERS = [
    write_jsonl,
    write_json_array,
    write_csv,
    write_tsv,
    write_parquet,
    write_saved_dataset,
    write_saved_splits,
    write_hub_folder,
]


@pytest.mark.parametrize("writer", WRITERS, ids=lambda writer: writer.__name__[6:])
def test_every_source_gives_the_same_questions(writer, tmp_path):
    source, options = writer(ROWS, tmp_path)
    assert triples(load_questions(source, **FIELDS, **options)) == EXPECTED


def test_rows_from_python_a_list_or_a_dataset():
    assert triples(load_questions(ROWS, **FIELDS)) == EXPECTED
    datasets = needs("datasets")
    dataset = datasets.Dataset.from_list(ROWS)
    assert triples(load_questions(dataset, **FIELDS)) == EXPECTED
    with pytest.raises(InputError, match="one split's rows"):
        load_questions(datasets.DatasetDict(train=dataset), **FIELDS)


def test_rows_from_python_are_read_only_up_to_the_limit():
    endless = ({"question": f"What is {n} + 1?", "answer": str(n + 1)} for n in itertools.count())
    questions = load_questions(endless, **FIELDS, limit=3)
    assert [q.reference_answer for q in questions] == ["1", "2", "3"]


texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
    min_size=1,
    max_size=40,
).filter(lambda text: text.strip())


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.tuples(texts, texts), min_size=1, max_size=6))
def test_csv_and_parquet_give_what_jsonl_gives(rows, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rows")
    records = [{"question": q, "answer": a} for q, a in rows]
    reference = triples(load_questions(write_jsonl(records, folder)[0], **FIELDS))
    assert triples(load_questions(write_csv(records, folder)[0], **FIELDS)) == reference
    assert triples(load_questions(write_parquet(records, folder)[0], **FIELDS)) == reference


# -- JSON is read in chunks: the chunk size changes nothing ------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.dictionaries(texts, json_values, max_size=4), min_size=1, max_size=5),
    layout=st.sampled_from(["jsonl", "array", "pretty"]),
    chunk=st.integers(min_value=1, max_value=40),
    broken=st.booleans(),
)
def test_json_reading_does_not_depend_on_the_chunk_size(values, layout, chunk, broken):
    import tempfile
    from pathlib import Path

    from prmsynth import _sources

    if layout == "jsonl":
        text = "".join(json.dumps(value) + "\n" for value in values)
    elif layout == "array":
        text = json.dumps(values, indent=1)
    else:
        text = "\n".join(json.dumps(value, indent=2) for value in values) + "\n"
    if broken:
        text = text[: len(text) * 2 // 3] + "\n{oops}\n"
    path = Path(tempfile.mkdtemp()) / "values.json"
    path.write_text(text, encoding="utf-8")

    def read():
        try:
            return list(_sources.iter_json_records(path)), None
        except InputError as error:
            return None, (error.line, error.message)

    whole = read()
    original = _sources._CHUNK_CHARS
    _sources._CHUNK_CHARS = chunk
    try:
        assert read() == whole
    finally:
        _sources._CHUNK_CHARS = original
    if not broken:
        assert [value for _, value in whole[0]] == values


# -- bad input: the source, the line or row, the field ---------------------------------


@pytest.mark.parametrize("writer", WRITERS, ids=lambda writer: writer.__name__[6:])
def test_a_missing_column_exits_2_naming_the_source_and_field(writer, tmp_path, capsys):
    source, options = writer(ROWS, tmp_path)
    argv = ["run", source, "--out", str(tmp_path / "out"), "--column-names", "problem"]
    argv += [f"--{key}={value}" for key, value in options.items()]
    assert main([*argv, "--answer-column", "answer"]) == 2
    error = capsys.readouterr().err
    assert source in error and "field 'problem'" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("writer", "where"),
    [
        (write_jsonl, ":3:"),
        (write_csv, ":6:"),  # after the header, the rows before it span two lines each
        (write_parquet, ", row 2:"),
        (write_saved_dataset, ", row 2:"),
    ],
)
def test_a_bad_value_names_its_line_or_row(writer, where, tmp_path, monkeypatch):
    from prmsynth import _sources

    monkeypatch.setattr(_sources, "_BATCH_ROWS", 2)  # the bad row is in the second batch
    source, options = writer([*ROWS[:2], {**ROWS[2], "answer": " "}], tmp_path)
    with pytest.raises(InputError) as caught:
        load_questions(source, **FIELDS, **options)
    assert f"{source}{where} field 'answer': empty value" in str(caught.value)


def test_a_bare_hub_name_is_pointed_to_its_prefix(tmp_path, capsys):
    assert main(["run", "openai/gsm8k", "--out", str(tmp_path / "out")]) == 2
    assert "write hf:openai/gsm8k" in capsys.readouterr().err


def test_options_of_datasets_on_a_file_are_refused(tmp_path):
    source, _ = write_jsonl(ROWS, tmp_path)
    for option in ("subset", "split", "revision"):
        with pytest.raises(InputError, match=f"--{option} applies to Hub datasets"):
            load_questions(source, **FIELDS, **{option: "x"})


def test_a_dataset_of_several_splits_needs_one_named(tmp_path):
    source, _ = write_saved_splits(ROWS, tmp_path)
    with pytest.raises(InputError, match="has splits train, test: choose one with --split"):
        load_questions(source, **FIELDS)
    with pytest.raises(InputError, match="no split 'dev'"):
        load_questions(source, **FIELDS, split="dev")


def test_a_plain_folder_is_no_dataset(tmp_path):
    with pytest.raises(InputError, match=r"no datasets\.save_to_disk folder"):
        load_questions(tmp_path, **FIELDS)


@pytest.mark.parametrize(
    ("source", "module"),
    [("seeds.parquet", "pyarrow.parquet"), ("hf:openai/gsm8k", "datasets")],
)
def test_without_the_hf_extra_the_message_says_what_to_install(source, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(InputError, match=HF.replace("[", r"\[").replace("]", r"\]")):
        load_questions(source, **FIELDS)


# -- the Hub: streamed, pinned, recorded --------------------------------------------------


@pytest.fixture
def fake_hub_dataset(monkeypatch):
    """``datasets.load_dataset`` and the Hub's dataset info, answered locally."""
    datasets = needs("datasets")
    huggingface_hub = needs("huggingface_hub")
    calls = []

    def load_dataset(name, subset=None, **options):
        calls.append({"name": name, "subset": subset, **options})
        return datasets.IterableDataset.from_generator(lambda: iter(ROWS))

    class Info:
        sha = "c0ffee" * 6 + "beef"

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", lambda self, *a, **k: Info())
    return calls


def test_a_hub_dataset_is_streamed_with_its_subset_split_and_revision(fake_hub_dataset):
    options = {"subset": "main", "split": "test", "revision": "v1"}
    questions = load_questions("hf:openai/gsm8k", **FIELDS, **options)
    assert triples(questions) == EXPECTED
    assert {q.source for q in questions} == {"hf:openai/gsm8k"}
    assert fake_hub_dataset == [
        {
            "name": "openai/gsm8k",
            "subset": "main",
            "split": "test",
            "revision": "v1",
            "streaming": True,
        }
    ]


def test_a_run_from_the_hub_records_its_source_pinned_and_resumes(
    fake_hub_dataset, tmp_path, monkeypatch, capsys
):
    from prmsynth.testing import FakeOpenAIServer

    from .test_docs_snippets import responder

    monkeypatch.setenv("OPENAI_API_KEY", "sk-hub0123456789")
    out = tmp_path / "out"
    argv = ["run", "hf:openai/gsm8k", "--subset", "main", "--split", "test", "--out", str(out)]
    argv += ["--column-names", "question", "--answer-column", "answer", "--quiet", "--limit", "1"]
    with FakeOpenAIServer(responder=responder, keep_bodies=False) as server:
        argv += ["--model", "openai/fake", "--api-base", server.url]
        assert main(argv) == 0
        info = json.loads((out / "run.json").read_text())
        assert info["seed_file"] == "hf:openai/gsm8k"
        assert (info["seed_subset"], info["seed_split"]) == ("main", "test")
        assert info["seed_revision"] == "c0ffee" * 6 + "beef"  # the commit it was read at
        assert info["seed_file_sha256"] is None
        assert info["command"].startswith(
            "prmsynth run hf:openai/gsm8k --column-names question --answer-column answer "
            "--subset main --split test --limit 1 --out"
        )
        # The recorded command runs again on the same folder: a resume, not a refusal.
        assert main(argv) == 0
    assert fake_hub_dataset[-1]["revision"] == "c0ffee" * 6 + "beef"
    assert "other settings" not in capsys.readouterr().err


def test_evolve_and_label_read_the_new_sources_too(tmp_path, capsys):
    source, _ = write_parquet(ROWS, tmp_path)
    argv = ["evolve", source, "--out", str(tmp_path / "q.jsonl"), "--column-names", "nope"]
    assert main(argv) == 2
    assert f"{source}: field 'nope': no such column" in capsys.readouterr().err
    assert main(["label", source, "--out", str(tmp_path / "l.jsonl")]) == 2
    assert f"{source}: field 'problem': no such column" in capsys.readouterr().err


def test_label_rows_from_parquet_keep_their_list_of_steps(tmp_path):
    from prmsynth.cli._label import read_label_rows

    rows = [{"id": 1, "problem": "2 + 3?", "steps": ["2 + 3 = 5.", "So 5."], "answer": 5}]
    source, _ = write_parquet(rows, tmp_path)
    [(_, question, steps)] = read_label_rows(source)
    assert (question.id, question.reference_answer, steps) == ("1", "5", ["2 + 3 = 5.", "So 5."])
