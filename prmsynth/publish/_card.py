"""The dataset card (``README.md``) of a published run.

The YAML front matter is what the Hub and ``datasets.load_dataset(REPO_ID,
CONFIG)`` read: each config's data files per split (``configs``), its
features and example counts (``dataset_info``), the license, languages, task
categories, tags, size and source dataset.  The body has the counts from the
export manifests, one record of each config, the run's settings from
``run.json``, the method with its citations, and the commands that reproduce
the data from the ``run.json`` and ``config.yaml`` uploaded beside it (as
[`public_settings`][prmsynth.publish._card.public_settings] and
[`public_config`][prmsynth.publish._card.public_config] show them: no server,
no local path, no credential).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from prmsynth._errors import is_secret_name, scrub_secrets
from prmsynth._sources import HUB_PREFIX
from prmsynth.export._formats import load_schema

#: The tags every card carries.
TAGS = ("prmsynth", "process-reward-model", "synthetic", "math", "reasoning")

_STEP_LABELS = ("text-classification",)  # a PRM classifies each step
_GENERATION = ("text-generation",)
_PREFERENCE = ("text-generation", "reinforcement-learning")
#: What each export format trains, as the Hub's ``task_categories`` name it.
TASK_CATEGORIES = {
    "tree": _STEP_LABELS,
    "flat": _STEP_LABELS,
    "trl": _STEP_LABELS,
    "math-shepherd": _STEP_LABELS,
    "prm800k": _STEP_LABELS,
    "processbench": _STEP_LABELS,
    "sft": _GENERATION,
    "sft-trl": _GENERATION,
    "dpo": _PREFERENCE,
    "dpo-trl": _PREFERENCE,
    "dpo-step": _PREFERENCE,
    "dpo-step-trl": _PREFERENCE,
    "kto": _PREFERENCE,
    "step-dpo": _PREFERENCE,
}
#: Who wrote the texts and the labels, in the Hub's words: a model did both.
CREATORS = ("machine-generated",)

# A Hub dataset id: name or owner/name.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# How long a text, and how many items of a list, a card's sample record shows,
# and how much shorter when the record is still over the budget (characters of JSON).
_SAMPLE_CHARS = 300
_SAMPLE_ITEMS = 8
_SAMPLE_LIMITS = ((_SAMPLE_CHARS, _SAMPLE_ITEMS), (120, 3), (60, 1))
_SAMPLE_BUDGET = 4_000

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
# A server address inside a text.
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"']+", re.IGNORECASE)
# Command-line options whose value is a server address.
_SERVER_OPTIONS = ("--api-base", "--judge-api-base")
# config.yaml keys whose value names a server or a cluster of the person who ran it.
_SERVER_KEYS = ("api-base", "judge-api-base", "ray", "router-config")
# Values of those that name no machine: Ray started here, or the cluster this process is in.
_PORTABLE = {"ray": ("local", "auto")}
# config.yaml keys whose value is a local path.
_PATH_KEYS = ("seed-file", "out", "cache")

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
    the export manifest; ``features`` in the YAML form ``datasets`` reads
    (None: none describe it, ``datasets`` infers them), ``sample`` one of
    its records, ``download_size`` the bytes of its data files."""

    name: str
    splits: Mapping[str, Mapping[str, Any]]
    manifest: Mapping[str, Any]
    features: Sequence[Mapping[str, Any]] | None = None
    sample: Mapping[str, Any] | None = None
    download_size: int | None = None


def task_categories(formats: Sequence[str]) -> list[str]:
    """The Hub's ``task_categories`` of a dataset holding ``formats``.

    >>> task_categories(["trl", "dpo-trl"])
    ['text-classification', 'text-generation', 'reinforcement-learning']
    """
    return list(dict.fromkeys(task for format in formats for task in TASK_CATEGORIES[format]))


def source_datasets(run_info: Mapping[str, Any] | None) -> list[str]:
    """The Hub datasets the seed questions came from: the seed source when
    it is one (a local file or folder is no Hub dataset, and gives none).

    >>> source_datasets({"seed_file": "hf:openai/gsm8k"})
    ['openai/gsm8k']
    >>> source_datasets({"seed_file": "hf:/data/gsm8k"}), source_datasets({"seed_file": "/s.jsonl"})
    ([], [])
    """
    seed = str((run_info or {}).get("seed_file") or "")
    name = seed[len(HUB_PREFIX) :] if seed.startswith(HUB_PREFIX) else ""
    return [name] if _HUB_ID.match(name) else []


def shortened(value: Any, *, chars: int = _SAMPLE_CHARS, items: int = _SAMPLE_ITEMS) -> Any:
    """``value`` (a record) with texts over ``chars`` characters and lists
    over ``items`` items cut, each saying how much was left out.

    >>> shortened({"text": "x" * 1000})["text"][-25:]
    '... (700 more characters)'
    >>> shortened(list(range(10)))
    [0, 1, 2, 3, 4, 5, 6, 7, '... 2 more items']
    """
    if isinstance(value, str) and len(value) > chars:
        return f"{value[:chars]}... ({len(value) - chars} more characters)"
    if isinstance(value, list):
        shown = [shortened(item, chars=chars, items=items) for item in value[:items]]
        if len(value) > items:
            left = len(value) - items
            shown.append(f"... {left} more item{'s' if left > 1 else ''}")
        return shown
    if isinstance(value, Mapping):
        return {key: shortened(item, chars=chars, items=items) for key, item in value.items()}
    return value


def sample_shown(record: Mapping[str, Any], *, budget: int = _SAMPLE_BUDGET) -> Any:
    """``record`` as the card shows it: [`shortened`][prmsynth.publish._card.shortened]
    harder until its JSON fits in about ``budget`` characters (a whole tree does not).

    >>> len(json.dumps(sample_shown({"steps": ["x" * 500] * 50}, budget=200))) < 200
    True
    """
    shown: Any = record
    for chars, items in _SAMPLE_LIMITS:
        shown = shortened(record, chars=chars, items=items)
        if len(json.dumps(shown, indent=2, ensure_ascii=False)) <= budget:
            break
    return shown


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
            return {
                k: scrub(v)
                for k, v in value.items()
                if k not in _PRIVATE_KEYS and not is_secret_name(str(k))
            }
        if isinstance(value, list):
            return [scrub(item) for item in value]
        if isinstance(value, str):  # a server named inside a text (an LLM's identity)
            return _URL.sub("<server>", value)
        return value

    # Credentials of this environment, and passwords in URLs, never leave it.
    settings = scrub(scrub_secrets(dict(run_info)))
    if isinstance(settings.get("seed_file"), str):
        settings["seed_file"] = seed_label(settings["seed_file"])
    if isinstance(settings.get("command"), str):
        settings["command"] = public_command(settings["command"])
    return settings


def public_config(text: str, run_info: Mapping[str, Any] | None = None) -> tuple[str, list[str]]:
    """A run's ``config.yaml`` as it is published, and the options taken out.

    Options that name a server or a cluster (``api-base``, ``judge-api-base``,
    ``ray``, ``router-config``: a file of endpoints) are emptied and listed,
    local paths keep their last part (so ``prmsynth run --config
    config.yaml`` reads the seeds from the current folder), options named
    like a credential are left out, and credentials of this environment are
    removed from every text (``ray: local`` and ``ray: auto`` name no machine
    and stay).  A Hub seed source without ``revision`` gets the commit
    ``run.json`` pinned.  Raises ``ValueError`` for text that is no YAML
    mapping.

    >>> text = "seed-file: /home/me/seeds.jsonl\\napi-base: http://10.0.0.5/v1\\nmodel: m\\n"
    >>> shown, removed = public_config(text)
    >>> removed, "10.0.0.5" in shown, "seed-file: seeds.jsonl" in shown
    (['api-base'], False, True)
    """
    import yaml

    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"not YAML: {error}") from None
    if not isinstance(config, dict):
        raise ValueError("holds no mapping of options")
    config = {
        key: value for key, value in scrub_secrets(config).items() if not is_secret_name(str(key))
    }
    removed = []
    for key in _SERVER_KEYS:
        if config.get(key) is not None and config[key] not in _PORTABLE.get(key, ()):
            config[key] = None
            removed.append(key)
    for key in _PATH_KEYS:
        if isinstance(config.get(key), str):
            config[key] = seed_label(config[key])
    revision = (run_info or {}).get("seed_revision")
    if (
        revision
        and config.get("revision") is None
        and str(config.get("seed-file")).startswith(HUB_PREFIX)
    ):
        config["revision"] = revision
    for key, value in config.items():
        if isinstance(value, str):  # a server named inside another option's text
            config[key] = _URL.sub("<server>", value)
    header = (
        "# The options of the 'prmsynth run' that made this dataset, published with it:\n"
        "# 'prmsynth run --config config.yaml' runs it again, reading the seeds from the\n"
        "# current folder"
        + (
            f"; {', '.join(removed)} named the machines it ran on: pass your own.\n"
            if removed
            else ".\n"
        )
    )
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), removed


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


def dataset_info(config: ConfigFiles) -> dict[str, Any]:
    """One config's ``dataset_info`` entry: its features (when known), each
    split's examples and bytes (``datasets`` reads a split only with both;
    the bytes are those of its JSON Lines file), and the bytes of its files."""
    info: dict[str, Any] = {"config_name": config.name}
    if config.features is not None:
        info["features"] = [dict(feature) for feature in config.features]
    info["splits"] = [
        {"name": split, "num_bytes": entry.get("bytes", 0), "num_examples": entry["records"]}
        for split, entry in config.splits.items()
    ]
    if config.download_size is not None:
        info["download_size"] = config.download_size
        info["dataset_size"] = sum(split["num_bytes"] for split in info["splits"])
    return info


def front_matter(
    configs: Sequence[ConfigFiles],
    *,
    license: str,
    pretty_name: str,
    records: int,
    language: Sequence[str] = ("en",),
    sources: Sequence[str] = (),
) -> str:
    """The card's YAML header: license, languages, task categories, tags,
    size, source datasets, each config's files (``configs``) and its
    features and counts (``dataset_info``)."""
    import yaml

    header: dict[str, Any] = {
        "license": license,
        "pretty_name": pretty_name,
        "language": list(language),
        "task_categories": task_categories([config.name for config in configs]),
        "tags": list(TAGS),
        "size_categories": [size_category(records)],
        "annotations_creators": list(CREATORS),
        "language_creators": list(CREATORS),
    }
    if sources:
        header["source_datasets"] = list(sources)
    header["configs"] = [
        {
            "config_name": config.name,
            **({"default": True} if index == 0 else {}),
            "data_files": [
                {"split": split, "path": entry["path"]} for split, entry in config.splits.items()
            ],
        }
        for index, config in enumerate(configs)
    ]
    header["dataset_info"] = [dataset_info(config) for config in configs]
    body = yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=1_000_000)
    return f"---\n{body}---\n"


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
    language: Sequence[str] = ("en",),
    published: Sequence[str] = (),
    removed_options: Sequence[str] = (),
) -> str:
    """The whole ``README.md``: front matter, then the description.

    ``published``: the run's files uploaded beside the data (``run.json``,
    ``config.yaml``); ``removed_options``: the options
    [`public_config`][prmsynth.publish._card.public_config] emptied.
    """
    largest = max(
        (sum(entry["records"] for entry in config.splits.values()) for config in configs),
        default=0,
    )
    name = repo_id.rsplit("/", 1)[-1]
    lines = [
        front_matter(
            configs,
            license=license,
            pretty_name=name,
            records=largest,
            language=language,
            sources=source_datasets(run_info),
        )
    ]
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
        if config.sample is not None:
            split = next(iter(config.splits))
            lines += [
                f"A record of `{split}` (long texts and lists shortened here):",
                "",
                *_json_block(sample_shown(config.sample)),
                "",
            ]
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
    if published:
        described = {
            "run.json": "`run.json` (the run's settings, its seed source pinned)",
            "config.yaml": "`config.yaml` (every option the run took)",
        }
        lines += [
            "This repository holds "
            + " and ".join(described[file] for file in published if file in described)
            + " beside the data, as published: local paths by their last part, no server "
            "address, no credential.",
            "",
        ]
    lines += ["```bash"]
    if "config.yaml" in published:
        own = "".join(f" --{name} {name.upper().replace('-', '_')}" for name in removed_options)
        lines += [
            f"hf download {repo_id} {' '.join(published)} --repo-type dataset --local-dir .",
            "# with the seeds in this folder:",
            f"prmsynth run --config config.yaml{own}",
        ]
    else:
        lines += [
            "# the run's own command (paths by their last part, servers as API_BASE):",
            public_command(run_command) if run_command else "# the run command was not recorded",
        ]
    if push_command:
        lines.append(public_command(push_command))
    lines += ["```", ""]
    if "config.yaml" in published and run_command:
        lines += [f"The run's own command was `{public_command(run_command)}`.", ""]
    if removed_options:
        lines += [
            "Not published, as they named the machines the run used: "
            f"{', '.join(f'`--{option}`' for option in removed_options)}; pass your own.",
            "",
        ]
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
