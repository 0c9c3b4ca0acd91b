"""The OmegaPRM search against planted outcomes (scripted LLM, real verifier)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prmsynth import (
    LLMStepGenerator,
    OmegaPRM,
    Question,
    RelativeDrop,
    SearchSettings,
    StepVerifier,
    Threshold,
    Verdict,
)
from prmsynth.search._policies import rollout_length
from prmsynth.testing import ScriptedLLM, ScriptedRequest

QUESTION = Question(id="q1", text="Planted question", reference_answer="5")
CONTINUE_MARKER = "Here are the first steps"


class BoxedVerifier(StepVerifier):
    """Reads the last \\boxed{} without worker processes, for fast property tests."""

    def verify(self, response, reference, *, finish_reason=None):
        if finish_reason == "length":
            return Verdict(status="unparseable", reason="truncated")
        if "\\boxed{" not in response:
            return Verdict(status="unparseable", reason="no answer found")
        answer = response.rsplit("\\boxed{", 1)[1].split("}", 1)[0]
        status = "correct" if answer == reference else "incorrect"
        return Verdict(status=status, extracted_answer=answer)


def solution(steps: list[str]) -> str:
    return "\n\n".join(steps)


def planted_script(good: list[str], bad: list[str], *, root_correct_every: int = 2):
    """From the root: every `root_correct_every`-th sample is the good solution,
    the others the bad one.  From a prefix: wrong once a BAD step is in it."""

    def script(request: ScriptedRequest) -> str:
        prompt = request.last_message
        if CONTINUE_MARKER not in prompt:
            return solution(good if request.sample_index % root_correct_every == 0 else bad)
        if "BAD" in prompt:
            return solution(["keep going wrong", "The answer is \\boxed{7}."])
        return solution(["keep going right", "The answer is \\boxed{5}."])

    return script


GOOD = ["good step 1", "good step 2", "good step 3", "The answer is \\boxed{5}."]
BAD = ["good step 1", "BAD step 2", "bad step 3", "The answer is \\boxed{7}."]


def search(script, search_settings: SearchSettings, verifier: StepVerifier, *, rule=None):
    generator = LLMStepGenerator(llm=ScriptedLLM(script))
    policy = OmegaPRM(settings=search_settings, first_error_rule=rule)
    return asyncio.run(policy.search(QUESTION, generator=generator, verifier=verifier))


#: OmegaPRM's classic rule: binary search, a step is wrong when no completion from it succeeds.
MC_ZERO = Threshold(threshold=0.0, num_branches=4)


def node_with_text(tree, text: str) -> int:
    [node] = [n for n in tree.nodes() if tree.node(n).text == text]
    return node


def test_binary_search_finds_the_planted_first_error(math_verifier):
    result = search(planted_script(GOOD, BAD), SearchSettings(), math_verifier, rule=MC_ZERO)
    tree = result.tree
    tree.check_invariants()
    assert result.status == "kept"
    assert tree.mc_value(tree.root) == 0.5  # 8 of 16 screening rollouts were right
    bad_step = node_with_text(tree, "BAD step 2")
    good_step = node_with_text(tree, "good step 1")
    assert tree.mc_value(bad_step) == 0.0
    assert tree.mc_value(good_step) == 1.0
    assert tree.parent(bad_step) == good_step
    # screening + two estimations; the duplicate candidates reuse those estimates
    assert result.n_completions == 16 + 4 + 4
    assert result.n_selections == 4


def test_deep_planted_error_costs_logarithmic_estimations(math_verifier):
    good = [f"good step {i}" for i in range(1, 12)] + ["The answer is \\boxed{5}."]
    bad = [f"good step {i}" for i in range(1, 8)] + ["BAD step 8", "bad 9", "bad 10"]
    bad.append("The answer is \\boxed{7}.")
    result = search(
        planted_script(good, bad),
        SearchSettings(max_search=1, max_branches=1000),
        math_verifier,
        rule=MC_ZERO,
    )
    tree = result.tree
    bad_step = node_with_text(tree, "BAD step 8")
    assert tree.mc_value(bad_step) == 0.0
    assert tree.mc_value(tree.parent(bad_step)) == 1.0
    estimations = (result.n_completions - 16) // 4
    assert estimations <= 4  # ceil(log2(11 steps)), the last step's value is known
    # every estimated prefix is a node with exactly num_branches rollouts
    estimated = [
        n
        for n in tree.nodes()
        if n != tree.root and not tree.node(n).terminal and tree.node(n).n_rollouts
    ]
    assert len(estimated) == estimations
    assert all(tree.node(n).n_rollouts == 4 for n in estimated)


def test_mc_values_match_planted_rates(math_verifier):
    # From the root exactly one sample in four is right: MC = 4 / 16.
    result = search(
        planted_script(GOOD, BAD, root_correct_every=4), SearchSettings(), math_verifier
    )
    tree = result.tree
    assert tree.node(tree.root).n_correct == 4
    assert tree.node(tree.root).n_rollouts == 16
    assert tree.mc_value(tree.root) == 0.25
    # the correct solution joined the tree as one step per node, ending in a terminal node
    [path_end] = [n for n in tree.nodes() if tree.prefix_steps(n) == GOOD]
    assert tree.node(path_end).terminal and tree.mc_value(path_end) == 1.0
    assert tree.mc_value(node_with_text(tree, "good step 2")) is None  # never sampled


@pytest.mark.parametrize(("answer", "reason"), [("5", "all_correct"), ("7", "none_correct")])
def test_screening_skips_uniform_questions(answer, reason, math_verifier):
    def script(request):
        return solution(["one step", f"The answer is \\boxed{{{answer}}}."])

    result = search(script, SearchSettings(), math_verifier)
    assert result.status == "skipped"
    assert result.reason == reason
    assert result.n_completions == 16
    assert result.n_selections == 0


def test_cut_off_and_answerless_completions_are_recorded_but_never_count(math_verifier):
    from prmsynth import Completion

    def script(request):
        if request.sample_index == 0:
            return solution(GOOD)
        if request.sample_index == 1:
            return Completion(text="The answer is \\boxed{5", finish_reason="length", n_tokens=512)
        return "I do not know."

    result = search(script, SearchSettings(screen_rollouts=4, max_search=0), math_verifier)
    root = result.tree.node(result.tree.root)
    assert (root.n_correct, root.n_rollouts) == (1, 1)  # the one judged completion
    assert (root.n_truncated, root.n_unparseable) == (1, 2)
    assert root.incorrect_rollouts == ()
    assert len(root.unusable_rollouts) == 3
    # three of four screening rollouts unusable: the question teaches nothing
    assert (result.status, result.reason) == ("skipped", "unusable_rollouts")


def test_a_prefix_whose_completions_are_all_cut_off_has_no_value_and_no_error(math_verifier):
    from prmsynth import Completion

    def script(request):
        if CONTINUE_MARKER in request.last_message and "BAD" not in request.last_message:
            return Completion(text="So the", finish_reason="length", n_tokens=512)
        return planted_script(GOOD, BAD)(request)

    generator = LLMStepGenerator(llm=ScriptedLLM(script))
    labels = asyncio.run(
        OmegaPRM(first_error_rule=Threshold(num_branches=4)).label(
            QUESTION, GOOD, generator=generator, verifier=math_verifier
        )
    )
    # Before: four cut-off samples made MC = 0 and so a "first error".
    assert labels.first_error == -1
    assert all(value is None for value in labels.step_values[:-1])
    tree = labels.tree
    truncated = sum(tree.node(node).n_truncated for node in tree.nodes())
    assert 0 < truncated <= 4 * 3  # the rule's batch, asked again at most twice


def random_script(seed: int, n_steps: int, p_right: float):
    """A script whose outcomes depend only on the prompt and sample index."""
    import hashlib

    def script(request):
        digest = hashlib.sha256(f"{seed}|{request.last_message}|{request.sample_index}".encode())
        value = int.from_bytes(digest.digest()[:8], "big")
        right = (value % 1000) / 1000 < p_right
        steps = [f"step {value % 97} {i}" for i in range((value >> 10) % n_steps + 1)]
        steps.append(f"The answer is \\boxed{{{5 if right else 6}}}.")
        return solution(steps)

    return script


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_steps=st.integers(1, 8),
    p_right=st.floats(0.1, 0.9),
    screen_rollouts=st.integers(1, 16),
    num_branches=st.integers(1, 8),
    max_search=st.integers(0, 6),
    max_branches=st.integers(1, 60),
)
def test_budgets_hold_and_tree_stays_valid(
    seed, n_steps, p_right, screen_rollouts, num_branches, max_search, max_branches
):
    search_settings = SearchSettings(
        screen_rollouts=screen_rollouts,
        num_branches=num_branches,
        max_search=max_search,
        max_branches=max_branches,
    )
    result = search(random_script(seed, n_steps, p_right), search_settings, BoxedVerifier())
    result.tree.check_invariants()
    assert result.n_selections <= max_search
    # checked before every estimation: never more than one estimation over
    assert result.n_completions < max(max_branches, screen_rollouts) + num_branches
    for node in result.tree.nodes():
        value = result.tree.mc_value(node)
        assert value is None or 0.0 <= value <= 1.0


def test_same_script_gives_the_same_tree():
    script = random_script(3, 5, 0.5)
    first = search(script, SearchSettings(), BoxedVerifier())
    second = search(script, SearchSettings(), BoxedVerifier())
    assert first.tree == second.tree
    assert first.n_completions == second.n_completions


def test_priority_is_computed_at_selection_time():
    from prmsynth import OmegaPRMRun, ReasoningTree, Rollout
    from prmsynth.search._policies import _Candidate

    tree = ReasoningTree(QUESTION)
    a, b = tree.add_step(tree.root, "a"), tree.add_step(tree.root, "b")
    rollout = Rollout(text="x", steps=("x",), verdict=Verdict(status="incorrect"), n_tokens=10)
    run = OmegaPRMRun(tree=tree, settings=SearchSettings(), generator=None, verifier=None)
    run.pool = [_Candidate(node=a, rollout=rollout), _Candidate(node=b, rollout=rollout)]
    tree.record_rollouts(a, [rollout])  # a: MC 0
    tree.record_rollouts(
        b, [rollout.__class__(text="y", steps=("y",), verdict=Verdict(status="correct"))]
    )  # b: MC 1
    assert run.select().node == b  # higher MC gives higher Q
    # Q + U with the paper's formula
    settings_ = SearchSettings()
    expected = settings_.alpha**1.0 * settings_.beta ** (10 / 512) + 0.125 * 1 / 1
    assert run.priority(run.pool[0], tree.total_visits()) == pytest.approx(expected)


def test_rollout_length_prefers_tokens():
    from prmsynth import Rollout

    verdict = Verdict(status="incorrect")
    assert rollout_length(Rollout(text="a b c", steps=(), verdict=verdict, n_tokens=7)) == 7
    assert rollout_length(Rollout(text="a b c", steps=(), verdict=verdict)) == 3


# -- the other policies, the first-error rule and labelling given solutions ----------------------

from prmsynth import BestOfN, MathShepherd, MonteCarloPolicy, Pipeline  # noqa: E402


def test_math_shepherd_estimates_every_prefix_of_every_solution(math_verifier):
    generator = LLMStepGenerator(llm=ScriptedLLM(planted_script(GOOD, BAD)))
    policy = MathShepherd(settings=SearchSettings(max_branches=1000))
    result = asyncio.run(policy.search(QUESTION, generator=generator, verifier=math_verifier))
    tree = result.tree
    values = {tuple(tree.prefix_steps(n)): tree.mc_value(n) for n in tree.nodes() if n != tree.root}
    assert values[tuple(GOOD[:1])] == 1.0
    assert values[tuple(BAD[:2])] == 0.0  # BAD step 2
    assert values[tuple(BAD[:3])] == 0.0
    assert values[tuple(GOOD)] == 1.0 and values[tuple(BAD)] == 0.0  # exact, terminal
    # two distinct solutions sharing "good step 1": 1 + 2 + 2 non-terminal prefixes
    assert result.n_completions == 16 + 5 * 4


def test_best_of_n_spends_only_the_screening(math_verifier):
    generator = LLMStepGenerator(llm=ScriptedLLM(planted_script(GOOD, BAD)))
    result = asyncio.run(BestOfN().search(QUESTION, generator=generator, verifier=math_verifier))
    tree = result.tree
    assert result.n_completions == 16
    terminals = [n for n in tree.nodes() if tree.node(n).terminal]
    assert sorted(tree.mc_value(n) for n in terminals) == [0.0, 1.0]
    assert all(
        tree.mc_value(n) is None for n in tree.nodes() if n != tree.root and n not in terminals
    )


def weak_script():
    """From a prefix with a WEAK step exactly one completion in four is right (the
    first of every four, however the requests are sized)."""
    weak_samples = 0

    def script(request):
        nonlocal weak_samples
        prompt = request.last_message
        if CONTINUE_MARKER not in prompt:
            return solution(GOOD)
        if "WEAK" in prompt:
            answer = 5 if weak_samples % 4 == 0 else 7
            weak_samples += 1
            return solution([f"The answer is \\boxed{{{answer}}}."])
        return solution(["The answer is \\boxed{5}."])

    return script


WEAK_SOLUTION = ["fine step", "WEAK step", "more", "The answer is \\boxed{5}."]


def label_weak_solution(policy, verifier):
    generator = LLMStepGenerator(llm=ScriptedLLM(weak_script()))
    return asyncio.run(
        policy.label(QUESTION, WEAK_SOLUTION, generator=generator, verifier=verifier)
    )


@pytest.mark.parametrize(
    ("rule", "first_error"),
    [
        (Threshold(threshold=0.0, num_branches=4), -1),  # one completion in four: not zero
        (Threshold(threshold=0.25, num_branches=4), 1),
    ],
)
@pytest.mark.parametrize("policy_class", [OmegaPRM, MathShepherd])
def test_first_error_rule_is_shared_and_configurable(
    policy_class, rule, first_error, math_verifier
):
    policy = policy_class(settings=SearchSettings(), first_error_rule=rule)
    labels = label_weak_solution(policy, math_verifier)
    assert labels.first_error == first_error
    assert labels.step_values[1] == 0.25 or labels.step_values[1] is None


def test_default_rule_samples_until_a_relative_drop_is_clear(math_verifier):
    # 1 in 4 after a prefix that succeeds 4 in 4: with a right final answer four
    # samples are not enough to call it wrong, so the rule asks for more.
    labels = label_weak_solution(OmegaPRM(), math_verifier)
    assert labels.first_error == 1
    assert 4 < labels.n_completions <= RelativeDrop().max_completions


@pytest.mark.parametrize("policy_class", [OmegaPRM, MathShepherd])
def test_label_finds_the_first_wrong_step_of_a_given_solution(policy_class, math_verifier):
    generator = LLMStepGenerator(llm=ScriptedLLM(planted_script(GOOD, BAD)))
    policy = policy_class(settings=SearchSettings(max_branches=1000))
    wrong = asyncio.run(policy.label(QUESTION, BAD, generator=generator, verifier=math_verifier))
    assert wrong.first_error == 1
    assert wrong.final_verdict.status == "incorrect"
    assert len(wrong.step_values) == len(BAD)
    assert wrong.step_values[1] == 0.0 and wrong.step_values[-1] == 0.0
    right = asyncio.run(policy.label(QUESTION, GOOD, generator=generator, verifier=math_verifier))
    assert right.first_error == -1
    assert right.step_values[-1] == 1.0
    if policy_class is MathShepherd:
        assert None not in wrong.step_values
        assert wrong.n_completions == 4 * (len(BAD) - 1)  # the last step's value is exact
    else:
        assert None in right.step_values  # the search skips prefixes it need not know
        assert wrong.n_completions <= RelativeDrop().max_completions


def test_label_prompts_carry_the_given_prefix_verbatim(math_verifier):
    llm = ScriptedLLM(planted_script(GOOD, BAD))
    generator = LLMStepGenerator(llm=llm)
    asyncio.run(MathShepherd().label(QUESTION, BAD, generator=generator, verifier=math_verifier))
    prompts = [messages[-1]["content"] for messages, _ in llm.requests]
    assert any("good step 1\n\nBAD step 2\n\nbad step 3" in prompt for prompt in prompts)
    assert all(QUESTION.text in prompt for prompt in prompts)


def test_a_user_written_policy_plugs_into_the_pipeline():
    class FirstStepsOnly(MonteCarloPolicy):
        """Screens, then estimates the first step of every screening solution."""

        async def expand(self, run):
            for rollout in run.tree.node(run.tree.root).incorrect_rollouts:
                first = run.tree.add_step(run.tree.root, rollout.steps[0])
                await run.estimate(first, grow=False)

    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=ScriptedLLM(planted_script(GOOD, BAD))),
        verifier=BoxedVerifier(),
        policy=FirstStepsOnly(),
    )
    [result] = pipeline.run([QUESTION])
    tree = result.tree
    assert result.status == "kept"
    assert tree.mc_value(node_with_text(tree, "good step 1")) == 1.0
    assert result.n_completions == 16 + 4


@pytest.mark.parametrize("policy_class", [OmegaPRM, MathShepherd, BestOfN])
def test_every_policy_is_deterministic(policy_class):
    script = random_script(11, 6, 0.5)
    generator = LLMStepGenerator(llm=ScriptedLLM(script))
    policy = policy_class(settings=SearchSettings(max_branches=80))
    runs = [
        asyncio.run(policy.search(QUESTION, generator=generator, verifier=BoxedVerifier()))
        for _ in range(2)
    ]
    assert runs[0].tree == runs[1].tree
    runs[0].tree.check_invariants()


def test_the_search_stores_its_first_error_and_every_export_uses_it(math_verifier):
    from prmsynth import ExportSettings, export_records, tree_from_dict, tree_to_dict

    # A WEAK step succeeds 1 time in 4: MC > 0, so a threshold of 0 calls it right,
    # while the default rule, against the clean prefix's 4 in 4, calls it wrong.
    labels = label_weak_solution(OmegaPRM(), math_verifier)
    assert labels.first_error == 1
    tree = tree_from_dict(tree_to_dict(labels.tree))  # stored in trees.jsonl and read back
    chain = [tree.children(tree.root)[0]]
    chain.append(tree.children(chain[0])[0])
    assert [tree.node(node).label for node in chain] == [True, False]
    [trl] = export_records([tree], "trl")
    assert trl["labels"][:2] == [True, False]
    # every path through the WEAK step (the given solution and the rollouts
    # from its prefix) has its first error there
    assert {record["label"] for record in export_records([tree], "processbench")} == {1}
    # thresholds remain an explicit override
    [by_mc] = export_records([tree], "trl", ExportSettings(labels="mc"))
    assert by_mc["labels"][:2] == [True, True]


def test_search_run_binary_search_is_the_classic_threshold_search(math_verifier):
    generator = LLMStepGenerator(llm=ScriptedLLM(planted_script(GOOD, BAD)))
    run = OmegaPRM().start(QUESTION, generator, math_verifier)
    verdict = Verdict(status="incorrect", extracted_answer="7")
    assert asyncio.run(run.binary_search(run.tree.root, BAD, verdict, grow=False)) == 1
    assert run.n_completions <= 4 * 2  # two midpoints at num_branches each
