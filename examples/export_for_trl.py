"""Run the scripted pipeline into a folder, then export TRL stepwise supervision.

python examples/export_for_trl.py
"""

from __future__ import annotations

import json
import tempfile

from prmsynth import (
    ExportSettings,
    LLMStepGenerator,
    Pipeline,
    Question,
    RunFolder,
    export_file,
)
from prmsynth.testing import ScriptedLLM


def script(request):
    """Half the solutions go wrong at a planted step; continuations follow the prefix."""
    if "Here are the first steps" not in request.last_message:
        if request.sample_index % 2 == 0:
            return "Add 2 + 3.\n\n2 + 3 = 5.\n\nThe answer is \\boxed{5}."
        return "Add 2 + 3.\n\nBAD: 2 + 3 = 6.\n\nThe answer is \\boxed{6}."
    if "BAD" in request.last_message:
        return "The answer is \\boxed{6}."
    return "2 + 3 = 5.\n\nThe answer is \\boxed{5}."


def main() -> None:
    folder = RunFolder(tempfile.mkdtemp(prefix="prmsynth-example-"))
    pipeline = Pipeline(generator=LLMStepGenerator(llm=ScriptedLLM(script)))
    questions = [
        Question(id=f"q{i}", text=f"What is 2 + 3? (variant {i})", reference_answer="5")
        for i in range(3)
    ]
    summary = folder.run(pipeline, questions, run_info={"model": "scripted"})
    print(f"{summary['kept']} kept, {summary['skipped']} skipped")
    out = folder.path / "trl.jsonl"
    manifest = export_file(folder.path / "trees.jsonl", "trl", out, ExportSettings())
    first = json.loads(out.read_text().splitlines()[0])
    print(json.dumps(first, indent=1)[:400])
    print(manifest["counts"])


if __name__ == "__main__":
    main()
