"""Exports and merges stream: the files match the in-memory export they replaced,
byte for byte, and memory does not grow with the number of trees."""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prmsynth import (
    FORMATS,
    ExportError,
    ExportSettings,
    InputError,
    Question,
    ReasoningTree,
    Rollout,
    RunFolder,
    Verdict,
    export_file,
    export_records,
    parse_math_shepherd,
    tree_to_dict,
    validate_record,
)
from prmsynth._io import dumps_line
from prmsynth.export._builders import Example
from prmsynth.export._records import _sample_bits, question_split
from prmsynth.export._schema import _quick_check, _validator, schema_name
from prmsynth.run._folder import derived_records

from ..export_strategies import replace_builder
from ..strategies import trees

LABELLED_FORMATS = ("trl", "math-shepherd", "prm800k", "processbench", "kto")
DERIVED = ("flat.jsonl", "sft.jsonl", "dpo.jsonl")

# A few step texts shared by every question, so that records repeat across
# questions (deduplication has work) and prefixes are shared within one.
STEPS = [f"Step text {letter}: add the numbers and carry the one." for letter in "ABCDEFGH"]


def varied_tree(index: int, rng: random.Random) -> ReasoningTree:
    """A tree with what the exports distinguish: shared prefixes, sampled and
    unsampled steps, judged and unjudged labels, critiques, cut-off and
    unparseable rollouts, finished solutions of every verdict."""
    text = "What is 2 + 2?" if rng.random() < 0.15 else f"Question {index}: what is {index} + 1?"
    tree = ReasoningTree(Question(id=f"q{index}", text=text, reference_answer=str(index + 1)))
    for _ in range(rng.randint(1, 5)):
        chain = tree.add_steps(tree.root, rng.choices(STEPS[:4], k=rng.randint(1, 6)))
        for node in rng.sample(chain, rng.randint(0, len(chain))):
            rollouts = [
                Rollout(
                    text=f"So the answer is {rng.choice(['4', '5', str(index + 1)])}.",
                    steps=tuple(rng.choices(STEPS[4:], k=rng.randint(0, 2))),
                    verdict=Verdict(status=rng.choice(["correct", "incorrect", "unparseable"])),
                    finish_reason=rng.choice(["stop", "stop", "length", None]),
                )
                for _ in range(rng.randint(1, 3))
            ]
            tree.record_rollouts(node, rollouts)
        if rng.random() < 0.3:
            tree.set_label(rng.choice(chain), rng.random() < 0.5)
        if rng.random() < 0.7:
            status = rng.choice(["correct", "incorrect", "unparseable"])
            tree.mark_terminal(chain[-1], Verdict(status=status))
        if rng.random() < 0.5:
            tree.set_critique(chain[-1], rng.randint(-1, len(chain)))
    return tree


def varied_forest(count: int = 240, seed: int = 7) -> list[ReasoningTree]:
    rng = random.Random(seed)
    forest = []
    for index in range(count):
        if index % 17 == 16:
            forest.append(forest[rng.randrange(len(forest))])  # the same tree twice
        else:
            forest.append(varied_tree(index, rng))
    return forest


# -- the in-memory reference -----------------------------------------------------------
#
# What export_file did before it streamed: every example in a list per file,
# deduplicated over all files, then balanced with random.sample over the
# examples' indices.  Built on the public API alone: export_records of one tree
# with nothing removed gives that tree's examples in order.


def error_and_steps(record: dict, format: str) -> tuple[bool, tuple[int, int, int]]:
    """An example's class and (positive, neutral, negative) steps, read off its record."""
    if format == "trl":
        positive = sum(record["labels"])
        return positive < len(record["labels"]), (positive, 0, len(record["labels"]) - positive)
    if format == "math-shepherd":
        labels = parse_math_shepherd(record)[2]
        return not all(labels), (sum(labels), 0, len(labels) - sum(labels))
    if format == "prm800k":
        ratings = Counter(step["completions"][0]["rating"] for step in record["label"]["steps"])
        return ratings[1] < sum(ratings.values()), (ratings[1], ratings[0], ratings[-1])
    if format == "kto":
        return not record["label"], (1, 0, 0) if record["label"] else (0, 0, 1)
    first_error, size = record["label"], len(record["steps"])
    positive = size if first_error == -1 else first_error
    return first_error != -1, (positive, 0, size - positive)


def reference_export(forest: list[ReasoningTree], format: str, settings: ExportSettings):
    """The files' text and the manifest's counts, the old way."""
    raw = ExportSettings(
        labels=settings.labels,
        positive_threshold=settings.positive_threshold,
        negative_threshold=settings.negative_threshold,
        consensus=settings.consensus,
        system_prompt=settings.system_prompt,
        soft_labels=settings.soft_labels,
        deduplicate=False,
    )
    split = settings.validation_fraction > 0
    parts = {name: [] for name in (("train", "validation") if split else ("all",))}
    seen, duplicates, examples = set(), 0, 0
    for tree in forest:
        part = question_split(tree.question.id, settings) if split else "all"
        for record in export_records([tree], format, raw):
            examples += 1
            # An added question_id is no part of the comparison: records alike but
            # for their question are duplicates, as before the field was written.
            own = format in ("tree", "flat")  # the id is part of these layouts
            compared = record if own else {k: v for k, v in record.items() if k != "question_id"}
            key = json.dumps(compared, sort_keys=True)
            if settings.deduplicate and key in seen:
                duplicates += 1
                continue
            seen.add(key)
            parts[part].append((tree.question.id, record))
    removed = 0
    for part, kept in parts.items():
        if settings.balance == "downsample":
            classes = [error_and_steps(record, format)[0] for _, record in kept]
            with_error = [i for i, has_error in enumerate(classes) if has_error]
            without_error = [i for i, has_error in enumerate(classes) if not has_error]
            size = min(len(with_error), len(without_error))
            generator = random.Random(f"{settings.balance_seed}:{part}")
            keep = set(generator.sample(with_error, size)) | set(
                generator.sample(without_error, size)
            )
            removed += len(kept) - len(keep)
            parts[part] = [example for i, example in enumerate(kept) if i in keep]
    files = {}
    for part, kept in parts.items():
        entry = {"records": len(kept), "questions": len({qid for qid, _ in kept})}
        if format in LABELLED_FORMATS:
            tallies = [error_and_steps(record, format) for _, record in kept]
            with_error = sum(has_error for has_error, _ in tallies)
            entry["label_balance"] = {
                "examples_without_error": len(kept) - with_error,
                "examples_with_error": with_error,
                "steps_positive": sum(steps[0] for _, steps in tallies),
                "steps_neutral": sum(steps[1] for _, steps in tallies),
                "steps_negative": sum(steps[2] for _, steps in tallies),
            }
        entry["text"] = "".join(dumps_line(record) for _, record in kept)
        files[part] = entry
    counts = {"examples": examples, "duplicates_removed": duplicates, "removed_by_balance": removed}
    return files, counts


def option_sets(format: str) -> list[dict]:
    sets = [{}, {"deduplicate": False}, {"validation_fraction": 0.3, "split_seed": 3}]
    if format in LABELLED_FORMATS:
        sets += [
            {"balance": "downsample"},
            {"balance": "downsample", "balance_seed": 5, "validation_fraction": 0.25},
            {"balance": "downsample", "deduplicate": False, "validation_fraction": 0.5},
            {"consensus": True, "balance": "downsample", "validation_fraction": 0.3},
            {"labels": "mc", "positive_threshold": 0.5, "negative_threshold": 0.25},
        ]
    if format == "math-shepherd":
        # A soft record's class is read off its marks (label), which soft trl records lack.
        sets += [
            {"soft_labels": True},
            {"soft_labels": True, "balance": "downsample", "validation_fraction": 0.3},
        ]
    return sets


CASES = [(format, options) for format in FORMATS for options in option_sets(format)]


@pytest.fixture(scope="module")
def forest_file(tmp_path_factory):
    forest = varied_forest()
    path = tmp_path_factory.mktemp("forest") / "trees.jsonl"
    path.write_text("".join(dumps_line(tree_to_dict(tree)) for tree in forest), encoding="utf-8")
    return forest, path


@pytest.mark.parametrize(
    ("format", "options"), CASES, ids=[f"{f}-{'-'.join(map(str, o.values()))}" for f, o in CASES]
)
def test_streamed_export_writes_the_bytes_the_in_memory_export_wrote(
    format, options, forest_file, tmp_path
):
    forest, path = forest_file
    settings = ExportSettings(**options)
    expected, counts = reference_export(forest, format, settings)
    manifest = export_file(path, format, tmp_path / "out.jsonl", settings)
    for part, entry in expected.items():
        written = manifest["files"][part]
        assert (tmp_path / written["path"]).read_text(encoding="utf-8") == entry.pop("text")
        assert {key: written[key] for key in entry} == entry
    for key, value in counts.items():
        assert manifest["counts"][key] == value, key
    # only the outputs and the manifest remain: no scratch or temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(entry["path"] for entry in manifest["files"].values()), "out.jsonl.manifest.json"]
    )


@pytest.mark.parametrize(("format", "options"), [c for c in CASES if "balance" in c[1]])
def test_export_records_balances_each_split_as_the_file_export_does(format, options, forest_file):
    forest, _ = forest_file
    settings = ExportSettings(**options)
    expected, _ = reference_export(forest, format, settings)
    for part, entry in expected.items():
        split = None if part == "all" else part
        records = export_records(iter(forest), format, settings, split=split)
        assert "".join(dumps_line(record) for record in records) == entry["text"]


def test_a_bad_line_late_in_the_input_leaves_no_file_behind(forest_file, tmp_path):
    forest, _ = forest_file
    path = tmp_path / "trees.jsonl"
    lines = [dumps_line(tree_to_dict(tree)) for tree in forest[:50]]
    path.write_text("".join(lines) + '{"question_id": "late"}\n' + lines[0], encoding="utf-8")
    settings = ExportSettings(balance="downsample", validation_fraction=0.3)
    with pytest.raises(InputError, match=r"trees\.jsonl:51"):
        export_file(path, "trl", tmp_path / "trl.jsonl", settings)
    assert [p.name for p in tmp_path.iterdir()] == ["trees.jsonl"]


def test_a_schema_error_in_a_balanced_export_is_numbered_as_in_its_file(tmp_path, monkeypatch):
    def half_broken(tree, settings, stats):
        # a valid solution with an error, then one without whose label is out of range
        for labels, has_error in (([False], True), ([1.5], False)):
            yield Example(
                record={"prompt": tree.question.text, "completions": ["a"], "labels": labels},
                question_id=tree.question.id,
                has_error=has_error,
            )

    replace_builder(monkeypatch, "trl", half_broken)
    settings = ExportSettings(balance="downsample")
    with pytest.raises(ExportError, match=r"^3 schema errors.*trl.jsonl: record 2: \$\.labels"):
        export_file(varied_forest(3), "trl", tmp_path / "trl.jsonl", settings)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("format", "options"),
    [("sft", {}), ("trl", {"balance": "downsample", "validation_fraction": 0.3})],
)
def test_an_export_lets_go_of_each_tree_once_its_records_are_out(format, options, tmp_path):
    refs: list[weakref.ref] = []
    alive_earlier: list[int] = []

    def forest() -> Iterator[ReasoningTree]:
        rng = random.Random(1)
        for index in range(40):
            gc.collect()  # a tree networkx has walked is a reference cycle
            alive_earlier.append(sum(ref() is not None for ref in refs))
            tree = varied_tree(index, rng)
            refs.append(weakref.ref(tree))
            yield tree
            del tree

    manifest = export_file(forest(), format, tmp_path / "out.jsonl", ExportSettings(**options))
    assert manifest["counts"]["trees"] == 40
    # at most the tree before, still named by a loop variable; never the forest
    assert max(alive_earlier) <= 1


def test_a_source_mixing_trees_and_paths_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="source must be"):
        export_file([*varied_forest(3), "trees.jsonl"], "sft", tmp_path / "mixed.jsonl")
    assert list(tmp_path.iterdir()) == []


# -- balancing draws ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 3000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))), st.text())
def test_balancing_picks_the_positions_random_sample_picks(sizes, seed):
    n, k = sizes
    bits = _sample_bits(random.Random(seed), n, k)
    picked = {i for i in range(n) if bits[i >> 3] & (1 << (i & 7))}
    assert picked == set(random.Random(seed).sample(range(n), k))


# -- the quick schema check --------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-1, 2) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _mutate(draw, record: dict) -> dict:
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(record))))
        if not path:
            continue
        holder = record
        for step in path[:-1]:
            holder = holder[step]
        if isinstance(holder, dict) and draw(st.booleans()):
            del holder[path[-1]]
        else:
            holder[path[-1]] = draw(json_values)
    return record


@st.composite
def mutated_records(draw) -> tuple[str, dict]:
    """A record of some format (a tree, or an export of one), changed in a few places."""
    tree = draw(trees())
    format = draw(st.sampled_from(FORMATS))
    records = list(export_records([tree], format)) or [tree_to_dict(tree)]
    record = json.loads(dumps_line(draw(st.sampled_from(records))))
    return format if records[0] is not record else "tree", _mutate(draw, record)


@settings(max_examples=120, deadline=None)
@given(mutated_records())
def test_the_quick_check_passes_only_records_the_schema_passes(case):
    format, record = case
    quick = _quick_check(schema_name(format))
    if quick is not None and quick(record):
        assert list(_validator(schema_name(format)).iter_errors(record)) == []


@settings(max_examples=50, deadline=None)
@given(trees())
def test_the_quick_check_passes_every_written_record(tree):
    assert _quick_check("tree")(json.loads(dumps_line(tree_to_dict(tree))))
    for format in FORMATS:
        quick = _quick_check(schema_name(format))
        if quick is None:
            continue  # a schema with a keyword the quick check leaves to jsonschema
        for record in export_records([tree], format):
            assert quick(json.loads(dumps_line(record))), format


def test_the_quick_check_errs_towards_asking_jsonschema():
    record = json.loads(dumps_line(tree_to_dict(varied_forest(1)[0])))
    record["reasoning_steps"]["visits"] = 1.0  # an integer to JSON Schema, not to the quick check
    assert not _quick_check("tree")(record)
    assert validate_record(record, "tree") == []
    record["reasoning_steps"]["mc_value"] = float("nan")
    assert not _quick_check("tree")(record)


# -- merge -------------------------------------------------------------------------------


def _shard(folder: Path, index: int, count: int, forest, skipped=()) -> None:
    folder.mkdir()
    info = {"model": "m", "shard": f"{index}/{count}", "system_prompt": "Solve it."}
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "summary.json").write_text(json.dumps({"complete": True}))
    lines = [
        dumps_line({**tree_to_dict(tree), "status": "kept", "n_completions": 3, "cost": 0.1})
        for tree in forest
    ]
    (folder / "trees.jsonl").write_text("".join(lines), encoding="utf-8")
    rows = [
        dumps_line({"question_id": qid, "status": "skipped", "n_completions": 2, "cost": 0.2})
        for qid in skipped
    ]
    (folder / "skipped.jsonl").write_text("".join(rows), encoding="utf-8")


def test_merge_writes_what_the_in_memory_merge_wrote(tmp_path):
    forest = varied_forest(60)
    shards = [forest[:25], forest[20:]]  # five questions in both
    _shard(tmp_path / "s0", 0, 2, shards[0], skipped=["x1", "q30"])
    _shard(tmp_path / "s1", 1, 2, shards[1], skipped=["x1", "x2"])
    summary = RunFolder(tmp_path / "all").merge([tmp_path / "s0", tmp_path / "s1"])
    # Shard 0's trees, then its skipped lines, then shard 1's: q30, skipped in
    # shard 0, stays skipped though shard 1 kept it.
    kept, seen = [], {"q30"}
    for tree in forest:
        if tree.question.id not in seen:
            seen.add(tree.question.id)
            kept.append(tree)
    out = tmp_path / "all"
    assert (out / "trees.jsonl").read_text(encoding="utf-8") == "".join(
        dumps_line({**tree_to_dict(tree), "status": "kept", "n_completions": 3, "cost": 0.1})
        for tree in kept
    )
    for name in DERIVED:
        assert (out / name).read_text(encoding="utf-8") == "".join(
            dumps_line(record)
            for tree in kept
            for record in derived_records(tree, "Solve it.")[name]
        )
    skipped = [json.loads(line)["question_id"] for line in (out / "skipped.jsonl").open()]
    assert skipped == ["x1", "q30", "x2"]
    assert summary["kept"] == len(kept)
    assert summary["completions"] == 3 * summary["kept"] + 2 * 3
    assert summary["cost_usd"] == sum([0.1] * summary["kept"] + [0.2] * 3)
    # No scratch file is left; the lock file stays, as in a run's folder.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".prmsynth.lock", "run.json", "summary.json", "trees.jsonl", "skipped.jsonl", *DERIVED]
    )


# -- memory ------------------------------------------------------------------------------


def _peak_bytes(work) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _generated(count: int) -> Iterator[ReasoningTree]:
    rng = random.Random(count)
    for index in range(count):
        if index % 50 == 0:
            # A tree networkx has walked is a reference cycle, freed only when the
            # collector runs: collect often, so that what is measured is what the
            # export holds, not the collector's schedule.
            gc.collect()
        yield varied_tree(index, rng)


@pytest.mark.parametrize("format", ["trl", "sft"])
def test_export_memory_does_not_grow_with_the_number_of_trees(format, tmp_path):
    balance = "downsample" if format in LABELLED_FORMATS else "none"
    settings = ExportSettings(balance=balance, validation_fraction=0.2)

    def export(count: int) -> None:
        export_file(_generated(count), format, tmp_path / f"{count}.jsonl", settings)

    export(20)  # caches (schemas, validators) are filled once, outside the measure
    small, large = _peak_bytes(lambda: export(100)), _peak_bytes(lambda: export(800))
    assert large < 1.5 * small, (small, large)
