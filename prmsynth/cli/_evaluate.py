"""The ``prmsynth evaluate`` subcommand: how good is a PRM?

ProcessBench-format data (``problem``, ``steps``, ``label``) gives error
accuracy, correct accuracy and F1; ``--best-of-n`` candidates give the
accuracy of picking by PRM score against majority vote and a random pick.
The judge is a PRM folder (needs prmsynth[train]), a PRM served by vLLM
(``http://host:port``), prmsynth's Monte Carlo labeller (``mc:MODEL``), or
the final-answer-only baseline (``outcome``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prmsynth._errors import BackendUnavailable, InputError
from prmsynth._io import write_json
from prmsynth.cli._common import EXIT_OK, Stopped, reports_errors
from prmsynth.cli._types import COUNT, SEED, number
from prmsynth.train._evaluate import (
    MonteCarloJudge,
    OutcomeJudge,
    best_of_n,
    calibration_split,
    choose_threshold,
    processbench_score,
    read_candidates,
    read_labelled_solutions,
    score_all,
)


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand.

    >>> parser = argparse.ArgumentParser(prog="prmsynth")
    >>> _ = add_parsers(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["evaluate", "prm", "gsm8k.json", "--threshold", "0.5"])
    >>> args.prm, args.data, args.threshold, args.calibration_fraction
    ('prm', 'gsm8k.json', 0.5, 0.2)
    """

    parser = subparsers.add_parser(
        "evaluate",
        help="score a PRM on ProcessBench-format data and on Best-of-N selection",
        description=(
            "Judge a PRM. On ProcessBench-format DATA (problem, steps, label = first wrong "
            "step or -1): the predicted first error is the first step scored below the "
            "threshold; error accuracy, correct accuracy and their F1 as ProcessBench computes "
            "them. The threshold is --threshold, or the best F1 on --calibration-file, or on "
            "--calibration-fraction of DATA (then left out of the metrics). With --best-of-n: "
            "the accuracy of picking one candidate per question by PRM score (min, last, "
            "product of step scores) against majority vote over final answers and a random "
            "pick. PRM: a folder written by 'prmsynth train' (needs prmsynth[train]); "
            "http://HOST:PORT for a PRM served by vLLM's /pooling API; mc:MODEL for "
            "prmsynth's Monte Carlo labeller (mc: alone: the embedded model; needs the "
            "reference 'answer' in each row); 'outcome' for the final-answer-only baseline."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("prm", metavar="PRM", help="the judge (see above)")
    parser.add_argument(
        "data",
        metavar="DATA",
        nargs="?",
        default=None,
        help="ProcessBench-format data: a JSON array or JSON Lines",
    )
    parser.add_argument(
        "--best-of-n",
        metavar="CANDIDATES",
        default=None,
        help="candidate solutions: a 'prmsynth run' folder (its trees.jsonl), or JSON rows "
        "with problem, steps, answer and optionally question_id and correct",
    )
    parser.add_argument(
        "--threshold", type=number(), default=None, help="score below which a step is wrong"
    )
    parser.add_argument(
        "--calibration-file",
        default=None,
        help="ProcessBench-format data on which the threshold is chosen",
    )
    parser.add_argument(
        "--calibration-fraction",
        type=number(above=0, maximum=1),
        default=0.2,
        help="without --threshold or --calibration-file: this share of DATA, drawn with "
        "--seed, chooses the threshold and the rest is scored",
    )
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--limit", type=COUNT, default=None, help="use only the first N rows")
    parser.add_argument("--out", default=None, help="also write the results (JSON) here")
    parser.add_argument(
        "--separator",
        default="\n",
        help="for a served PRM: the step separator it was trained with",
    )
    parser.add_argument(
        "--served-model", default=None, help="for a served PRM: the model name (default: the first)"
    )
    parser.add_argument("--api-base", default=None, help="for mc:MODEL: the model's API base URL")
    parser.add_argument(
        "--num-branches", type=COUNT, default=8, help="for mc:MODEL: completions per prefix"
    )
    parser.add_argument(
        "--device", default=None, help="for a PRM folder: torch device (default: cuda if any)"
    )
    parser.set_defaults(handler=run)
    return parser


def open_judge(args: argparse.Namespace, solutions: list[Any]) -> Any:
    """The scorer ``PRM`` names."""

    spec = args.prm
    if spec == "outcome":
        return OutcomeJudge.for_solutions(solutions)
    if spec.startswith(("http://", "https://")):
        from prmsynth.train._served import ServedPRM

        return ServedPRM(url=spec, model=args.served_model, separator=args.separator).resolved()
    if spec == "mc" or spec.startswith("mc:"):
        from prmsynth._values import SearchSettings
        from prmsynth.cli._common import quiet_litellm
        from prmsynth.run._pipeline import Pipeline

        quiet_litellm()
        model = spec[3:] or None
        try:
            search = SearchSettings(num_branches=args.num_branches)
        except ValueError as error:
            raise InputError("--num-branches", str(error)) from None
        return MonteCarloJudge(
            pipeline=Pipeline.from_model(model, api_base=args.api_base, search=search)
        )
    if Path(spec).is_dir():
        from prmsynth.train._model import LocalPRM

        return LocalPRM.load(spec, device=args.device)
    raise InputError(
        spec, "not a PRM folder, an http:// server, mc:MODEL or 'outcome'", field="PRM"
    )


def _progress(label: str, quiet: bool) -> Any:
    if quiet:
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\r{label}: {done}/{total} scored", end=end, file=sys.stderr, flush=True)

    return show


@reports_errors("evaluate")
def run(args: argparse.Namespace) -> int:
    judge = None
    if args.data is None and args.best_of_n is None:
        raise InputError("DATA", "give ProcessBench-format DATA, --best-of-n, or both")
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit", f"must be >= 1, got {args.limit}")
    data = read_labelled_solutions(args.data)[: args.limit] if args.data else []
    calibration = (
        read_labelled_solutions(args.calibration_file)[: args.limit]
        if args.calibration_file
        else []
    )
    candidates = read_candidates(args.best_of_n) if args.best_of_n else []
    if args.data and args.threshold is None and not calibration:
        calibration_split(len(data), args.calibration_fraction, args.seed)  # checks it
        if len(data) < 2:
            raise InputError(args.data, "needs 2 rows or more to choose a threshold")
    judge = open_judge(args, [*data, *calibration, *candidates])

    results: dict[str, Any] = {"prm": args.prm}
    try:
        if data:
            scores = score_all(judge, data, progress=_progress("ProcessBench", args.quiet))
            labels = [s.label for s in data]
            if args.threshold is not None:
                threshold, chosen_on = args.threshold, "given"
                kept = list(range(len(data)))
            elif calibration:
                rows = score_all(judge, calibration, progress=_progress("calibration", args.quiet))
                threshold = choose_threshold(rows, [s.label for s in calibration])
                chosen_on, kept = args.calibration_file, list(range(len(data)))
            else:
                held, kept = calibration_split(len(data), args.calibration_fraction, args.seed)
                threshold = choose_threshold([scores[i] for i in held], [labels[i] for i in held])
                chosen_on = f"{len(held)} rows of DATA (seed {args.seed})"
            score = processbench_score(
                [scores[i] for i in kept], [labels[i] for i in kept], threshold
            )
            results["processbench"] = {**score.to_dict(), "threshold_chosen_on": chosen_on}
            how = "given" if chosen_on == "given" else f"chosen on {chosen_on}"
            print(
                f"ProcessBench ({score.n_error} wrong, {score.n_correct} right solutions, "
                f"threshold {threshold:.4g} {how}):\n"
                f"| error accuracy | correct accuracy | F1 |\n| --- | --- | --- |\n"
                f"| {score.error_accuracy:.3f} | {score.correct_accuracy:.3f} | {score.f1:.3f} |"
            )
        if candidates:
            scores = score_all(judge, candidates, progress=_progress("Best-of-N", args.quiet))
            bon = best_of_n(candidates, scores)
            results["best_of_n"] = bon.to_dict()
            print(
                f"Best-of-N ({bon.n_questions} questions, {bon.n_candidates} candidates):\n"
                "| pick | accuracy |\n| --- | --- |\n"
                + "\n".join(f"| {name} | {value:.3f} |" for name, value in bon.accuracy.items())
            )
    except InputError:
        raise
    except (BackendUnavailable, ValueError) as error:
        # The judge stopped serving, or scored what cannot be scored, mid-way.
        raise Stopped(error) from error
    finally:
        close = getattr(judge, "close", None)
        if close is not None:
            close()
    if args.out:
        write_json(args.out, results)
    return EXIT_OK
