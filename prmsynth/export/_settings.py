"""The options of an export (`ExportSettings`), all written into its manifest."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from prmsynth.search._generation import DEFAULT_SYSTEM_PROMPT

__all__ = ["ExportSettings", "SplitName"]


SplitName = Literal["train", "validation"]
"""The two sides of a train/validation split (see `question_split`)."""


# A fraction in [0, 1).
_check_fraction = attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.lt(1.0))


def _default_system_prompt() -> str:
    return DEFAULT_SYSTEM_PROMPT


@attrs.frozen(kw_only=True)
class ExportSettings:
    """Options of an export; all of them are written into the manifest.

    ``labels``: ``"search"`` (default) keeps the first-error rule's judgement
    of every step the run judged and uses the thresholds for the others;
    ``"mc"`` labels every step by the thresholds alone.
    ``positive_threshold``: a step whose MC value is above it is positive
    (``True`` / ``+`` / rating 1); the default 0.0 means "some completion from
    this prefix reached the answer" (Math-Shepherd's hard label).
    ``negative_threshold``: for the 3-way ``prm800k`` rating, a negative step
    whose value is at most this is rated -1 (and so is every step after it),
    other negative steps 0; it must not exceed ``positive_threshold``.
    ``balance``: ``"none"``, or ``"downsample"`` the majority class (solutions
    with an error against solutions without) at random with ``balance_seed``,
    in each output file; labelled formats only.  ``deduplicate``: write
    identical records once.  ``validation_fraction``: the share of questions
    (by a stable hash of the question id and ``split_seed``) whose records go
    to the validation file; no question is on both sides.  ``system_prompt``:
    the system message of the chat formats (default: the generator's).
    ``consensus``: keep only the solutions where a critic's first error (see
    [`StepCritic`][prmsynth.StepCritic], stored by a run with a critic)
    agrees with the labels, on the steps exported; solutions no critic read
    are left out too.  Labelled formats only.  ``generator``: the model that
    wrote the solutions, as ProcessBench's ``generator`` field names it (None:
    unknown; ``prmsynth export`` reads it from the ``run.json`` beside the trees).
    ``soft_labels``: each label is the MC value of its step, a float in [0, 1],
    not a boolean (``trl`` ``labels``, ``math-shepherd`` ``value``; the other
    formats refuse it with an [`InputError`][prmsynth.InputError]).  Only the values the run
    estimated are written: a step with no MC value of its own is joined to the
    next step that has one (their texts, with a blank line between), and the
    steps after the last such step are left out.

    >>> settings = ExportSettings(positive_threshold=0.5)
    >>> (settings.negative_threshold, settings.deduplicate, settings.balance)
    (0.0, True, 'none')
    >>> ExportSettings(positive_threshold=0.2, negative_threshold=0.5)
    Traceback (most recent call last):
    ...
    ValueError: negative_threshold (0.5) must not exceed positive_threshold (0.2)
    """

    labels: Literal["search", "mc"] = attrs.field(
        default="search",
        validator=attrs.validators.in_(("search", "mc")),
        metadata={
            "help": "search: the first errors the run's rule named (thresholds label the steps "
            "it did not judge); mc: MC thresholds alone"
        },
    )
    positive_threshold: float = attrs.field(
        default=0.0,
        validator=_check_fraction,
        metadata={
            "help": "a step whose MC value is above this is positive (0.0: any completion "
            "succeeded)"
        },
    )
    negative_threshold: float = attrs.field(
        default=0.0,
        validator=_check_fraction,
        metadata={
            "help": "prm800k: a negative step with MC value at most this is rated -1, others 0"
        },
    )
    balance: Literal["none", "downsample"] = attrs.field(
        default="none",
        validator=attrs.validators.in_(("none", "downsample")),
        metadata={
            "help": "downsample the larger class (solutions with / without an error) in each file"
        },
    )
    balance_seed: int = attrs.field(default=0, metadata={"help": "seed of the downsampling"})
    deduplicate: bool = attrs.field(default=True, metadata={"help": "write identical records once"})
    validation_fraction: float = attrs.field(
        default=0.0,
        validator=_check_fraction,
        metadata={
            "help": "share of questions (by a stable hash of the question id) in the validation "
            "file"
        },
    )
    split_seed: int = attrs.field(default=0, metadata={"help": "seed of the question hash"})
    system_prompt: str = attrs.field(factory=_default_system_prompt)
    consensus: bool = attrs.field(
        default=False,
        metadata={
            "help": "keep only solutions whose critic verdict (a run with --judge-model) agrees "
            "with the labels on the first wrong step"
        },
    )
    generator: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    soft_labels: bool = attrs.field(
        default=False,
        metadata={
            "help": "trl, math-shepherd: write each step's MC value as a float label in [0, 1] "
            "instead of a boolean (a step without a value of its own is joined to the next "
            "that has one)"
        },
    )

    def __attrs_post_init__(self) -> None:
        if self.negative_threshold > self.positive_threshold:
            raise ValueError(
                f"negative_threshold ({self.negative_threshold}) must not exceed "
                f"positive_threshold ({self.positive_threshold})"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (what the manifest records)."""
        return attrs.asdict(self)
