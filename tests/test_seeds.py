from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prmsynth import InputError, load_questions, reference_from_answer


def write(tmp_path, text, name="seeds.jsonl"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl(tmp_path):
    path = write(
        tmp_path,
        '{"problem": "1+1?", "final_answer": "2"}\n\n{"problem": "2+2?", "final_answer": 4}\n',
    )
    questions = load_questions(path)
    assert [(q.id, q.text, q.reference_answer) for q in questions] == [
        ("1", "1+1?", "2"),
        ("2", "2+2?", "4"),
    ]
    assert questions[0].source == "seeds.jsonl"


def test_json_array(tmp_path):
    path = write(tmp_path, json.dumps([{"id": "a", "problem": "p", "final_answer": "1"}], indent=2))
    assert [q.id for q in load_questions(path)] == ["a"]


def test_objects_one_after_another_as_the_seed_script_wrote_them(tmp_path):
    text = (
        '{\n  "idx": 1,\n    "problem": "A spinner ...",\n    "final_answer": "\\\\frac{1}{4}"\n}\n'
        '{\n  "idx": 2,\n    "problem": "My school\'s math club ...",\n    "final_answer": "3003"\n}\n'
    )
    questions = load_questions(write(tmp_path, text, "seeds.json"))
    assert [(q.id, q.reference_answer) for q in questions] == [("1", "\\frac{1}{4}"), ("2", "3003")]


def test_gsm8k_answers_yield_the_final_number(tmp_path):
    path = write(tmp_path, json.dumps({"question": "Q?", "answer": "48/2 = 24\n#### 72"}) + "\n")
    [question] = load_questions(path, question_fields=["question"], answer_field="answer")
    assert question.reference_answer == "72"
    assert reference_from_answer("no hashes") == "no hashes"


def test_several_question_fields_are_joined(tmp_path):
    path = write(tmp_path, json.dumps({"context": "C", "problem": "P", "final_answer": "1"}) + "\n")
    [question] = load_questions(path, question_fields=["context", "problem"])
    assert question.text == "C\n\nP"


def test_limit(tmp_path):
    lines = "".join(json.dumps({"problem": f"p{i}", "final_answer": "1"}) + "\n" for i in range(5))
    assert len(load_questions(write(tmp_path, lines), limit=2)) == 2


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ('{"problem": "p", "final_answer": "1"}\n{"problem": "q"}\n', 2, "final_answer", "missing"),
        (
            '{"problem": "p", "final_answer": "1"}\n{"problem": "q", "final_answer": "  "}\n',
            2,
            "final_answer",
            "empty",
        ),
        (
            '{"problem": "p", "final_answer": "1"}\n{"problem": "q", "final_answer": "x ####"}\n',
            2,
            "final_answer",
            "empty",
        ),
        ('{"problem": "p", "final_answer": "1"}\n\n{"problem": oops}\n', 3, None, "invalid JSON"),
        ('{"problem": ["p"], "final_answer": "1"}\n', 1, "problem", "expected text"),
        ("[1, 2]", 1, None, "expected a JSON object"),
        (
            '{"id": 1, "problem": "p", "final_answer": "1"}\n{"id": 1, "problem": "q", "final_answer": "2"}\n',
            2,
            None,
            "duplicate id",
        ),
        ('[{"problem": "p", "final_answer": "1"}', 1, None, "not closed"),
        ('{"problem": "p", "final_answer": NaN}\n', 1, "final_answer", "not a finite number"),
        ('{"problem": "p", "final_answer": Infinity}\n', 1, "final_answer", "not a finite"),
        ('{"problem": "p", "final_answer": 1e400}\n', 1, "final_answer", "not a finite number"),
        ('{"problem": 42, "final_answer": "1"}\n', 1, "problem", "expected text, got int"),
        ('{"problem": NaN, "final_answer": "1"}\n', 1, "problem", "expected text, got float"),
        ('{"problem": "p", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n", 1, None, "too deeply"),
        ('{"problem": "' + "x" * 20_001 + '", "final_answer": "1"}\n', 1, None, "longer than"),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path, text, line, field, words):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_questions(path)
    error = caught.value
    assert error.line == line
    assert error.field == field
    assert words in str(error)
    assert str(path) in str(error)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_questions(tmp_path / "nope.jsonl")


def test_iter_questions_reads_one_row_at_a_time_and_reports_a_bad_row_when_it_gets_there():
    from prmsynth import iter_questions

    read = []

    def rows():
        for n in range(1, 4):
            read.append(n)
            yield {"problem": f"What is {n} + 1?", "final_answer": n + 1}
        yield {"problem": "No answer here"}

    questions = iter_questions(rows())
    assert read == []  # nothing is read before the first question is asked for
    first = next(questions)
    assert (first.id, first.reference_answer, read) == ("1", "2", [1])
    assert [q.id for q in [next(questions), next(questions)]] == ["2", "3"]
    with pytest.raises(InputError) as caught:
        next(questions)
    assert "row 3" in str(caught.value) and "final_answer" in str(caught.value)


def test_iter_questions_finds_a_duplicate_id_and_names_where_it_was_first(tmp_path):
    from prmsynth import iter_questions

    seeds = write(
        tmp_path,
        "".join(
            json.dumps({"id": i % 3 if i < 4 else i, "problem": "p", "final_answer": "1"}) + "\n"
            for i in range(6)
        ),
    )
    with pytest.raises(InputError) as caught:
        list(iter_questions(seeds))
    assert str(caught.value) == f"{seeds}:4: duplicate id '0' (first on line 1)"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"id": "a", "problem": "What is 2 + 3?\\ud800", "final_answer": "5"}', "problem"),
        ('{"id": "a", "problem": "What is 2 + 3?", "final_answer": "5\\udfff"}', "final_answer"),
        ('{"id": "a\\ud83d", "problem": "What is 2 + 3?", "final_answer": "5"}', "id"),
    ],
)
def test_text_no_request_can_carry_is_refused_at_load_with_line_and_field(tmp_path, line, field):
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"id": "ok", "problem": "1 + 1?", "final_answer": "2"}\n' + line + "\n")
    with pytest.raises(InputError, match="lone surrogate") as caught:
        load_questions(path)
    assert (caught.value.line, caught.value.field) == (2, field)


@pytest.mark.parametrize("value", ['{"x": 1}', "[1, 2]", "true"])
def test_an_id_that_is_no_text_or_number_is_refused_not_turned_into_its_repr(tmp_path, value):
    path = tmp_path / "seeds.jsonl"
    path.write_text(f'{{"id": {value}, "problem": "1 + 1?", "final_answer": "2"}}\n')
    with pytest.raises(InputError, match="expected text or a number") as caught:
        load_questions(path)
    assert (caught.value.line, caught.value.field) == (1, "id")


def test_ids_given_as_numbers_are_kept_as_their_text(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"id": 7, "problem": "1 + 1?", "final_answer": "2"}\n')
    assert [question.id for question in load_questions(path)] == ["7"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_bad_utf8_is_reported_at_its_line_and_column_not_a_byte_offset(tmp_path, suffix):
    path = tmp_path / f"seeds{suffix}"
    if suffix == ".csv":
        head, bad = b"problem,final_answer\n" + b"1 + 1?,2\n" * 3000, b"caf\xe9?,2\n"
    else:
        row = b'{"problem": "1 + 1?", "final_answer": "2"}\n'
        head, bad = row * 3000, b'{"problem": "caf\xe9?", "final_answer": "2"}\n'
    path.write_bytes(head + bad)
    with pytest.raises(InputError, match="not UTF-8 text: byte 0xe9 at column") as caught:
        load_questions(path)
    assert caught.value.line == head.count(b"\n") + 1


def math500_rows(count: int = 3) -> list[dict]:
    """Rows shaped as MATH-500's: the id is ``unique_id``, a path-like text."""
    return [
        {
            "problem": f"What is {n} + {n}?",
            "answer": str(2 * n),
            "unique_id": f"test/algebra/{100 + n}.json",
            "id": n,  # a field named id that --id-column must win over
        }
        for n in range(count)
    ]


def test_an_id_column_names_the_field_every_question_id_comes_from(tmp_path):
    path = write(tmp_path, "".join(json.dumps(row) + "\n" for row in math500_rows()))
    questions = load_questions(path, answer_field="answer", id_field="unique_id")
    assert [q.id for q in questions] == [f"test/algebra/{100 + n}.json" for n in range(3)]
    # Without it the id field still gives the ids, as before.
    assert [q.id for q in load_questions(path, answer_field="answer")] == ["0", "1", "2"]


def test_an_id_column_reads_csv_and_rows_from_python_alike(tmp_path):
    rows = math500_rows(2)
    csv = "problem,answer,unique_id\n" + "".join(
        f"{row['problem']},{row['answer']},{row['unique_id']}\n" for row in rows
    )
    from_csv = load_questions(
        write(tmp_path, csv, "seeds.csv"), answer_field="answer", id_field="unique_id"
    )
    from_rows = load_questions(rows, answer_field="answer", id_field="unique_id")
    assert [q.id for q in from_csv] == [q.id for q in from_rows] == [r["unique_id"] for r in rows]


@pytest.mark.parametrize(
    ("second", "words"),
    [
        ({"problem": "q", "answer": "1"}, "missing field"),
        ({"problem": "q", "answer": "1", "unique_id": None}, "empty id"),
        ({"problem": "q", "answer": "1", "unique_id": " "}, "empty id"),
        ({"problem": "q", "answer": "1", "unique_id": ["a"]}, "expected text or a number"),
        ({"problem": "q", "answer": "1", "unique_id": "a"}, "duplicate id 'a'"),
    ],
)
def test_a_bad_id_in_the_id_column_is_refused_naming_line_and_field(tmp_path, second, words):
    first = {"problem": "p", "answer": "1", "unique_id": "a"}
    path = write(tmp_path, json.dumps(first) + "\n" + json.dumps(second) + "\n")
    with pytest.raises(InputError, match=re.escape(words)) as caught:
        load_questions(path, answer_field="answer", id_field="unique_id")
    assert caught.value.line == 2
    assert caught.value.field in ("unique_id", None)  # a duplicate names the first line instead


@given(
    ids=st.lists(
        st.one_of(
            st.text(st.characters(codec="utf-8"), min_size=1).filter(str.strip),
            st.integers(min_value=-(10**12), max_value=10**12),
        ),
        min_size=1,
        max_size=8,
        unique_by=str,
    )
)
@settings(max_examples=50, deadline=None)
def test_any_distinct_ids_in_the_id_column_come_through_as_their_text(ids):
    rows = [{"problem": "p", "final_answer": "1", "key": value} for value in ids]
    assert [q.id for q in load_questions(rows, id_field="key")] == [str(v) for v in ids]


def test_run_with_an_id_column_keeps_those_ids_in_the_trees_and_every_export_of_them(
    tmp_path, capsys
):
    from prmsynth import export_file
    from prmsynth.cli import main
    from prmsynth.testing import FakeOpenAIServer

    from .test_docs_snippets import SEED_FILE, responder

    rows = [json.loads(line) for line in SEED_FILE.read_text().splitlines() if line.strip()][:2]
    seeds = tmp_path / "math500.jsonl"
    seeds.write_text(
        "".join(
            json.dumps({**row, "unique_id": f"test/algebra/{row.pop('idx')}.json"}) + "\n"
            for row in rows
        )
    )
    wanted = [f"test/algebra/{n}.json" for n in (1, 2)]
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-ids0123456789")
        with FakeOpenAIServer(responder=responder, keep_bodies=False) as server:
            argv = ["run", str(seeds), "--out", str(out), "--id-column", "unique_id"]
            argv += ["--model", "openai/fake", "--api-base", server.url, "--quiet"]
            assert main(argv) == 0
            run_info = json.loads((out / "run.json").read_text())
            assert run_info["id_field"] == "unique_id"
            assert "id-column: unique_id" in (out / "config.yaml").read_text()
            ids = {json.loads(line)["question_id"] for line in (out / "trees.jsonl").open()}
            skipped = {json.loads(line)["question_id"] for line in (out / "skipped.jsonl").open()}
            assert ids | skipped == set(wanted) and ids
            assert {json.loads(line)["question_id"] for line in (out / "flat.jsonl").open()} == ids
            export_file(out / "trees.jsonl", "processbench", tmp_path / "pb.jsonl")
            for line in (tmp_path / "pb.jsonl").open():
                assert json.loads(line)["id"].rsplit("-n", 1)[0] in ids
            # Other ids are other questions: the folder refuses them.
            capsys.readouterr()
            assert main([*argv[:4], "--id-column", "problem", *argv[6:]]) == 2
            assert "id_field" in capsys.readouterr().err
