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


def test_messages_prefill_the_assistant_in_assistant_mode():
    generator = LLMStepGenerator(llm=ScriptedLLM(lambda r: ""), prefix_mode="assistant")
    messages = generator.messages(QUESTION, ["Step one."])
    assert messages[-1] == {"role": "assistant", "content": "Step one.\n\n"}
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
