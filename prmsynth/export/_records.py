"""From trees to records: build, deduplicate, split into train and validation, and
balance; in memory (`export_records`) or as `_write.py` streams them."""

from __future__ import annotations

import array
import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from prmsynth._tree import ReasoningTree
from prmsynth.export._builders import Example
from prmsynth.export._registry import check_format_options, export_format
from prmsynth.export._settings import ExportSettings, SplitName

__all__ = ["Downsample", "export_records", "question_split", "selected_examples"]


def question_split(question_id: str, settings: ExportSettings) -> SplitName:
    """``"validation"`` or ``"train"``: where the records of ``question_id`` go.

    A stable hash of the question id and ``split_seed`` (not Python's
    ``hash``, which changes between runs), so reruns agree, and every record of
    a question lands on the same side.

    >>> settings = ExportSettings(validation_fraction=0.5)
    >>> question_split("q1", settings) == question_split("q1", settings)
    True
    >>> question_split("q1", ExportSettings())
    'train'
    """
    key = f"{settings.split_seed}\0{question_id}".encode("utf-8", "surrogatepass")
    position = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    return "validation" if position < settings.validation_fraction else "train"


def _record_key(record: dict[str, Any]) -> bytes:
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).digest()


def _first_in_memory() -> Callable[[bytes], bool]:
    """True the first time a key is met: a set, for exports held in memory anyway."""
    seen: set[bytes] = set()

    def first(key: bytes) -> bool:
        if key in seen:
            return False
        seen.add(key)
        return True

    return first


def selected_examples(
    trees: Iterable[ReasoningTree],
    format: str,
    settings: ExportSettings,
    *,
    split: bool,
    stats: Counter[str],
    first: Callable[[bytes], bool],
) -> Iterator[tuple[str, Example]]:
    """Build, split and deduplicate the examples of every tree, one at a time:
    ``(part, example)`` in input order, ``part`` being ``"all"`` without ``split``.

    ``first(key)`` says whether a record's hash is met for the first time
    (deduplication runs over every part together).  Where the format carries
    the question's id, each record gets ``question_id`` after that check.
    """
    check_format_options(format, settings)
    entry = export_format(format)
    for tree in trees:
        stats["trees"] += 1
        part = question_split(tree.question.id, settings) if split else "all"
        for example in entry.build(tree, settings, stats):
            stats["examples"] += 1
            # The key leaves the id out, as before the id was written: two
            # questions of the same text still give a record once.
            if settings.deduplicate and not first(_record_key(example.record)):
                stats["duplicates_removed"] += 1
                continue
            if entry.carries_question_id and "question_id" not in example.record:
                record = {"question_id": example.question_id, **example.record}
                example = attrs.evolve(example, record=record)
            yield part, example


def _sample_bits(generator: random.Random, n: int, k: int) -> bytearray:
    """A bit per position of ``range(n)``, set for the ``k`` positions
    ``generator.sample(range(n), k)`` picks, with the same draws.

    Balancing picks positions, never records, so it needs only counts on a
    first pass; this follows `random.sample`'s two methods draw for draw
    (earlier exports chose with it) but holds 8 bytes per position at most
    instead of a Python int.
    """
    bits = bytearray((n + 7) // 8)
    setsize = 21  # random.sample's choice between a pool and a set of picks
    if k > 5:
        setsize += 4 ** math.ceil(math.log(k * 3, 4))
    if n <= setsize:
        pool = array.array("q", range(n))
        for i in range(k):
            j = generator.randrange(n - i)
            chosen = pool[j]
            bits[chosen >> 3] |= 1 << (chosen & 7)
            pool[j] = pool[n - i - 1]
    else:
        for _ in range(k):
            j = generator.randrange(n)
            while bits[j >> 3] & (1 << (j & 7)):
                j = generator.randrange(n)
            bits[j >> 3] |= 1 << (j & 7)
    return bits


@attrs.define
class Downsample:
    """Which examples of one part balancing keeps, asked in their order.

    Built from the part's counts of examples with and without an error: the
    larger class is cut at random (``balance_seed`` and the part's name seed
    it) to the size of the smaller.
    """

    keep: dict[bool, bytearray]
    seen: dict[bool, int]

    @classmethod
    def plan(
        cls, with_error: int, without_error: int, settings: ExportSettings, part: str
    ) -> Downsample:
        size = min(with_error, without_error)
        generator = random.Random(f"{settings.balance_seed}:{part}")
        keep = {True: _sample_bits(generator, with_error, size)}
        keep[False] = _sample_bits(generator, without_error, size)
        return cls(keep=keep, seen={True: 0, False: 0})

    def __call__(self, has_error: bool | None) -> bool:
        kind = bool(has_error)
        position = self.seen[kind]
        self.seen[kind] += 1
        return bool(self.keep[kind][position >> 3] & (1 << (position & 7)))


def export_records(
    trees: Iterable[ReasoningTree],
    format: str,
    settings: ExportSettings | None = None,
    *,
    split: SplitName | None = None,
) -> Iterator[dict[str, Any]]:
    """The records of ``trees`` in ``format``, deduplicated and balanced as ``settings`` say.

    With ``split=None`` every record comes out (balanced as one set, whatever
    ``validation_fraction`` is); with ``"train"`` or ``"validation"`` only the
    records of the questions on that side (balanced within it).  Records are
    not validated here: [`validate_record`][prmsynth.validate_record] does that.
    Records come out as the trees are read, except with ``balance``, which
    holds the records of the part until it has counted them (for many trees,
    [`export_file`][prmsynth.export_file] balances on disk).

    >>> from prmsynth import Question, ReasoningTree, Rollout, Verdict
    >>> tree = ReasoningTree(Question(id="q1", text="What is 2 + 3?", reference_answer="5"))
    >>> right = tree.add_steps(tree.root, ["2 + 3 = 5.", "The answer is 5."])
    >>> wrong = tree.add_steps(tree.root, ["2 + 3 = 6.", "The answer is 6."])
    >>> tree.mark_terminal(right[-1], Verdict(status="correct"))
    >>> tree.mark_terminal(wrong[-1], Verdict(status="incorrect"))
    >>> failed = Rollout(text="So 6.", steps=("So 6.",), verdict=Verdict(status="incorrect"))
    >>> tree.record_rollouts(wrong[0], [failed])  # MC value 0.0 at the wrong step
    >>> for record in export_records([tree], "processbench"):
    ...     print(record["id"], record["steps"], record["label"], record["final_answer_correct"])
    q1-n2 ['2 + 3 = 5.', 'The answer is 5.'] -1 True
    q1-n3-r0 ['2 + 3 = 6.', 'So 6.'] 0 False
    q1-n4 ['2 + 3 = 6.', 'The answer is 6.'] 0 False
    >>> [record["labels"] for record in export_records([tree], "trl")]
    [[True, True], [False, False]]
    """
    settings = settings or ExportSettings()
    if split not in (None, "train", "validation"):
        raise ValueError(f"split must be None, 'train' or 'validation', got {split!r}")
    wanted = split or "all"
    examples = (
        example
        for part, example in selected_examples(
            trees,
            format,
            settings,
            split=split is not None,
            stats=Counter(),
            first=_first_in_memory(),
        )
        if part == wanted
    )
    if settings.balance == "none":
        for example in examples:
            yield example.record
        return
    # Balancing needs the counts of the whole part before the first record.
    kept = list(examples)
    with_error = sum(1 for example in kept if example.has_error)
    keep = Downsample.plan(with_error, len(kept) - with_error, settings, wanted)
    for example in kept:
        if keep(example.has_error):
            yield example.record
