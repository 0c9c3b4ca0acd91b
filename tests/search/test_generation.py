from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from prmsynth import LLMStepGenerator, Question, SamplingSettings, derive_seed, split_on_blank_lines
from prmsynth.testing import ScriptedLLM

QUESTION = Question(id="q", text="What is 2 + 3?", reference_answer="5")


@given(
    st.lists(
        st.text(alphabet="ab c.\n", min_size=1)
        .map(str.strip)
        .filter(
            lambda s: s and "\n\n" not in s and not any(not line.strip() for line in s.split("\n"))
        ),
        max_size=6,
    )
)
def test_split_inverts_join(steps):
    generator = LLMStepGenerator(llm=ScriptedLLM(lambda r: ""))
    assert generator.split_steps(generator.join_steps(steps)) == steps


def test_split_on_blank_lines_ignores_whitespace_only_lines():
    assert split_on_blank_lines("a\nb\n \t\nc\n\n\n") == ["a\nb", "c"]


def test_messages_quote_the_prefix_in_user_mode():
    generator = LLMStepGenerator(llm=ScriptedLLM(lambda r: ""))
    messages = generator.messages(QUESTION, ["Step one.", "Step two."])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "Step one.\n\nStep two." in messages[-1]["content"]
    assert QUESTION.text in messages[-1]["content"]


def test_messages_start_the_assistant_reply_in_continue_mode():
    # "assistant", the mode's first name, still means continue.
    generator = LLMStepGenerator(llm=ScriptedLLM(lambda r: ""), prefix_mode="assistant")
    messages = generator.messages(QUESTION, ["Step one."])
    assert messages[-1] == {"role": "assistant", "content": "Step one.\n\n", "prefix": True}
    assert generator.messages(QUESTION, [])[-1] == {"role": "user", "content": QUESTION.text}


def test_generate_passes_sampling_and_derived_seed():
    llm = ScriptedLLM(lambda request: f"{request.seed} {request.temperature} {request.max_tokens}")
    generator = LLMStepGenerator(
        llm=llm, sampling=SamplingSettings(temperature=0.3, max_tokens=64, seed=11)
    )
    response = asyncio.run(generator.generate(QUESTION, [], n=3, sample_offset=8))
    texts = {completion.text for completion in response.completions}
    assert texts == {f"{derive_seed(11, 'q', 8)} 0.3 64"}
    assert len(response.completions) == 3
    unseeded = LLMStepGenerator(llm=llm, sampling=SamplingSettings(seed=None))
    response = asyncio.run(unseeded.generate(QUESTION, [], n=1))
    assert response.completions[0].text.startswith("None")


def test_step_marker_splitter():
    from prmsynth import split_on_step_markers

    text = "Let us see.\nStep 1: 2 + 3.\n**Step 2.** = 5\nStep 10) done"
    assert split_on_step_markers(text) == [
        "Let us see.",
        "Step 1: 2 + 3.",
        "**Step 2.** = 5",
        "Step 10) done",
    ]
    assert split_on_step_markers("a\n\nb") == ["a", "b"]


def test_line_splitter():
    from prmsynth import split_on_lines

    assert split_on_lines(" x \n\ny\n") == ["x", "y"]


@given(
    st.lists(st.sampled_from(["word", "two.", "three!", "x", "\n\n", "\n"]), max_size=60),
    st.integers(1, 8),
)
def test_length_capped_splitter_keeps_every_word_and_caps_length(tokens, max_tokens):
    from prmsynth import LengthCappedSplitter

    text = " ".join(tokens)
    pieces = LengthCappedSplitter(max_tokens=max_tokens)(text)
    assert " ".join(pieces).split() == text.split()
    assert all(len(piece.split()) <= max_tokens for piece in pieces)


def test_splitter_is_replaceable_in_the_generator():
    from prmsynth import split_on_lines

    generator = LLMStepGenerator(llm=ScriptedLLM(lambda r: ""), splitter=split_on_lines)
    assert generator.split_steps("a\nb") == ["a", "b"]
