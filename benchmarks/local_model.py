"""The embedded model: batched vs sequential decoding of ``n`` samples, side by side.

Both columns use the same model file and code in this process, the same
prompt (a question and two solution steps, as the search sends them), the
same sampling settings and seeds, one request of ``n`` samples each: the
prompt is evaluated once, then "sequential" decodes the samples one after
another (a llama.cpp batch of one sequence at a time) and "batched" decodes
them together, one batch per token step across the sequences still running.
Rounds alternate between the two so that a busy machine slows both alike;
the table shows the median over rounds.

    python benchmarks/local_model.py [--n 1 4 16] [--rounds 3] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from prmsynth.llm._local import _STOP, chatml_prompt, locate_gguf
from prmsynth.llm._local_worker import BatchedModel

PROMPT = chatml_prompt(
    [
        {
            "role": "system",
            "content": "Solve the problem step by step. Separate steps with a blank line. "
            "End with: The answer is \\boxed{ANSWER}.",
        },
        {
            "role": "user",
            "content": "A baker makes 24 muffins and sells them in boxes of 4. Each box costs "
            "$3. How much money does the baker make by selling all the muffins?",
        },
        {"role": "assistant", "content": "There are 24 muffins.\n\nEach box holds 4 muffins.\n\n"},
    ]
)


def tokens_per_second(model: BatchedModel, n: int, *, max_tokens: int) -> float:
    started = time.perf_counter()
    reply = model.sample(
        PROMPT, n=n, max_tokens=max_tokens, temperature=0.7, top_p=0.95, seed=1, stop=_STOP
    )
    elapsed = time.perf_counter() - started
    return sum(choice["n_tokens"] for choice in reply["choices"]) / elapsed


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    path = str(locate_gguf())
    models = {
        "sequential": BatchedModel(path, args.threads, max_sequences=1),
        "batched": BatchedModel(path, args.threads),
    }
    for model in models.values():  # the first decodes pay for allocations
        model.sample(PROMPT, n=2, max_tokens=8, temperature=0.7, top_p=0.95, seed=0, stop=_STOP)
    print(
        f"SmolLM2-135M-Instruct Q4_1 on {cpu_name()}, {args.threads} threads, "
        f"max_tokens {args.max_tokens}, median of {args.rounds} alternating rounds"
    )
    print(f"{'n':>4} | {'sequential tok/s':>16} | {'batched tok/s':>13} | {'ratio':>5}")
    print(f"{'-' * 4}-+-{'-' * 16}-+-{'-' * 13}-+-{'-' * 5}")
    for n in args.n:
        rates: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, model in models.items():
                rates[name].append(tokens_per_second(model, n, max_tokens=args.max_tokens))
        sequential, batched = (statistics.median(rates[name]) for name in models)
        print(f"{n:>4} | {sequential:>16.1f} | {batched:>13.1f} | {batched / sequential:>5.2f}")


if __name__ == "__main__":
    main()
