"""prmsynth's answer check against math-verify's default on math-verify's own test cases.

Usage: python benchmarks/math_verify_cases.py --source DIR_OR_FILE [--max-failures N]

The cases are the parametrized ``(gold, pred, expected)`` lists in the test
files of https://github.com/huggingface/Math-Verify (``tests/test_all.py``,
``tests/test_numina_cases.py``, ``tests/test_open_thoughts.py``, ...).  They
are not copied into this repository; get them once and point ``--source`` at
the checkout (or at its ``tests`` folder, or at one test file)::

    git clone --depth 1 https://github.com/huggingface/Math-Verify /tmp/Math-Verify
    python benchmarks/math_verify_cases.py --source /tmp/Math-Verify

After that the script runs offline.  The cases are read with ``ast`` (literal
``pytest.mark.parametrize`` lists; an f-string such as
``f"{math.sqrt(17):.15f}"`` is evaluated with only ``math`` in scope), never
imported or executed.

For every case two checks are scored against ``expected`` (truthy means
"equivalent"):

(a) math-verify's default: ``verify(parse(gold), parse(pred))``, both parsed
    with default settings;
(b) prmsynth: ``MathAnswerVerifier().verify(pred, gold).correct`` (the gold is
    the reference).

Many of the tests call a helper ``compare_strings(gold, pred, match_types=...,
precision=..., strict=..., allow_set_relation_comp=...)``, which always uses
``LatexExtractionConfig(boxed_match_priority=0)`` and sometimes only LaTeX or
only expression extraction, another rounding, ``strict=False`` or set/relation
comparison.  Every case is measured with defaults anyway; the cases whose test
uses settings beyond the helper's defaults are counted and listed by setting.
A third column, (c) math-verify with the test's own settings, shows that the
cases were read correctly (it should match ``expected`` almost everywhere).
"""

from __future__ import annotations

import argparse
import ast
import logging
import math
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HELPER_DEFAULTS: dict[str, Any] = {
    "match_types": ["latex", "expr"],
    "precision": 6,
    "strict": True,
    "allow_set_relation_comp": False,
}
GOLD_NAMES = ("gold",)
PRED_NAMES = ("pred", "prediction")
EXPECTED_NAMES = ("expected", "result")


@dataclass
class Case:
    file: str
    test: str
    line: int
    gold: str
    pred: str
    expected: bool
    options: dict[str, Any] = field(default_factory=dict)  # test settings, helper calls only
    uses_helper: bool = False

    @property
    def special(self) -> dict[str, Any]:
        """Settings beyond the helper's defaults (empty for a default case)."""
        return {k: v for k, v in self.options.items() if HELPER_DEFAULTS.get(k) != v}


# ---------------------------------------------------------------------------
# Reading the cases
# ---------------------------------------------------------------------------


def _value(node: ast.expr) -> Any:
    """A literal, or an f-string evaluated with only ``math`` in scope."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        if isinstance(node, ast.JoinedStr):
            code = compile(ast.Expression(node), "<f-string>", "eval")
            return eval(code, {"__builtins__": {}, "math": math})
        raise


def _parametrize(decorator: ast.expr) -> tuple[list[str], ast.expr] | None:
    if not (isinstance(decorator, ast.Call) and len(decorator.args) >= 2):
        return None
    func = decorator.func
    if not (isinstance(func, ast.Attribute) and func.attr == "parametrize"):
        return None
    names = ast.literal_eval(decorator.args[0])
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",")]
    return list(names), decorator.args[1]


def _helper_call(function: ast.FunctionDef) -> ast.Call | None:
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name == "compare_strings":
                return node
    return None


def _pick(names: list[str], wanted: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in wanted), None)


def read_cases(path: Path) -> tuple[list[Case], list[str]]:
    """The (gold, pred, expected) cases of one test file, and notes on skipped ones."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    cases: list[Case] = []
    notes: list[str] = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        for decorator in function.decorator_list:
            found = _parametrize(decorator)
            if found is None:
                continue
            names, values = found
            gold_name = _pick(names, GOLD_NAMES)
            pred_name = _pick(names, PRED_NAMES)
            expected_name = _pick(names, EXPECTED_NAMES)
            if not (gold_name and pred_name and expected_name):
                notes.append(f"{path.name}::{function.name}: no gold/pred/expected ({names})")
                continue
            call = _helper_call(function)
            if not isinstance(values, ast.List | ast.Tuple):
                notes.append(f"{path.name}::{function.name}: cases are not a literal list")
                continue
            for element in values.elts:
                try:
                    row = element.elts if isinstance(element, ast.Tuple) else [element]
                    args = dict(zip(names, (_value(item) for item in row), strict=True))
                except (ValueError, TypeError, SyntaxError, NameError) as error:
                    notes.append(f"{path.name}:{element.lineno}: skipped ({error})")
                    continue
                options: dict[str, Any] = {}
                if call is not None:
                    options = dict(HELPER_DEFAULTS)
                    for keyword in call.keywords:
                        if keyword.arg is None:
                            continue
                        if isinstance(keyword.value, ast.Name) and keyword.value.id in args:
                            options[keyword.arg] = args[keyword.value.id]
                        else:
                            options[keyword.arg] = ast.literal_eval(keyword.value)
                cases.append(
                    Case(
                        file=path.name,
                        test=function.name,
                        line=element.lineno,
                        gold=str(args[gold_name]),
                        pred=str(args[pred_name]),
                        expected=bool(args[expected_name]),
                        options=options,
                        uses_helper=call is not None,
                    )
                )
    return cases, notes


def test_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    folder = source / "tests" if (source / "tests").is_dir() else source
    return sorted(folder.glob("test_*.py"))


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------


def math_verify_default(case: Case) -> bool:
    from math_verify import parse, verify

    return bool(verify(parse(case.gold), parse(case.pred)))


def math_verify_as_tested(case: Case) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    if not case.uses_helper:
        return math_verify_default(case)
    options = case.options
    targets: list[Any] = []
    for match_type in options["match_types"]:
        if match_type == "latex":
            targets.append(LatexExtractionConfig(boxed_match_priority=0))
        elif match_type == "expr":
            targets.append(ExprExtractionConfig())
    return bool(
        verify(
            parse(case.gold, targets),
            parse(case.pred, targets),
            float_rounding=options["precision"],
            strict=options["strict"],
            allow_set_relation_comp=options["allow_set_relation_comp"],
        )
    )


# ---------------------------------------------------------------------------
# Informal classes of prmsynth failures
# ---------------------------------------------------------------------------

_NUMBER_IN_PROSE = re.compile(r"[A-Za-z].*\d[\d,.]*\s*(?:[$€£]|m²|\w)?")
_DECIMAL_COMMA = re.compile(r"^\$?\d+,\d{1,2}\$?$|^\$?0,\d+\$?$")


def classify(case: Case, extracted: str | None) -> str:
    """An informal class for a case prmsynth gets wrong (first rule that fits)."""
    pred, gold = case.pred, case.gold
    boxes = pred.count("\\boxed")
    if extracted is None:
        if "pmatrix" in pred or "array" in pred:
            return "not extracted: matrix stated in prose"
        if re.match(r"Answer\s*[$\\]", pred):
            return "not extracted: 'Answer $X$' without a colon"
        if re.search(r"percent|pct", pred):
            return "not extracted: percent written as a word"
        if len(pred) > 300:
            return "not extracted: long solution, answer only in a concluding sentence"
        if "\\text" in gold or re.fullmatch(r"\$?[A-Za-z]+\$?", pred):
            return "not extracted: a bare word"
        if _NUMBER_IN_PROSE.search(pred):
            return "not extracted: number with currency/unit inside prose"
        return "not extracted: other"
    if not re.search(r"\w", extracted):
        return "junk extracted: a math delimiter taken as the answer"
    if boxes >= 2 and re.search(r"final answer is", pred, re.IGNORECASE):
        return "intermediate boxed value preferred over a later 'final answer is'"
    if boxes >= 2:
        return "several boxed answers, only the last one read"
    if re.search(r",\\!\s*\d{3}", pred):
        return "thousands separator ',\\!' inside boxed"
    if _DECIMAL_COMMA.match(pred.strip()) or _DECIMAL_COMMA.match(gold.strip()):
        return "decimal comma"
    if re.search(r"\s(is|are)\s", extracted):
        return "'Final Answer:' followed by a sentence"
    if "=" in gold and "=" in extracted:
        return "equation in another form"
    if re.fullmatch(r"-?\d*\.\d+", extracted.strip()) and "frac" in gold:
        return "decimal approximation of a fraction"
    if "\\boxed" in gold:
        return "gold is prose with boxed values, not a clean answer"
    if "\\boxed" in pred and re.search(r",", extracted):
        return "set / multiple answers"
    return "other"


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _short(text: str, width: int = 90) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def _share(groups: dict[str, list], limit: int) -> dict[str, int]:
    """How many cases of each group to show: round-robin up to ``limit`` in all."""
    shown = dict.fromkeys(groups, 0)
    while sum(shown.values()) < limit and any(shown[k] < len(g) for k, g in groups.items()):
        for key, group in groups.items():
            if shown[key] < len(group) and sum(shown.values()) < limit:
                shown[key] += 1
    return shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="Math-Verify checkout, tests folder or file")
    parser.add_argument("--max-failures", type=int, default=40)
    arguments = parser.parse_args(argv)
    if arguments.source is None or not arguments.source.exists():
        print(
            "error: --source must name a Math-Verify checkout, its tests folder or a test file;\n"
            "  git clone --depth 1 https://github.com/huggingface/Math-Verify /tmp/Math-Verify",
            file=sys.stderr,
        )
        return 2
    files = test_files(arguments.source)
    cases: list[Case] = []
    notes: list[str] = []
    for path in files:
        found, skipped = read_cases(path)
        cases.extend(found)
        notes.extend(skipped)
    if not cases:
        print(f"error: no parametrized (gold, pred, expected) cases in {arguments.source}")
        return 2

    logging.disable(logging.CRITICAL)  # math-verify logs every parse failure
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's prmsynth
    from prmsynth import MathAnswerVerifier, extract_answer

    verifier = MathAnswerVerifier()
    rows = []
    started = time.perf_counter()
    try:
        for case in cases:
            default = math_verify_default(case)
            as_tested = math_verify_as_tested(case)
            verdict = verifier.verify(case.pred, case.gold)
            rows.append((case, default, as_tested, verdict))
    finally:
        verifier.close()
    elapsed = time.perf_counter() - started

    total = len(rows)
    right_default = sum(d == c.expected for c, d, _, _ in rows)
    right_tested = sum(t == c.expected for c, _, t, _ in rows)
    right_prm = sum(v.correct == c.expected for c, _, _, v in rows)
    print(f"Math-Verify cases from {len(files)} files in {arguments.source} ({elapsed:.1f} s)")
    print(f"{'':42} {'cases':>6} {'mv default':>11} {'prmsynth':>9} {'mv as tested':>13}")
    print(
        f"{'total':42} {total:>6} {right_default:>11} {right_prm:>9} {right_tested:>13}"
        f"   (expected equivalent: {sum(c.expected for c, *_ in rows)})"
    )
    by_test: dict[str, list] = defaultdict(list)
    for row in rows:
        by_test[f"{row[0].file}::{row[0].test}"].append(row)
    for name, group in by_test.items():
        print(
            f"  {_short(name, 40):40} {len(group):>6}"
            f" {sum(d == c.expected for c, d, _, _ in group):>11}"
            f" {sum(v.correct == c.expected for c, _, _, v in group):>9}"
            f" {sum(t == c.expected for c, _, t, _ in group):>13}"
        )

    special = [row for row in rows if row[0].special]
    settings = Counter(
        ", ".join(f"{k}={v}" for k, v in sorted(row[0].special.items())) for row in special
    )
    print(f"\nCases whose test uses non-default settings (measured with defaults): {len(special)}")
    for setting, count in settings.most_common():
        print(f"  {count:>4}  {setting}")
    print(
        f"  (all {sum(c.uses_helper for c, *_ in rows)} compare_strings cases also use"
        " LatexExtractionConfig(boxed_match_priority=0))"
    )
    for note in notes:
        print(f"  note: {note}")

    false_pos = [row for row in rows if row[3].correct and not row[0].expected]
    print(f"\nprmsynth false positives (says correct, expected not): {len(false_pos)}")
    for case, default, _, verdict in false_pos:
        print(f"  {case.file}:{case.line}  gold={_short(case.gold, 60)!r}")
        print(f"      pred={_short(case.pred)!r}  extracted={verdict.extracted_answer!r}")
        print(f"      mv default right: {default == case.expected}")

    mv_only = [row for row in rows if row[1] == row[0].expected and row[3].correct != row[1]]
    prm_only = [
        row for row in rows if row[3].correct == row[0].expected and row[1] != row[3].correct
    ]
    print(f"\nmath-verify default right, prmsynth wrong: {len(mv_only)}")
    print(f"prmsynth right, math-verify default wrong: {len(prm_only)}")
    groups: dict[str, list] = defaultdict(list)
    for case, _, _, verdict in mv_only:
        extracted = extract_answer(case.pred)
        groups[classify(case, extracted)].append((case, extracted, verdict))
    shown = _share(groups, arguments.max_failures)
    for name, group in sorted(groups.items(), key=lambda item: -len(item[1])):
        print(f"\n[{name}] ({len(group)} cases, {shown[name]} shown)")
        for case, extracted, verdict in group[: shown[name]]:
            marker = " (special settings)" if case.special else ""
            print(f"  {case.file}:{case.line}{marker} expected={int(case.expected)}")
            print(f"      gold={_short(case.gold)!r}")
            print(f"      pred={_short(case.pred)!r}")
            print(f"      extracted={extracted!r} status={verdict.status}")
    if prm_only:
        print("\nprmsynth right, math-verify default wrong:")
        for case, _, _, verdict in prm_only:
            print(
                f"  {case.file}:{case.line} expected={int(case.expected)}"
                f" gold={_short(case.gold, 50)!r} pred={_short(case.pred, 50)!r}"
                f" extracted={verdict.extracted_answer!r}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
