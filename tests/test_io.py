"""Files: one JSONL line per record whatever the text, atomic writes, and resume
reading that never drops finished records silently."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prmsynth import InputError
from prmsynth._io import (
    atomic_file,
    dumps_line,
    iter_appended_jsonl,
    read_appended_jsonl,
    read_jsonl,
    write_json,
    write_jsonl,
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(st.lists(JSON_VALUES, max_size=5))
def test_every_record_is_one_line_for_any_reader_and_reads_back(records):
    text = "".join(dumps_line(record) for record in records)
    lines = text.splitlines()  # splits on U+2028, U+2029, U+0085 too
    assert len(lines) == len(records)
    assert [json.loads(line) for line in lines] == records


def test_written_files_are_readable_by_the_group_like_any_new_file(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"x": 1}])
    write_json(tmp_path / "b.json", {"x": 1})
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("a.jsonl", "b.json"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o666 & ~umask
    assert [record for _, record in read_jsonl(tmp_path / "a.jsonl")] == [{"x": 1}]


def test_a_failed_write_leaves_neither_a_partial_file_nor_a_temporary_one(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert [path.name for path in tmp_path.iterdir()] == ["out.jsonl"]


def test_a_torn_last_line_is_cut_and_the_file_repaired(tmp_path):
    path = tmp_path / "trees.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert read_appended_jsonl(path, repair=False) == [{"a": 1}, {"a": 2}]
    assert path.read_text().endswith('{"a": ')
    assert read_appended_jsonl(path, repair=True) == [{"a": 1}, {"a": 2}]
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'


def test_a_corrupt_line_in_the_middle_is_an_error_not_the_end_of_the_file(tmp_path):
    path = tmp_path / "trees.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 3}\n')
    with pytest.raises(InputError, match=r"trees.jsonl:2: bad JSON"):
        read_appended_jsonl(path, repair=True)
    assert path.read_text() == '{"a": 1}\nnot json\n{"a": 3}\n'  # nothing cut away


def test_a_bad_line_of_any_jsonl_file_is_located(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{oops\n')
    with pytest.raises(InputError, match=r"rows.jsonl:3: bad JSON"):
        list(read_jsonl(path))


def test_a_whole_last_record_without_its_newline_is_kept_and_completed(tmp_path):
    path = tmp_path / "trees.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}')
    assert [record for _, record in iter_appended_jsonl(path)] == [{"a": 1}, {"a": 2}]
    assert read_appended_jsonl(path, repair=True) == [{"a": 1}, {"a": 2}]
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'


@given(st.text(alphabet=st.characters(blacklist_categories=())))
def test_any_text_even_a_lone_surrogate_is_written_as_utf8_and_reads_back(text):
    line = dumps_line({"text": text})
    line.encode("utf-8")  # never raises
    assert json.loads(line) == {"text": text}


def test_a_line_the_disk_refuses_halfway_leaves_only_whole_lines(tmp_path, monkeypatch):
    import errno

    from prmsynth import StorageError
    from prmsynth._io import append_line

    path = tmp_path / "trees.jsonl"
    real_write = os.write
    with open(path, "a", encoding="utf-8") as file:
        append_line(file, {"question_id": "q1"})

        def half_then_full(descriptor, data):
            real_write(descriptor, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", half_then_full)
        with pytest.raises(StorageError, match=r"trees\.jsonl"):
            append_line(file, {"question_id": "q2", "text": "x" * 100})
        monkeypatch.undo()
        append_line(file, {"question_id": "q3"})
    assert [record["question_id"] for _, record in read_jsonl(path)] == ["q1", "q3"]
