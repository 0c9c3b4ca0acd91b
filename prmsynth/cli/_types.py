"""Numeric option types: every number is checked when it is parsed.

A bad value is refused by argparse (exit 2, "argument --rpm: must be > 0, got
0") or, read from a ``--config`` file, by the config reader naming the file
and the key; it never reaches the code as a NaN, a negative rate or a zero
timeout.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


class OptionValueError(argparse.ArgumentTypeError, ValueError):
    """A value outside an option's range (argparse shows the message as it is)."""


def whole(*, minimum: int = 0, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number in ``[minimum, maximum]``.

    >>> whole(minimum=1)("3")
    3
    >>> whole(minimum=1)("0")
    Traceback (most recent call last):
    ...
    prmsynth.cli._types.OptionValueError: must be a whole number >= 1, got '0'
    """
    bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise OptionValueError(f"must be a whole number {bounds}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise OptionValueError(f"must be a whole number {bounds}, got {text!r}")
        return value

    parse.__name__ = "whole number"
    return parse


def number(
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> Callable[[str], float]:
    """A finite number, at least ``minimum`` (or above ``above``), at most ``maximum``.

    >>> number(above=0)("2.5")
    2.5
    >>> number(above=0)("nan")
    Traceback (most recent call last):
    ...
    prmsynth.cli._types.OptionValueError: must be a finite number > 0, got 'nan'
    >>> number(minimum=0, maximum=1)("1.5")
    Traceback (most recent call last):
    ...
    prmsynth.cli._types.OptionValueError: must be a finite number in [0, 1], got '1.5'
    """
    if above is not None:
        bounds = f"> {above:g}"
    elif minimum is not None and maximum is not None:
        bounds = f"in [{minimum:g}, {maximum:g}]"
    elif minimum is not None:
        bounds = f">= {minimum:g}"
    else:
        bounds = "" if maximum is None else f"<= {maximum:g}"
    wanted = f"a finite number {bounds}".rstrip()

    def parse(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise OptionValueError(f"must be {wanted}, got {text!r}") from None
        if (
            not math.isfinite(value)
            or (above is not None and not value > above)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
        ):
            raise OptionValueError(f"must be {wanted}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


#: The ranges the commands use.
COUNT = whole(minimum=1)
NON_NEGATIVE_WHOLE = whole(minimum=0)
SEED = whole(minimum=0, maximum=2**63 - 1)
POSITIVE = number(above=0)
NON_NEGATIVE = number(minimum=0)
PROBABILITY = number(minimum=0, maximum=1)
