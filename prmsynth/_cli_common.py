"""What every model-calling command does as the application: quiet litellm's noise.

Library code never sets litellm's module globals; the command line, being the
application, may.
"""

from __future__ import annotations

import logging


def _not_loop_notice(record: logging.LogRecord) -> bool:
    # litellm's logging worker notes each new event loop; a command runs one
    # loop per stage (check, evolve, search), so the note says nothing useful.
    return "event loop changed" not in record.getMessage()


def quiet_litellm() -> None:
    """Drop litellm's "Give Feedback / Get Help" banner and its event-loop notes.

    prmsynth reports every failed request itself (with the key redacted), so
    the banner that litellm prints to stdout on each error only adds noise.
    """
    from prmsynth._llm import import_litellm

    litellm = import_litellm()
    litellm.suppress_debug_info = True
    logger = logging.getLogger("LiteLLM")
    if _not_loop_notice not in logger.filters:
        logger.addFilter(_not_loop_notice)
