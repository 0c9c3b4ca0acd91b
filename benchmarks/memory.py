"""Memory of long jobs: exports and merges stay flat in the number of questions, and so does a run.

    python benchmarks/memory.py [--sizes 10000,100000] [--jobs trl,sft,merge,resume] [--parallel 2]
    python benchmarks/memory.py run [--questions 10000] [--concurrency 32]
    python benchmarks/memory.py seeds [--rows 100000,1000000] [--max-completions 400]

The first form writes synthetic run folders (``--shards`` shards of a run in
the run-file format: ``run.json``, ``summary.json``, ``trees.jsonl``,
``skipped.jsonl``), then, for each size, runs the jobs, each in a fresh child
process, and prints its time and peak resident memory (``ru_maxrss``): an
export to ``trl`` balanced with a 10% validation split, to ``sft`` (and to
``processbench`` when asked for), the merge of the shards, and the resume
of each shard's run (what a resumed run reads before its first request).  Every tree
has 3 or 4 solutions of 4 to 10 steps of about 180 characters, Monte Carlo
values from sampled completions, first-error labels and verdicts (about
12 kB a line of ``trees.jsonl``, a little more than half what a real run
writes per question, for the sake of time).  The second form measures a run instead: resident
memory as 10,000 questions finish, with a scripted fake LLM standing in for
the backend, so the numbers are prmsynth's own.  The third form measures
what a run does with a large seed file: ``prmsynth run SEEDS`` (the command
line, in a child process, against a loopback fake OpenAI server) over seed
files of each size, stopped by ``--max-completions``, then resumed (the same
command again), beside ``load_questions`` holding the same seeds as a list.
A run checks every row first, then reads the questions from a scratch file
as the search takes them, so its peak memory should not grow with the rows.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The prmsynth of this checkout, here and in the child processes.
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY_ROOT))

# The jobs: an export (format, ExportSettings options, what the table calls it), or the merge.
EXPORTS = {
    "trl": ("trl", {"balance": "downsample", "validation_fraction": 0.1}, "trl, balanced, split"),
    "processbench": ("processbench", {}, "processbench"),
    "sft": ("sft", {}, "sft"),
}
MERGE = "merge"
RESUME = "resume"
JOBS = {
    **{name: label for name, (_, _, label) in EXPORTS.items()},
    MERGE: "merge of the shards",
    RESUME: "resume of each shard's run",
}

SENTENCES = [
    "Let the unknown number be x, so the statement of the problem becomes an equation in x.",
    "Subtracting the same quantity from both sides keeps the equation balanced and simpler.",
    "The total cost is the price of one item multiplied by the number of items bought here.",
    "Dividing both sides by the coefficient leaves the variable alone on the left-hand side.",
    "The remaining amount is what is left after the first two payments have been taken out.",
    "Since the triangle is right-angled, the Pythagorean theorem relates its three sides.",
    "Writing the fraction in lowest terms means dividing numerator and denominator by 6.",
    "The rate is distance over time, so the car covers 45 kilometres in each hour of travel.",
    "Adding the two partial sums gives the number of apples in both baskets taken together.",
    "Checking the answer by substitution shows that both sides of the equation agree again.",
]


def step_text(rng: random.Random, tag: str) -> str:
    """About 200 characters of solution prose, made unique by ``tag``."""
    return f"{rng.choice(SENTENCES)} {rng.choice(SENTENCES)} [{tag}]"


def synthetic_tree(index: int, rng: random.Random):
    """A searched tree as a run keeps it: solutions sharing a first step, MC values
    from sampled completions, a first-error label on each wrong solution."""
    from prmsynth import Question, ReasoningTree, Rollout, Verdict

    tree = ReasoningTree(
        Question(
            id=f"q{index:07d}",
            text=f"Problem {index}: {rng.choice(SENTENCES)} What is the value of x?",
            reference_answer=str(rng.randint(1, 999)),
        )
    )
    (first,) = tree.add_steps(tree.root, [step_text(rng, f"{index}.0")])
    for solution in range(rng.randint(3, 4)):
        steps = [
            step_text(rng, f"{index}.{solution}.{depth}") for depth in range(rng.randint(3, 9))
        ]
        chain = [first, *tree.add_steps(first, steps)]
        correct = rng.random() < 0.5
        wrong_from = len(chain) if correct else rng.randrange(1, len(chain))
        # the completions sampled from one prefix give its MC value
        sampled = rng.randrange(len(chain) - 1)
        answer = tree.question.reference_answer if sampled < wrong_from else "0"
        rollouts = [
            Rollout(
                text=f"So x = {answer}. The answer is \\boxed{{{answer}}}.",
                steps=(f"So x = {answer}.", f"The answer is \\boxed{{{answer}}}."),
                verdict=Verdict(status="correct" if answer != "0" and sample else "incorrect"),
            )
            for sample in range(2)
        ]
        tree.record_rollouts(chain[sampled], rollouts)
        if not correct:
            tree.set_label(chain[wrong_from], False)
        tree.mark_terminal(chain[-1], Verdict(status="correct" if correct else "incorrect"))
    return tree


def write_shard(folder: Path, index: int, count: int, first: int, size: int) -> None:
    """Shard ``index`` of ``count``: ``size`` kept questions from number ``first`` on,
    and one skipped question in fifty, in the files ``prmsynth run --shard`` writes.

    For the sake of time, 500 trees are built and written through the public
    API and repeated under new question ids and texts (so no two records are
    the same), the way ``trees.jsonl`` holds them.
    """
    from prmsynth import tree_to_dict
    from prmsynth._io import dumps_line

    folder.mkdir(parents=True)
    info = {"model": "synthetic", "shard": f"{index}/{count}", "system_prompt": "Solve it."}
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "summary.json").write_text(json.dumps({**info, "complete": True}))
    rng = random.Random(first)
    pool = [tree_to_dict(synthetic_tree(number, rng)) for number in range(first, first + 500)]
    costs = {"n_completions": 24, "cost": 0.0012}
    with (
        open(folder / "trees.jsonl", "w", encoding="utf-8") as trees,
        open(folder / "skipped.jsonl", "w", encoding="utf-8") as skipped,
    ):
        for number in range(first, first + size):
            record = pool[number % len(pool)]
            question = f"Problem {number}: {SENTENCES[number % len(SENTENCES)]} What is x?"
            line = {
                **record,
                "question_id": f"q{number:07d}",
                "question": question,
                "reasoning_steps": {**record["reasoning_steps"], "text": question},
                "status": "kept",
                "reason": None,
                **costs,
            }
            trees.write(dumps_line(line))
            if number % 50 == 0:
                row = {"question_id": f"s{number}", "status": "skipped", "reason": "all_correct"}
                skipped.write(dumps_line({**row, **costs}))


def write_run(folder: Path, size: int, shards: int) -> list[Path]:
    folders = [folder / f"shard-{index}" for index in range(shards)]
    bounds = [size * index // shards for index in range(shards + 1)]
    jobs = [
        (folders[index], index, shards, bounds[index], bounds[index + 1] - bounds[index])
        for index in range(shards)
    ]
    with multiprocessing.Pool(min(shards, os.cpu_count() or 1)) as pool:
        pool.starmap(write_shard, jobs)
    return folders


def child(spec: dict) -> None:
    """One job in this (fresh) process; prints its seconds and memory as JSON."""
    from prmsynth import ExportSettings, RunFolder, export_file

    at_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    shards = [Path(folder) for folder in spec["shards"]]
    if spec["job"] == MERGE:
        summary = RunFolder(spec["out"]).merge(shards)
        records = summary["kept"] + summary["skipped"]
    elif spec["job"] == RESUME:
        # What a resumed run does before its first request: check and count
        # every finished question, rebuild the derived files.
        from prmsynth.run._folder import prepare_output_directory

        records = 0
        for folder in shards:
            info = json.loads((folder / "run.json").read_text())
            records += prepare_output_directory(folder, info, overwrite=False).tally.done
    else:
        format, options, _ = EXPORTS[spec["job"]]
        sources = [folder / "trees.jsonl" for folder in shards]
        out = Path(spec["out"]) / f"{format}.jsonl"
        manifest = export_file(sources, format, out, ExportSettings(**options))
        records = manifest["counts"]["records_written"]
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - started,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "start_mb": at_start / 1024,
                "records": records,
            }
        )
    )


def run_job(job: str, shards: list[Path], out: Path) -> dict:
    out.mkdir()
    spec = json.dumps({"job": job, "shards": [str(folder) for folder in shards], "out": str(out)})
    done = subprocess.run(
        [sys.executable, __file__, "--child", spec], capture_output=True, text=True, check=False
    )
    shutil.rmtree(out)
    if done.returncode != 0:
        sys.exit(f"{job} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def measure_exports(args: argparse.Namespace) -> None:
    sizes = [int(size) for size in args.sizes.split(",")]
    jobs = args.jobs.split(",")
    unknown = sorted(set(jobs) - set(JOBS))
    if unknown:
        sys.exit(f"unknown jobs {unknown}; choose from {', '.join(JOBS)}")
    work = Path(tempfile.mkdtemp(prefix="prmsynth-memory-", dir=args.workdir))
    results: dict[tuple[int, str], dict] = {}
    try:
        for size in sizes:
            started = time.perf_counter()
            shards = write_run(work / f"run-{size}", size, args.shards)
            megabytes = sum((f / "trees.jsonl").stat().st_size for f in shards) / 2**20
            print(
                f"{size:,} trees in {args.shards} shards ({megabytes:,.0f} MB of trees.jsonl) "
                f"written in {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
            )
            # Each job in its own process, as many at once as --parallel says:
            # memory is each process's own; seconds are wall time, shared cores.
            with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
                futures = {
                    pool.submit(run_job, job, shards, work / f"out-{number}"): job
                    for number, job in enumerate(jobs)
                }
                for future in concurrent.futures.as_completed(futures):
                    job = futures[future]
                    result = results[size, job] = future.result()
                    print(
                        f"  {JOBS[job]}: {result['seconds']:.0f} s, {result['peak_mb']:.0f} MB",
                        file=sys.stderr,
                    )
            shutil.rmtree(work / f"run-{size}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{'trees':>8}  {'job':<31} {'records':>9} {'seconds':>8} {'peak MB':>8} {'at start':>9}"
    )
    for size in sizes:
        for job in jobs:
            result = results[size, job]
            print(
                f"{size:>8,}  {JOBS[job]:<31} {result['records']:>9,} {result['seconds']:>8.1f} "
                f"{result['peak_mb']:>8.1f} {result['start_mb']:>9.1f}"
            )
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"\npeak memory at {large:,} trees over peak memory at {small:,}:")
        for job in jobs:
            ratio = results[large, job]["peak_mb"] / results[small, job]["peak_mb"]
            print(f"  {JOBS[job]:<31} {ratio:.2f}")


# -- a run ----------------------------------------------------------------------------


def resident_megabytes() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def script(request) -> str:
    """Half the whole solutions are wrong at step 2; continuations follow their prefix."""
    prompt = request.last_message
    if "Here are the first steps" not in prompt:
        if request.sample_index % 2 == 0:
            return "Read the question.\n\nAdd 2 and 3 to get 5.\n\nThe answer is \\boxed{5}."
        return "Read the question.\n\nBAD: add 2 and 3 to get 6.\n\nThe answer is \\boxed{6}."
    if "BAD" in prompt:
        return "So the total is 6.\n\nThe answer is \\boxed{6}."
    return "So the total is 5.\n\nThe answer is \\boxed{5}."


def measure_run(args: argparse.Namespace) -> None:
    from prmsynth import ExactMatchVerifier, LLMStepGenerator, Pipeline, Question, RunFolder
    from prmsynth.testing import ScriptedLLM

    questions = [
        Question(id=f"q{i}", text=f"What is 2 + 3? (copy {i})", reference_answer="5")
        for i in range(args.questions)
    ]
    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=ScriptedLLM(script)),
        verifier=ExactMatchVerifier(),
        concurrency=args.concurrency,
    )
    marks = {args.questions * k // 10 for k in range(1, 11)}
    rows = []
    started = time.perf_counter()
    done = 0

    def sample(result) -> None:
        nonlocal done
        done += 1
        if done in marks:
            rows.append((done, resident_megabytes(), time.perf_counter() - started))

    baseline = resident_megabytes()
    with tempfile.TemporaryDirectory() as folder:
        # ScriptedLLM keeps every request for assertions; clear it as we go so
        # the numbers are prmsynth's, not the fake's.
        def sample_and_forget(result) -> None:
            pipeline.generator.llm.requests.clear()
            sample(result)

        summary = RunFolder(folder).run(
            pipeline, questions, run_info={"model": "scripted"}, on_result=sample_and_forget
        )
        size = sum(f.stat().st_size for f in Path(folder).iterdir()) / 2**20
    print(
        f"{args.questions} questions, {summary['completions']} completions, "
        f"{size:.0f} MB written, concurrency {args.concurrency}; "
        f"before the run: {baseline:.0f} MB\n"
    )
    print(f"{'finished':>9} {'resident MB':>12} {'seconds':>8}")
    for finished, megabytes, seconds in rows:
        print(f"{finished:>9} {megabytes:>12.1f} {seconds:>8.1f}")
    growth = rows[-1][1] - rows[0][1]
    print(f"\ngrowth from {rows[0][0]} to {rows[-1][0]} finished questions: {growth:+.1f} MB")


# -- a run over a large seed file ---------------------------------------------------


def write_seeds(path: Path, rows: int) -> None:
    """GSM8K-sized seed rows: a question of about 250 characters, a short worked answer."""
    with open(path, "w", encoding="utf-8") as file:
        for index in range(rows):
            question = f"Problem {index}: {SENTENCES[index % 10]} {SENTENCES[(index + 3) % 10]}"
            answer = f"{SENTENCES[(index + 5) % 10]}\n#### {index % 997}"
            file.write(json.dumps({"id": f"s{index}", "question": question, "answer": answer}))
            file.write("\n")


def fake_reply(request) -> str:
    """The same script as the run benchmark, read from the request's prompt."""
    bad = "Here are the first steps" in request.prompt and "BAD" in request.prompt
    if "Here are the first steps" in request.prompt:
        return f"So the total is {6 if bad else 5}.\n\nThe answer is \\boxed{{{6 if bad else 5}}}."
    return "Read the question.\n\nAdd 2 and 3 to get 5.\n\nThe answer is \\boxed{5}."


def child_peak(argv: list[str]) -> tuple[float, float, int]:
    """Run ``argv`` in a child process: (seconds, peak resident MB, exit status)."""
    # A loopback fake server checks no key, but litellm wants one set.
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT), "OPENAI_API_KEY": "sk-fake"}
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=environment, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, process.returncode


def measure_seeds(args: argparse.Namespace) -> None:
    from prmsynth.testing import FakeOpenAIServer

    sizes = [int(size) for size in args.rows.split(",")]
    work = Path(tempfile.mkdtemp(prefix="prmsynth-seeds-", dir=args.workdir))
    cli = "import sys; from prmsynth.cli import main; sys.exit(main(sys.argv[1:]))"
    load = "import sys; from prmsynth import load_questions; " + (
        "load_questions(sys.argv[1], question_fields=['question'], answer_field='answer')"
    )
    rows = []
    try:
        with FakeOpenAIServer(responder=fake_reply, keep_bodies=False) as server:
            for size in sizes:
                seeds = work / f"seeds-{size}.jsonl"
                write_seeds(seeds, size)
                megabytes = seeds.stat().st_size / 2**20
                run = [sys.executable, "-c", cli, "run", str(seeds), "--out", str(work / "out")]
                run += ["--column-names", "question", "--answer-column", "answer", "--quiet"]
                run += ["--model", "openai/fake", "--api-base", server.url]
                run += ["--max-completions", str(args.max_completions)]
                jobs = {
                    "load_questions (a list)": [sys.executable, "-c", load, str(seeds)],
                    "prmsynth run": run,
                    "prmsynth run, resumed": [
                        *run,
                        "--max-completions",
                        str(2 * args.max_completions),
                    ],
                }
                for job, argv in jobs.items():
                    seconds, peak, status = child_peak(argv)
                    if status != 0:
                        sys.exit(f"{job} on {size} rows exited {status}")
                    rows.append((size, megabytes, job, seconds, peak))
                    print(
                        f"  {size:,} rows, {job}: {seconds:.0f} s, {peak:.0f} MB", file=sys.stderr
                    )
                summary = json.loads((work / "out" / "summary.json").read_text())
                if summary["questions_total"] != size:
                    sys.exit(f"the run counted {summary['questions_total']} of {size} questions")
                shutil.rmtree(work / "out")
                seeds.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'rows':>10} {'seed MB':>8}  {'job':<24} {'seconds':>8} {'peak MB':>8}")
    for size, megabytes, job, seconds, peak in rows:
        print(f"{size:>10,} {megabytes:>8.0f}  {job:<24} {seconds:>8.1f} {peak:>8.1f}")
    if len(sizes) > 1:
        print(f"\npeak memory at {sizes[-1]:,} rows over peak memory at {sizes[0]:,}:")
        for job in jobs:
            peaks = [peak for size, _, name, _, peak in rows if name == job]
            print(f"  {job:<24} {peaks[-1] / peaks[0]:.2f}")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="numbers of trees, comma-separated")
    parser.add_argument("--shards", type=int, default=4, help="shard folders the trees are in")
    parser.add_argument(
        "--jobs",
        default="trl,sft,merge,resume",
        help=f"what to measure, comma-separated, of: {', '.join(JOBS)}",
    )
    parser.add_argument("--workdir", default=None, help="where the run folders go (default: temp)")
    parser.add_argument(
        "--parallel", type=int, default=os.cpu_count() or 1, help="jobs measured at once"
    )
    parser.set_defaults(measure=measure_exports)
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="measure a run instead")
    run.add_argument("--questions", type=int, default=10_000)
    run.add_argument("--concurrency", type=int, default=32)
    run.set_defaults(measure=measure_run)
    seeds = commands.add_parser("seeds", help="measure a run over a large seed file instead")
    seeds.add_argument("--rows", default="100000,1000000", help="seed rows, comma-separated")
    seeds.add_argument(
        "--max-completions", type=int, default=400, help="where each run stops (a budget)"
    )
    seeds.add_argument("--workdir", default=None, help="where the files go (default: temp)")
    seeds.set_defaults(measure=measure_seeds)
    args = parser.parse_args()
    args.measure(args)


if __name__ == "__main__":
    main()
