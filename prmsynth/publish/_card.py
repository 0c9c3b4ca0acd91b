"""The dataset card (``README.md``) of a published run.

The YAML front matter lists each config's data files per split (what the Hub
and ``datasets.load_dataset(REPO_ID, CONFIG)`` read), the license and tags;
the body has the counts from the export manifests, the run's settings from
``run.json``, the method with its citations, and the commands that
reproduce the data.  Front matter values are written as JSON scalars, which
YAML reads as they are, so no YAML library is needed.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from prmsynth._sources import HUB_PREFIX
from prmsynth.export._formats import load_schema

#: The tags every card carries.
TAGS = ("prmsynth", "process-reward-model", "synthetic", "math", "reasoning")

# The Hub's size categories, by upper bound.
_SIZES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
)

# run.json fields that name a machine or a path of the person who ran it.
_PRIVATE_KEYS = ("api_base",)
# Command-line options whose value is a server address.
_SERVER_OPTIONS = ("--api-base", "--judge-api-base")

_POLICIES = {
    "OmegaPRM": (
        "OmegaPRM-style Monte Carlo tree search (Luo et al., 2024): solutions are sampled, "
        "incorrect rollouts from promising prefixes are picked by a UCT-like priority, and a "
        "binary search along each one finds its first wrong step, so a solution of n steps "
        "costs about log2(n) estimations."
    ),
    "MathShepherd": (
        "Math-Shepherd's per-step Monte Carlo estimation (Wang et al., 2024): every prefix of "
        "every sampled solution is estimated."
    ),
    "BestOfN": (
        "best-of-n sampling: whole solutions are sampled and their final answers checked, "
        "with no step-level search."
    ),
}
#: How step prefixes reached the model (``prefix_mode`` in run.json), for the card.
_PREFIX_MODES = {
    "continue": " Completions continue each step prefix as the model's own partial reply "
    "(`prefix_mode: continue`), the quantity OmegaPRM and Math-Shepherd define.",
    "quote": " The model's API could not continue a partial reply, so each step prefix was "
    "quoted in a user message for the model to continue (`prefix_mode: quote`); a chat model "
    "asked that way may re-solve the problem or repair a quoted mistake, so MC values of wrong "
    "steps may be too high.",
}

CITATIONS = """\
@article{luo2024omegaprm,
  title   = {Improve Mathematical Reasoning in Language Models by Automated Process Supervision},
  author  = {Luo, Liangchen and Liu, Yinxiao and Liu, Rosanne and Phatale, Samrat and
             Guo, Meiqi and Lara, Harsh and Li, Yunxuan and Shu, Lei and Zhu, Yun and
             Meng, Lei and Sun, Jiao and Rastogi, Abhinav},
  journal = {arXiv preprint arXiv:2406.06592},
  year    = {2024}
}

@article{wang2023mathshepherd,
  title   = {Math-Shepherd: Verify and Reinforce LLMs Step-by-step without Human Annotations},
  author  = {Wang, Peiyi and Li, Lei and Shao, Zhihong and Xu, R. X. and Dai, Damai and
             Li, Yifei and Chen, Deli and Wu, Y. and Sui, Zhifang},
  journal = {arXiv preprint arXiv:2312.08935},
  year    = {2023}
}"""
"""BibTeX of the method the data comes from: OmegaPRM and Math-Shepherd."""


@attrs.frozen(kw_only=True)
class ConfigFiles:
    """One config of the published dataset: its format, its splits (each as
    the export manifest counts it, with ``path`` inside the repository), and
    the export manifest."""

    name: str
    splits: Mapping[str, Mapping[str, Any]]
    manifest: Mapping[str, Any]


def size_category(records: int) -> str:
    """The Hub's ``size_categories`` value for ``records`` rows.

    >>> size_category(999), size_category(1000), size_category(123_456)
    ('n<1K', '1K<n<10K', '100K<n<1M')
    """
    for bound, name in _SIZES:
        if records < bound:
            return name
    return "n>10M"


def public_settings(run_info: Mapping[str, Any]) -> dict[str, Any]:
    """``run.json`` as a card shows it: no server addresses, and local paths
    by their last part (the seed file's SHA-256 stays, so it can be checked).

    >>> public_settings({"api_base": "http://10.0.0.5/v1", "seed_file": "/home/me/s.jsonl",
    ...                  "judge": {"model": "m", "api_base": "http://x"}})
    {'seed_file': 's.jsonl', 'judge': {'model': 'm'}}
    """

    def scrub(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: scrub(v) for k, v in value.items() if k not in _PRIVATE_KEYS}
        return value

    settings = scrub(run_info)
    if isinstance(settings.get("seed_file"), str):
        settings["seed_file"] = seed_label(settings["seed_file"])
    if isinstance(settings.get("command"), str):
        settings["command"] = public_command(settings["command"])
    return settings


def seed_label(seed: str) -> str:
    """A seed source or path as a card names it: a Hub dataset as it is,
    a local path by its last part.

    >>> seed_label("hf:openai/gsm8k"), seed_label("/home/me/data/seeds.jsonl")
    ('hf:openai/gsm8k', 'seeds.jsonl')
    >>> seed_label("hf:/data/gsm8k")
    'hf:gsm8k'
    """
    if seed.startswith(HUB_PREFIX):
        name = seed[len(HUB_PREFIX) :]
        return HUB_PREFIX + (seed_label(name) if name.startswith(("/", "~")) else name)
    return seed.rstrip("/").rsplit("/", 1)[-1] or seed


def public_command(command: str) -> str:
    """A recorded command as a card shows it: server addresses as ``API_BASE``
    and local paths by their last part, so the card names no machine.

    >>> public_command("prmsynth run /home/me/seeds.jsonl --out /tmp/o --api-base http://10.0.0.5")
    'prmsynth run seeds.jsonl --out o --api-base API_BASE'
    >>> public_command("prmsynth run hf:/data/gsm8k --split test")
    'prmsynth run hf:gsm8k --split test'
    """
    words = shlex.split(command)
    shown = []
    for index, word in enumerate(words):
        if index and words[index - 1] in _SERVER_OPTIONS:
            word = "API_BASE"
        elif word.startswith((HUB_PREFIX, "/", "~")):
            word = seed_label(word)
        shown.append(word)
    return shlex.join(shown)


def _yaml_scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def front_matter(
    configs: Sequence[ConfigFiles], *, license: str, pretty_name: str, records: int
) -> str:
    """The card's YAML header: license, tags, size, and each config's files."""
    lines = [
        "---",
        f"license: {_yaml_scalar(license)}",
        f"pretty_name: {_yaml_scalar(pretty_name)}",
        "tags:",
        *(f"- {_yaml_scalar(tag)}" for tag in TAGS),
        "size_categories:",
        f"- {_yaml_scalar(size_category(records))}",
        "configs:",
    ]
    for index, config in enumerate(configs):
        lines.append(f"- config_name: {_yaml_scalar(config.name)}")
        if index == 0:
            lines.append("  default: true")
        lines.append("  data_files:")
        for split, entry in config.splits.items():
            lines += [
                f"  - split: {_yaml_scalar(split)}",
                f"    path: {_yaml_scalar(entry['path'])}",
            ]
    lines.append("---")
    return "\n".join(lines) + "\n"


def _table(rows: Sequence[Sequence[Any]]) -> list[str]:
    header, *body = rows
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in body]


_SOFT_LABELS = (
    "**Soft labels**: this config was exported with `soft_labels`, so each label is a "
    "number in [0, 1], the Monte Carlo value of the steps up to it (the share of completions "
    "sampled after them that reached the reference answer), not a boolean. A step the run "
    "never sampled after is joined to the next step that it did, and the steps after the last "
    "sampled one are left out."
)


def _json_block(value: Any) -> list[str]:
    return ["```json", json.dumps(value, indent=2, ensure_ascii=False), "```"]


def dataset_card(
    configs: Sequence[ConfigFiles],
    *,
    repo_id: str,
    run_info: Mapping[str, Any] | None,
    summary: Mapping[str, Any] | None,
    license: str,
    push_command: str | None,
    version: str,
) -> str:
    """The whole ``README.md``: front matter, then the description."""
    largest = max(
        (sum(entry["records"] for entry in config.splits.values()) for config in configs),
        default=0,
    )
    name = repo_id.rsplit("/", 1)[-1]
    lines = [front_matter(configs, license=license, pretty_name=name, records=largest)]
    info = dict(run_info or {})
    seed = seed_label(str(info.get("seed_file") or "unknown seeds"))
    model = info.get("model") or "an unrecorded model"
    lines += [
        f"# {name}",
        "",
        f"Step-level training data for process reward models (PRMs), made by "
        f"[prmsynth](https://pypi.org/project/prmsynth/) {version} from the seed questions of "
        f"`{seed}` with `{model}`. The steps of sampled solutions are labelled from Monte Carlo "
        "estimates, made where the run sampled completions, of the chance that a completion "
        "after them reaches the reference answer; the configs below hold the same data in the "
        "layouts trainers read.",
        "",
        "## Configs",
        "",
    ]
    rows: list[Sequence[Any]] = [("config", "layout", "split", "records", "questions")]
    for config in configs:
        title = load_schema(config.manifest["format"]).get("title", config.manifest["format"])
        for split, entry in config.splits.items():
            rows.append((f"`{config.name}`", title, split, entry["records"], entry["questions"]))
    lines += _table(rows)
    lines += ["", "Load one config with `datasets`:", "", "```python"]
    lines += [
        "from datasets import load_dataset",
        "",
        f"data = load_dataset({repo_id!r}, {configs[0].name!r})" if configs else "",
        "```",
        "",
    ]
    for config in configs:
        schema = load_schema(config.manifest["format"])
        description = schema.get("description", "")
        balance = {
            split: entry["label_balance"]
            for split, entry in config.splits.items()
            if entry.get("label_balance")
        }
        lines += [f"### `{config.name}`", "", description, ""]
        if (config.manifest.get("settings") or {}).get("soft_labels"):
            lines += [_SOFT_LABELS, ""]
        if balance:
            keys = list(next(iter(balance.values())))
            rows = [("split", *keys)]
            rows += [(split, *(counts[key] for key in keys)) for split, counts in balance.items()]
            lines += ["Label balance per split:", "", *_table(rows), ""]
    policy = str(info.get("policy") or "")
    method = _POLICIES.get(policy, f"the `{policy}` search policy." if policy else "")
    prefix = _PREFIX_MODES.get(str(info.get("prefix_mode")), "")
    lines += [
        "## How it was made",
        "",
        "For every seed question an LLM writes step-by-step solutions; for a step prefix, "
        "the Monte Carlo (MC) value is the share of completions sampled from it whose final "
        f"answer matches the reference (Math-Shepherd, Wang et al., 2024).{prefix} Where to spend "
        f"completions: {method} Answers are compared with math-verify and prmsynth's own "
        "normalizations; a completion without a committed answer never counts. Questions "
        "the model always or never solves are skipped: they teach nothing about steps.",
        "",
        "- OmegaPRM: Luo et al., 2024, *Improve Mathematical Reasoning in Language Models by "
        "Automated Process Supervision*, [arXiv:2406.06592](https://arxiv.org/abs/2406.06592)",
        "- Math-Shepherd: Wang et al., 2024, *Math-Shepherd: Verify and Reinforce LLMs "
        "Step-by-step without Human Annotations*, "
        "[arXiv:2312.08935](https://arxiv.org/abs/2312.08935)",
        "",
    ]
    if summary:
        counts = [
            (key, summary[key])
            for key in (
                "questions_total",
                "kept",
                "skipped",
                "failed",
                "completions",
                "prompt_tokens",
                "completion_tokens",
                "complete",
            )
            if key in summary
        ]
        if summary.get("skipped_by_reason"):
            counts.append(("skipped_by_reason", summary["skipped_by_reason"]))
        rows = [("count", "value"), *((key, json.dumps(value)) for key, value in counts)]
        lines += ["### The run", "", *_table(rows), ""]
    if run_info:
        lines += ["### Settings (`run.json`)", "", *_json_block(public_settings(run_info)), ""]
    export_settings = configs[0].manifest.get("settings") if configs else None
    if export_settings:
        lines += ["### Export settings", "", *_json_block(export_settings), ""]
    lines += ["## Reproduce", ""]
    run_command = info.get("command")
    lines += [
        "Paths are shortened to their last part and servers shown as `API_BASE`:",
        "",
        "```bash",
        public_command(run_command) if run_command else "# the run command was not recorded",
    ]
    if push_command:
        lines.append(public_command(push_command))
    lines += ["```", ""]
    if info.get("seed_file_sha256"):
        lines += [f"The seed file's SHA-256 is `{info['seed_file_sha256']}`.", ""]
    if info.get("seed_revision"):
        lines += [f"The seed dataset was read at commit `{info['seed_revision']}`.", ""]
    lines += [
        "Sampling is seeded, and an LLM server may still answer differently from one call to "
        "the next; the run folder's completion cache (`cache.sqlite`) replays a run exactly.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATIONS,
        "```",
        "",
    ]
    return "\n".join(lines)
