"""Question evolution (Evolve-Instruct): more and harder questions, each with an earned answer.

[`EvolveInstruct`][prmsynth.EvolveInstruct] grows a seed set the way WizardLM's Evolve-Instruct
does: in several rounds, an LLM rewrites questions with a mutation drawn at
random (in depth: add a constraint, deepen, concretize, increase the
reasoning steps, complicate the input; in breadth: a new question in the same
area).  Then three things the seed script skipped:

* **Elimination.**  A candidate that is empty, too short or too long, leaks
  the template's words, is a refusal, states its own answer, is unchanged or
  only reworded, or duplicates a known question (exactly or nearly) is
  dropped, and the reason is recorded ([`Rejection`][prmsynth.Rejection]).
* **Answers are re-derived, never inherited.**  Changing a question changes
  its answer, so each surviving candidate is solved ``n_answer_samples``
  times; the extracted answers are grouped by equivalence and the majority
  answer is kept only if its share reaches ``agreement_threshold``.  Below
  that the candidate is dropped as ``unsolvable``.
* **Lineage.**  Every evolved question records its parent, root seed,
  mutation, round, prompt version and the vote in ``Question.metadata``.

>>> import asyncio
>>> from prmsynth import Question
>>> from prmsynth.testing import ScriptedLLM
>>> def script(request):
...     if request.messages[0]["role"] == "system":  # a solution for the vote
...         return "Tom has 3 + 4 + 2 = 9 apples. The answer is \\\\boxed{9}."
...     return "Tom has 3 apples, buys 4 more and then finds 2 more. How many apples now?"
>>> evolver = EvolveInstruct(llm=ScriptedLLM(script), settings=EvolutionSettings(rounds=1))
>>> seed = Question(id="q1", text="Tom has 3 apples and buys 4 more. How many now?",
...                 reference_answer="7")
>>> report = asyncio.run(evolver.evolve_with_report([seed]))
>>> [(q.id, q.reference_answer, q.answer_source) for q in report.questions]
[('q1', '7', 'seed'), ('q1.r1.0', '9', 'majority_vote')]
>>> report.questions[1].metadata["answer_agreement"]
1.0
>>> evolver.close()
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from prmsynth._errors import RUN_FATAL
from prmsynth._interfaces import (
    LLM,
    EvolutionReport,
    QuestionEvolver,
    Rejection,
    gather_or_cancel,
)
from prmsynth._values import Completion, Question
from prmsynth.llm._cache import llm_identity
from prmsynth.search._generation import DEFAULT_SYSTEM_PROMPT, derive_seed
from prmsynth.verify._math import (
    MAX_ANSWER_LENGTH,
    MathEquivalence,
    extract_answer,
    normalize_answer,
)

__all__ = [
    "DEFAULT_EQUALITY_PROMPT",
    "DEFAULT_MUTATION_WEIGHTS",
    "DEFAULT_TEMPLATES",
    "ELIMINATION_REASONS",
    "PROMPT_VERSION",
    "REJECTION_REASONS",
    "EvolutionReport",
    "EvolutionSettings",
    "EvolveInstruct",
    "Rejection",
    "format_stats",
    "token_jaccard",
]

#: Recorded on every evolved question; change it when you change a prompt.
PROMPT_VERSION = "prmsynth-evolve-v1"

_OUTPUT_RULES = (
    "The new problem must be self-contained, make sense in the real world, and have exactly "
    "one correct final answer. Write only the new problem: no heading, no answer, no "
    "solution, no comments."
)

#: The mutation prompts, by name.  Each is a user message in which
#: ``{question}`` (the only placeholder) is replaced by the parent question.
DEFAULT_TEMPLATES: Mapping[str, str] = types.MappingProxyType(
    {
        "add_constraint": (
            "You write new math problems from existing ones.\n"
            "Rewrite the problem below into a harder one by adding exactly one new constraint "
            "or requirement that the solver has to use, so that the answer changes. Keep the "
            "other facts of the problem. Add at most 40 words. " + _OUTPUT_RULES + "\n\n"
            "#Given Problem#:\n{question}\n\n#New Problem#:\n"
        ),
        "deepen": (
            "You write new math problems from existing ones.\n"
            "Rewrite the problem below so that it goes deeper: ask for something that needs "
            "more understanding of the situation or of the mathematics to find, such as a "
            "rate, a comparison, a remainder, or the general case behind the single instance. "
            "Add at most 40 words. " + _OUTPUT_RULES + "\n\n"
            "#Given Problem#:\n{question}\n\n#New Problem#:\n"
        ),
        "concretize": (
            "You write new math problems from existing ones.\n"
            "Rewrite the problem below by replacing a general or vague part with a more "
            "specific, concrete one (exact quantities, named items, units, a particular "
            "situation) that the solver has to take into account, so that the answer changes. "
            "Add at most 40 words. " + _OUTPUT_RULES + "\n\n"
            "#Given Problem#:\n{question}\n\n#New Problem#:\n"
        ),
        "increase_reasoning": (
            "You write new math problems from existing ones.\n"
            "Rewrite the problem below so that solving it takes more steps of reasoning: the "
            "quantity asked for should follow from the original result through one or two "
            "further calculations. Add at most 40 words. " + _OUTPUT_RULES + "\n\n"
            "#Given Problem#:\n{question}\n\n#New Problem#:\n"
        ),
        "complicate_input": (
            "You write new math problems from existing ones.\n"
            "Rewrite the problem below so that part of its data comes in a more complex form "
            "that the solver has to work through: a short list or table of items and "
            "quantities, a percentage or fraction instead of a plain number, a unit to "
            "convert, or a formula to apply. Add at most 50 words. " + _OUTPUT_RULES + "\n\n"
            "#Given Problem#:\n{question}\n\n#New Problem#:\n"
        ),
        "in_breadth": (
            "You write new math problems from existing ones.\n"
            "Take the problem below as inspiration and write a brand-new problem in the same "
            "area of mathematics, about a less common topic or situation. It should be at "
            "least as hard as the given one and about as long. " + _OUTPUT_RULES + "\n\n"
            "#Given Problem#:\n{question}\n\n#New Problem#:\n"
        ),
    }
)

#: In-breadth mutations are rarer than in-depth ones, as in WizardLM.
DEFAULT_MUTATION_WEIGHTS: Mapping[str, float] = types.MappingProxyType(
    {
        "add_constraint": 1.0,
        "deepen": 1.0,
        "concretize": 1.0,
        "increase_reasoning": 1.0,
        "complicate_input": 1.0,
        "in_breadth": 0.5,
    }
)

#: The optional LLM equality check (``{first}`` is the parent, ``{second}`` the candidate).
DEFAULT_EQUALITY_PROMPT = (
    "Here are two math problems.\n\n#First Problem#:\n{first}\n\n#Second Problem#:\n{second}\n\n"
    "Do they ask for the same thing, with the same information, constraints and difficulty? "
    "Reply with one word: Equal or Different."
)

#: Why a candidate is eliminated before the answer vote, in the order the rules run.
ELIMINATION_REASONS = (
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
)
#: Every reason a [`Rejection`][prmsynth.Rejection] can carry: the elimination rules, a vote
#: below the threshold (``unsolvable``), and a failed LLM call (``error``).
REJECTION_REASONS = (*ELIMINATION_REASONS, "unsolvable", "error")

# Words of the WizardLM templates that must never show up in a question.
_WIZARDLM_LEAKS = (
    "#rewritten prompt#",
    "#given prompt#",
    "#created prompt#",
    "rewritten prompt",
    "given prompt",
    "created prompt",
)
_HEADER = re.compile(r"#[A-Za-z][A-Za-z ]{0,40}#")
_REFUSAL = re.compile(
    r"\b(?:i'?m sorry|i am sorry|sorry, but|i apologi[sz]e|as an ai\b|as a language model"
    r"|ai language model|i (?:cannot|can't|can ?not|won't|am unable to|'m unable to)\b"
    r"|i(?:'m| am) not able to)",
    re.IGNORECASE,
)
# A candidate that states an answer is a solution, or gives its answer away.
_STATED_ANSWER = re.compile(
    r"\\(?:boxed|fbox)\b|\bthe\s+(?:final\s+)?answer\s+is\b|\bfinal\s+answer\s*:|####",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"\d+(?:[.,/]\d+)*|[^\W\d_]+")
_ALPHANUMERIC = re.compile(r"[^\W_]")
_QUOTES = (('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"))
_STOPWORDS = frozenset(
    "a an the of to in on at for by with from and or but so if then than that this these those "
    "is are was were be been being it its it's he she they them his her their we you your i "
    "what which who whom how many much does do did has have had will would can could should "
    "there here as into each all any some more most many now".split()
)
# Offsets into derive_seed: each kind of request on a candidate gets its own seed.
_MUTATION_OFFSET, _EQUALITY_OFFSET, _ANSWER_OFFSET = 0, 1, 2

T = TypeVar("T")


def _text_key(text: str) -> str:
    """A normalized form for exact-duplicate checks: lowercase words and numbers only."""
    return " ".join(_tokens(text))


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def token_jaccard(first: str, second: str) -> float:
    """Jaccard similarity of the two texts' sets of lowercase words and numbers.

    >>> token_jaccard("What is 6 times 7?", "what is 6 times 7")
    1.0
    >>> round(token_jaccard("What is 6 times 7?", "What is 6 times 8?"), 2)
    0.67
    """
    a, b = set(_tokens(first)), set(_tokens(second))
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _check_range(low: float, high: float, *, low_open: bool = False) -> Callable[..., None]:
    """attrs' validators of ``low <= value <= high`` (``low < value`` when ``low_open``)."""
    above = attrs.validators.gt(low) if low_open else attrs.validators.ge(low)
    return attrs.validators.and_(above, attrs.validators.le(high))


def _check_weights(instance: object, attribute: attrs.Attribute, value: Mapping) -> None:
    for name, weight in value.items():
        if not weight >= 0:
            raise ValueError(f"mutation weight of {name!r} must be >= 0, got {weight!r}")


@attrs.frozen(kw_only=True)
class EvolutionSettings:
    """How many questions to evolve, how to eliminate them and how to vote on their answers.

    ``rounds`` generations are run; in each, ``per_seed`` evolutions are
    attempted for every seed, each from a parent drawn at random from that
    seed's lineage (the seed and its survivors of earlier rounds).
    ``mutation_weights`` (mutation name -> weight; names not listed weigh 1)
    drive the random choice of mutation.  A candidate's answer is the
    majority of ``n_answer_samples`` solutions, kept only if the majority's
    share of *all* samples (unparseable ones included) is at least
    ``agreement_threshold``.  ``near_duplicate_threshold`` is the
    `token_jaccard` similarity from which a candidate counts as a near
    duplicate of a known question.  ``seed`` drives every random choice and
    the LLM seeds; ``keep_seeds`` makes [`EvolveInstruct.evolve`][prmsynth.EvolveInstruct.evolve]
    return
    the seeds before the evolved questions.

    >>> settings = EvolutionSettings(rounds=2)
    >>> (settings.per_seed, settings.n_answer_samples, settings.agreement_threshold)
    (1, 8, 0.5)
    >>> EvolutionSettings(agreement_threshold=0)
    Traceback (most recent call last):
    ...
    ValueError: 'agreement_threshold' must be > 0: 0
    """

    rounds: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    per_seed: int = attrs.field(
        default=1,
        validator=attrs.validators.ge(1),
        metadata={"help": "evolutions attempted per seed and round"},
    )
    mutation_weights: Mapping[str, float] = attrs.field(
        factory=lambda: dict(DEFAULT_MUTATION_WEIGHTS), validator=_check_weights
    )
    n_answer_samples: int = attrs.field(
        default=8,
        validator=attrs.validators.ge(1),
        metadata={"help": "solutions sampled per evolved question to vote on its answer"},
    )
    agreement_threshold: float = attrs.field(
        default=0.5,
        validator=_check_range(0, 1, low_open=True),
        metadata={
            "help": "keep an evolved question only if its majority answer has at least this share "
            "of the samples, unparseable ones included"
        },
    )
    min_words: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    max_words: int = attrs.field(default=200, validator=attrs.validators.ge(1))
    near_duplicate_threshold: float = attrs.field(
        default=0.9, validator=_check_range(0, 1, low_open=True)
    )
    mutation_temperature: float = attrs.field(default=0.7, validator=_check_range(0, 2))
    answer_temperature: float = attrs.field(default=0.7, validator=_check_range(0, 2))
    top_p: float = attrs.field(default=0.95, validator=_check_range(0, 1, low_open=True))
    mutation_max_tokens: int = attrs.field(
        default=384,
        validator=attrs.validators.ge(1),
        metadata={"help": "token limit of a rewritten question"},
    )
    answer_max_tokens: int = attrs.field(
        default=512,
        validator=attrs.validators.ge(1),
        metadata={"help": "token limit of a solution for the vote"},
    )
    equivalence_timeout: float = attrs.field(
        default=2.0, validator=_check_range(0, 600, low_open=True)
    )
    concurrency: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    seed: int = 0
    keep_seeds: bool = True
    llm_equality_check: bool = False

    def __attrs_post_init__(self) -> None:
        if self.max_words < self.min_words:
            raise ValueError(
                f"max_words ({self.max_words}) must be >= min_words ({self.min_words})"
            )

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["mutation_weights"] = dict(self.mutation_weights)
        return data


def format_stats(stats: Mapping[str, Any]) -> str:
    """One line with the counts of an [`EvolutionReport`][prmsynth.EvolutionReport].

    >>> print(format_stats({"seeds": 3, "rounds": 1, "attempted": 3, "evolved": 2,
    ...     "eliminated": 1, "eliminated_by_reason": {"too_short": 1, "empty": 0},
    ...     "answered": 1, "unsolvable": 1, "errors": 0, "questions": 4}))
    3 seeds, 1 round(s): 3 attempted, 2 evolved, 1 eliminated (too_short 1), 1 answered, \
1 unsolvable, 0 errors -> 4 questions
    """
    reasons = ", ".join(
        f"{reason} {count}" for reason, count in stats["eliminated_by_reason"].items() if count
    )
    return (
        f"{stats['seeds']} seeds, {stats['rounds']} round(s): {stats['attempted']} attempted, "
        f"{stats['evolved']} evolved, {stats['eliminated']} eliminated"
        + (f" ({reasons})" if reasons else "")
        + f", {stats['answered']} answered, {stats['unsolvable']} unsolvable, "
        f"{stats['errors']} errors -> {stats['questions']} questions"
    )


@attrs.frozen(kw_only=True)
class _Plan:
    """One attempted evolution: the parent, the mutation and the id it will get."""

    candidate_id: str
    parent: Question
    root_id: str
    mutation: str
    round: int


@attrs.define
class _Group:
    representative: str
    key: str
    count: int = 1


@attrs.frozen(kw_only=True)
class _Vote:
    answer: str | None
    votes: dict[str, int]
    agreement: float
    detail: str


@attrs.define
class _Known:
    """The questions a candidate must not duplicate: exact keys and token sets."""

    keys: dict[str, str] = attrs.Factory(dict)
    token_sets: list[tuple[str, frozenset[str]]] = attrs.Factory(list)

    def add(self, question_id: str, text: str) -> None:
        self.keys.setdefault(_text_key(text), question_id)
        self.token_sets.append((question_id, frozenset(_tokens(text))))

    def nearest(self, text: str, threshold: float, *, skip: str) -> tuple[str, float] | None:
        """The first known question but ``skip`` at least ``threshold``-similar to ``text``."""
        tokens = frozenset(_tokens(text))
        size = len(tokens)
        for question_id, known in self.token_sets:
            if question_id == skip:
                continue
            # Jaccard <= min/max of the sizes: skip what cannot reach the threshold.
            small, large = sorted((size, len(known)))
            if large == 0 or small < threshold * large:
                continue
            similarity = len(tokens & known) / len(tokens | known)
            if similarity >= threshold:
                return question_id, similarity
        return None


@attrs.define
class _Counters:
    attempted: int = 0
    evolved: int = 0
    answered: int = 0
    unsolvable: int = 0
    errors: int = 0
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    eliminated: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(ELIMINATION_REASONS, 0))
    by_mutation: dict[str, dict[str, int]] = attrs.Factory(dict)


@attrs.frozen(kw_only=True, eq=False)
class EvolveInstruct(QuestionEvolver):
    """Evolve-Instruct with elimination and majority-vote answers.

    ``templates`` maps a mutation name to its prompt (a user message whose
    ``{question}`` is replaced by the parent question; default
    `DEFAULT_TEMPLATES`, replace or extend it freely).
    ``answer_prompt`` is the system prompt used to solve candidates for the
    vote (it should ask for ``\\boxed{}``); ``extractor`` reads an answer out
    of a solution and ``equivalence`` (``(answer, representative, *,
    timeout) -> bool | None``, default a `MathEquivalence`
    whose worker `close` ends) groups equal answers.
    ``prompt_version`` is recorded on every evolved question; when the
    templates or prompts differ from the defaults but the version was left
    at `PROMPT_VERSION`, a hash of the prompts is appended
    (``prmsynth-evolve-v1+custom.1a2b3c4d``) so that lineage stays honest.
    ``progress``, when given, receives one line per round.
    """

    llm: LLM
    settings: EvolutionSettings = attrs.field(factory=EvolutionSettings)
    templates: Mapping[str, str] = attrs.field(factory=lambda: dict(DEFAULT_TEMPLATES))
    answer_prompt: str = DEFAULT_SYSTEM_PROMPT
    equality_prompt: str = DEFAULT_EQUALITY_PROMPT
    equivalence: Callable[..., bool | None] = attrs.field(factory=MathEquivalence)
    extractor: Callable[[str], str | None] = extract_answer
    prompt_version: str = PROMPT_VERSION
    progress: Callable[[str], None] | None = None

    def identity(self) -> dict[str, Any]:
        """What decides the evolved questions, as a run records it."""
        return {
            "llm": llm_identity(self.llm),
            "settings": self.settings.to_dict(),
            "prompt_version": self.prompt_version,
        }

    def __attrs_post_init__(self) -> None:
        if not self.templates:
            raise ValueError("templates must name at least one mutation")
        for name, template in self.templates.items():
            if "{question}" not in template:
                raise ValueError(f"template {name!r} has no {{question}} placeholder")
        weights = self.settings.mutation_weights
        unknown = sorted(set(weights) - set(self.templates))
        # The default weights name the default mutations; with other templates
        # they are simply not used.  Weights the user chose must match.
        if unknown and dict(weights) != dict(DEFAULT_MUTATION_WEIGHTS):
            raise ValueError(f"mutation_weights name mutations without a template: {unknown}")
        if not any(weight > 0 for weight in self._weights()):
            raise ValueError("at least one mutation must have a weight > 0")

    # -- configuration ---------------------------------------------------

    def _weights(self) -> list[float]:
        weights = self.settings.mutation_weights
        return [float(weights.get(name, 1.0)) for name in self.templates]

    @property
    def effective_prompt_version(self) -> str:
        """The version recorded in lineage: ``prompt_version``, marked when prompts were changed."""
        default = (
            dict(self.templates) == dict(DEFAULT_TEMPLATES)
            and self.answer_prompt == DEFAULT_SYSTEM_PROMPT
            and self.equality_prompt == DEFAULT_EQUALITY_PROMPT
        )
        if default or self.prompt_version != PROMPT_VERSION:
            return self.prompt_version
        parts = [f"{name}\x01{template}" for name, template in sorted(self.templates.items())]
        text = "\x00".join([*parts, self.answer_prompt, self.equality_prompt])
        return f"{self.prompt_version}+custom.{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    def _leak_markers(self) -> list[str]:
        markers = set(_WIZARDLM_LEAKS)
        for template in self.templates.values():
            for header in _HEADER.findall(template):
                markers.add(header.lower())
                words = header.strip("#").strip().lower()
                if len(words.split()) >= 2:  # "#Problem#" alone would ban the word "problem"
                    markers.add(words)
        return sorted(markers)

    def close(self) -> None:
        """End the equivalence worker process; the evolver stays usable."""
        close = getattr(self.equivalence, "close", None)
        if callable(close):
            close()

    @property
    def last_report(self) -> EvolutionReport:
        """Gone: an evolver keeps nothing between calls; each call of
        `evolve_with_report` returns its own report."""
        raise AttributeError(
            "EvolveInstruct.last_report is gone: the evolver keeps nothing between calls; "
            "use the report evolve_with_report(questions) returns"
        )

    # -- the stage -------------------------------------------------------

    async def evolve(self, questions: Sequence[Question]) -> list[Question]:
        """The seeds (when ``keep_seeds``) and the evolved questions that earned an answer."""
        return (await self.evolve_with_report(questions)).questions

    async def evolve_with_report(
        self,
        questions: Sequence[Question],
        *,
        on_question: Callable[[Question], object] | None = None,
    ) -> EvolutionReport:
        """Evolve ``questions`` and return the survivors, the rejects and the counts.

        ``on_question`` is called with each question as soon as it is ready (the
        seeds first when ``keep_seeds``, then each evolved question when its
        answer vote is won), so a search can start on it while evolution goes
        on.  The report holds the same questions, in a deterministic order.
        """
        run = _Run.start(self, questions)
        if on_question is not None and self.settings.keep_seeds:
            for seed in run.seeds:
                on_question(seed)

        async def vote(plan: _Plan, text: str) -> _Vote | BaseException:
            outcome = await self._vote(plan.candidate_id, text, run.counters)
            if (
                on_question is not None
                and isinstance(outcome, _Vote)
                and outcome.answer is not None
            ):
                on_question(run.question_of(plan, text, outcome))
            return outcome

        for round_number in range(1, self.settings.rounds + 1):
            plans = run.plan_round(round_number)  # every random choice before any LLM call
            outcomes = await run.gather(self._mutate(plan, run.counters) for plan in plans)
            passed = run.eliminate(plans, outcomes)
            if self.settings.llm_equality_check and passed:
                verdicts = await run.gather(
                    self._llm_equal(plan, text, run.counters) for plan, text in passed
                )
                passed = run.drop_equal(passed, verdicts)
            run.counters.evolved += len(passed)
            votes = await run.gather(vote(plan, text) for plan, text in passed)
            answered = run.accept(passed, votes)
            if self.progress is not None:
                self.progress(
                    f"round {round_number}/{self.settings.rounds}: {len(plans)} attempted, "
                    f"{len(passed)} passed elimination, {answered} answered"
                )
        return run.report()

    # -- steps -----------------------------------------------------------

    async def _complete(
        self,
        counters: _Counters,
        messages: list[dict[str, str]],
        *,
        n: int,
        temperature: float,
        max_tokens: int,
        seed: int,
    ) -> tuple[Completion, ...]:
        response = await self.llm.complete(
            messages,
            n=n,
            temperature=temperature,
            top_p=self.settings.top_p,
            max_tokens=max_tokens,
            seed=seed,
        )
        counters.completions += len(response.completions)
        counters.prompt_tokens += response.prompt_tokens
        counters.completion_tokens += response.completion_tokens
        return response.completions

    async def _mutate(self, plan: _Plan, counters: _Counters) -> Completion | BaseException:
        template = self.templates[plan.mutation]
        content = template.replace("{question}", plan.parent.text)
        try:
            completions = await self._complete(
                counters,
                [{"role": "user", "content": content}],
                n=1,
                temperature=self.settings.mutation_temperature,
                max_tokens=self.settings.mutation_max_tokens,
                seed=derive_seed(self.settings.seed, plan.candidate_id, _MUTATION_OFFSET),
            )
        except RUN_FATAL:  # a backend gone, a disk full
            raise  # the model is gone: every later call would fail too
        except Exception as error:  # one failed call must not end the run
            return error
        if not completions:
            return RuntimeError("the LLM returned no completion")
        return completions[0]

    def _eliminate(
        self, plan: _Plan, completion: Completion, leak_markers: Sequence[str], known: _Known
    ) -> tuple[str, str | None, str]:
        """The cleaned candidate text and the first elimination rule it breaks (or None)."""
        settings = self.settings
        text = _clean_candidate(completion.text, self.templates[plan.mutation])
        if not _ALPHANUMERIC.search(text):
            return text, "empty", "no letters or digits"
        refusal = _REFUSAL.search(text.replace("\u2019", "'"))
        if refusal:
            return text, "refusal", f"contains {refusal.group(0)!r}"
        lowered = " ".join(text.lower().split())
        for marker in leak_markers:
            if marker in lowered:
                return text, "template_leak", f"contains {marker!r}"
        stated = _STATED_ANSWER.search(text)
        if stated:
            return text, "has_answer", f"states an answer ({stated.group(0)!r})"
        n_words = len(text.split())
        if n_words < settings.min_words:
            return text, "too_short", f"{n_words} words < min_words {settings.min_words}"
        if completion.finish_reason == "length":
            return text, "too_long", "cut off at the token limit"
        if n_words > settings.max_words:
            return text, "too_long", f"{n_words} words > max_words {settings.max_words}"
        parent = plan.parent.text
        if _text_key(text) == _text_key(parent):
            return text, "unchanged", f"same as {plan.parent.id}"
        new_words = set(_tokens(text)) - set(_tokens(parent)) - _STOPWORDS
        if not new_words:
            return text, "unchanged", f"only rewords {plan.parent.id}: no new words or numbers"
        # One new word (not a number) in an otherwise equal text: a synonym swap.
        similarity = token_jaccard(text, parent)
        swapped = next(iter(new_words))
        if (
            len(new_words) == 1
            and not swapped[0].isdigit()
            and similarity >= settings.near_duplicate_threshold
        ):
            detail = f"only rewords {plan.parent.id}: one new word {swapped!r}"
            return text, "unchanged", f"{detail}, similarity {similarity:.2f}"
        duplicate = known.keys.get(_text_key(text))
        if duplicate is not None:
            return text, "duplicate", f"same text as {duplicate}"
        # The parent is judged by the rules above: a short constraint added to a
        # long question leaves it similar to its parent, yet it is a new question.
        near = known.nearest(text, settings.near_duplicate_threshold, skip=plan.parent.id)
        if near is not None:
            return text, "near_duplicate", f"similarity {near[1]:.2f} to {near[0]}"
        return text, None, ""

    async def _llm_equal(self, plan: _Plan, text: str, counters: _Counters) -> bool | BaseException:
        """Whether the LLM judges the candidate equal to its parent (inconclusive: False)."""
        content = self.equality_prompt.replace("{first}", plan.parent.text).replace(
            "{second}", text
        )
        try:
            completions = await self._complete(
                counters,
                [{"role": "user", "content": content}],
                n=1,
                temperature=0.0,
                max_tokens=16,
                seed=derive_seed(self.settings.seed, plan.candidate_id, _EQUALITY_OFFSET),
            )
        except RUN_FATAL:  # a backend gone, a disk full
            raise  # the model is gone: every later call would fail too
        except Exception as error:  # one failed call must not end the run
            return error
        reply = completions[0].text.lower() if completions else ""
        if "different" in reply or "not equal" in reply or "unequal" in reply:
            return False
        return "equal" in reply

    async def _vote(
        self, question_id: str, text: str, counters: _Counters
    ) -> _Vote | BaseException:
        """Solve the candidate ``n_answer_samples`` times and take the majority answer."""
        settings = self.settings
        n = settings.n_answer_samples
        try:
            completions = await self._complete(
                counters,
                [
                    {"role": "system", "content": self.answer_prompt},
                    {"role": "user", "content": text},
                ],
                n=n,
                temperature=settings.answer_temperature,
                max_tokens=settings.answer_max_tokens,
                seed=derive_seed(settings.seed, question_id, _ANSWER_OFFSET),
            )
        except RUN_FATAL:  # a backend gone, a disk full
            raise  # the model is gone: every later call would fail too
        except Exception as error:  # one failed call must not end the run
            return error
        answers = [self._read_answer(completion) for completion in completions[:n]]
        groups = await asyncio.to_thread(self._group, answers)
        return _decide_vote(groups, n, settings.agreement_threshold)

    def _read_answer(self, completion: Completion) -> str | None:
        if completion.finish_reason == "length":
            return None  # a cut-off solution has no final answer
        try:
            answer = self.extractor(completion.text)
        except Exception:  # model text never ends the run
            return None
        if answer is None:
            return None
        answer = str(answer).strip()
        if not answer or len(answer) > MAX_ANSWER_LENGTH:
            return None
        return answer

    def _group(self, answers: Sequence[str | None]) -> list[_Group]:
        """Group equivalent answers; each group is compared through its first spelling."""
        groups: list[_Group] = []
        for answer in answers:
            if answer is None:
                continue
            try:
                key = normalize_answer(answer)
            except Exception:
                key = answer
            if not key:
                continue
            for group in groups:
                if group.key == key or self._equivalent(answer, group.representative):
                    group.count += 1
                    break
            else:
                groups.append(_Group(representative=answer, key=key))
        return groups

    def _equivalent(self, answer: str, representative: str) -> bool:
        try:
            return (
                self.equivalence(answer, representative, timeout=self.settings.equivalence_timeout)
                is True
            )
        except Exception:  # a check that cannot complete: not the same answer
            return False


@attrs.define(kw_only=True)
class _Run:
    """The state of one
    [`EvolveInstruct.evolve_with_report`][prmsynth.EvolveInstruct.evolve_with_report] call."""

    evolver: EvolveInstruct
    seeds: list[Question]
    rng: random.Random
    semaphore: asyncio.Semaphore
    leak_markers: list[str]
    version: str
    counters: _Counters = attrs.Factory(_Counters)
    known: _Known = attrs.Factory(_Known)
    lineage: dict[str, list[Question]] = attrs.Factory(dict)
    used_ids: set[str] = attrs.Factory(set)
    survivors: list[Question] = attrs.Factory(list)
    rejects: list[Rejection] = attrs.Factory(list)

    @classmethod
    def start(cls, evolver: EvolveInstruct, questions: Sequence[Question]) -> _Run:
        seeds = list(questions)
        run = cls(
            evolver=evolver,
            seeds=seeds,
            rng=random.Random(evolver.settings.seed),
            semaphore=asyncio.Semaphore(evolver.settings.concurrency),
            leak_markers=evolver._leak_markers(),
            version=evolver.effective_prompt_version,
        )
        for seed in seeds:
            if seed.id in run.used_ids:
                raise ValueError(f"duplicate question id {seed.id!r}")
            run.used_ids.add(seed.id)
            run.known.add(seed.id, seed.text)
            run.lineage[seed.id] = [seed]
        return run

    async def gather(self, awaitables: Iterable[Awaitable[T]]) -> list[T]:
        """Await all, at most ``concurrency`` at once, results in order."""

        async def bounded(awaitable: Awaitable[T]) -> T:
            try:
                async with self.semaphore:
                    return await awaitable
            finally:
                # Cancelled before its turn: closed, so it is not reported as never awaited.
                close = getattr(awaitable, "close", None)
                if close is not None:
                    close()

        # The first run-fatal error (a backend gone, a disk full) cancels the rest.
        return await gather_or_cancel(bounded(awaitable) for awaitable in awaitables)

    def plan_round(self, round_number: int) -> list[_Plan]:
        """Draw ``per_seed`` parents and mutations for every seed, in seed order."""
        names = list(self.evolver.templates)
        weights = self.evolver._weights()
        plans = []
        for seed in self.seeds:
            pool = list(self.lineage[seed.id])  # the seed and earlier rounds' survivors
            for attempt in range(self.evolver.settings.per_seed):
                parent = self.rng.choice(pool)
                mutation = self.rng.choices(names, weights=weights)[0]
                base = candidate_id = f"{parent.id}.r{round_number}.{attempt}"
                suffix = 1
                while candidate_id in self.used_ids:  # a seed file may hold such an id
                    suffix += 1
                    candidate_id = f"{base}-{suffix}"
                self.used_ids.add(candidate_id)
                plans.append(
                    _Plan(
                        candidate_id=candidate_id,
                        parent=parent,
                        root_id=seed.id,
                        mutation=mutation,
                        round=round_number,
                    )
                )
                tally = self.counters.by_mutation.setdefault(
                    mutation, {"attempted": 0, "answered": 0}
                )
                tally["attempted"] += 1
        self.counters.attempted += len(plans)
        return plans

    def reject(self, plan: _Plan, text: str, reason: str, detail: str) -> None:
        self.rejects.append(
            Rejection(
                candidate_text=text,
                parent_id=plan.parent.id,
                mutation=plan.mutation,
                round=plan.round,
                reason=reason,
                detail=detail,
                candidate_id=plan.candidate_id,
                root_id=plan.root_id,
            )
        )
        if reason in self.counters.eliminated:
            self.counters.eliminated[reason] += 1
        elif reason == "unsolvable":
            self.counters.unsolvable += 1
        else:
            self.counters.errors += 1

    def eliminate(
        self, plans: Sequence[_Plan], outcomes: Sequence[Completion | BaseException]
    ) -> list[tuple[_Plan, str]]:
        """Apply the text rules in plan order; a passing candidate joins the known questions."""
        passed = []
        for plan, outcome in zip(plans, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.reject(plan, "", "error", _describe(outcome))
                continue
            text, reason, detail = self.evolver._eliminate(
                plan, outcome, self.leak_markers, self.known
            )
            if reason is not None:
                self.reject(plan, text, reason, detail)
                continue
            self.known.add(plan.candidate_id, text)
            passed.append((plan, text))
        return passed

    def drop_equal(
        self, passed: Sequence[tuple[_Plan, str]], verdicts: Sequence[bool | BaseException]
    ) -> list[tuple[_Plan, str]]:
        kept = []
        for (plan, text), verdict in zip(passed, verdicts, strict=True):
            if isinstance(verdict, BaseException):
                self.reject(plan, text, "error", _describe(verdict))
            elif verdict:
                self.reject(plan, text, "llm_equal", f"the LLM judged it equal to {plan.parent.id}")
            else:
                kept.append((plan, text))
        return kept

    def accept(
        self, passed: Sequence[tuple[_Plan, str]], votes: Sequence[_Vote | BaseException]
    ) -> int:
        """Turn candidates with an agreed answer into questions; returns how many."""
        answered = 0
        for (plan, text), vote in zip(passed, votes, strict=True):
            if isinstance(vote, BaseException):
                self.reject(plan, text, "error", _describe(vote))
                continue
            if vote.answer is None:
                self.reject(plan, text, "unsolvable", vote.detail)
                continue
            question = self.question_of(plan, text, vote)
            self.survivors.append(question)
            self.lineage[plan.root_id].append(question)
            self.counters.answered += 1
            self.counters.by_mutation[plan.mutation]["answered"] += 1
            answered += 1
        return answered

    def question_of(self, plan: _Plan, text: str, vote: _Vote) -> Question:
        """The question a candidate becomes with the answer its vote earned."""
        return Question(
            id=plan.candidate_id,
            text=text,
            reference_answer=vote.answer,  # never the parent's answer
            source="evolved",
            answer_source="majority_vote",
            metadata={
                "parent_id": plan.parent.id,
                "root_id": plan.root_id,
                "mutation": plan.mutation,
                "round": plan.round,
                "prompt_version": self.version,
                "answer_votes": vote.votes,
                "answer_agreement": vote.agreement,
                "n_answer_samples": self.evolver.settings.n_answer_samples,
            },
        )

    def report(self) -> EvolutionReport:
        settings = self.evolver.settings
        counters = self.counters
        questions = [*self.seeds, *self.survivors] if settings.keep_seeds else self.survivors
        stats = {
            "seeds": len(self.seeds),
            "rounds": settings.rounds,
            "attempted": counters.attempted,
            "evolved": counters.evolved,
            "eliminated": sum(counters.eliminated.values()),
            "eliminated_by_reason": dict(counters.eliminated),
            "answered": counters.answered,
            "unsolvable": counters.unsolvable,
            "errors": counters.errors,
            "questions": len(questions),
            "by_mutation": counters.by_mutation,
            "completions": counters.completions,
            "prompt_tokens": counters.prompt_tokens,
            "completion_tokens": counters.completion_tokens,
            "prompt_version": self.version,
        }
        return EvolutionReport(questions=list(questions), rejects=list(self.rejects), stats=stats)


def _decide_vote(groups: Sequence[_Group], n_samples: int, threshold: float) -> _Vote:
    """The majority answer if its share of ``n_samples`` reaches ``threshold``; else None."""
    ranked = sorted(groups, key=lambda group: -group.count)  # stable: first seen wins display
    votes = {group.representative: group.count for group in ranked}
    if not ranked:
        return _Vote(
            answer=None,
            votes={},
            agreement=0.0,
            detail=f"no answer could be read from the {n_samples} solutions",
        )
    top = ranked[0]
    agreement = top.count / n_samples
    leaders = [group.representative for group in ranked if group.count == top.count]
    if len(leaders) > 1:
        return _Vote(
            answer=None,
            votes=votes,
            agreement=agreement,
            detail=f"tie between {leaders} with {top.count}/{n_samples} votes each; votes {votes}",
        )
    if top.count < threshold * n_samples - 1e-9:
        return _Vote(
            answer=None,
            votes=votes,
            agreement=agreement,
            detail=(
                f"the most common answer {top.representative!r} has {top.count}/{n_samples} "
                f"votes (agreement {agreement:.2f} < threshold {threshold}); votes {votes}"
            ),
        )
    return _Vote(answer=top.representative, votes=votes, agreement=agreement, detail="")


def _clean_candidate(text: str, template: str) -> str:
    """Strip whitespace, the template's own output header when it opens the reply, and quotes."""
    text = text.strip()
    headers = _HEADER.findall(template)
    if headers:
        opening = re.match(r"\s*" + re.escape(headers[-1]) + r"\s*:?\s*", text, re.IGNORECASE)
        if opening:
            text = text[opening.end() :].strip()
    for left, right in _QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            inner = text[len(left) : -len(right)]
            if left not in inner and right not in inner:
                text = inner.strip()
            break
    return text


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
