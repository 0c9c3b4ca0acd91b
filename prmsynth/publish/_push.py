"""``push``: a run folder's exports as a Hugging Face Hub dataset.

Each format becomes one config of the dataset, its records split into
train and validation by question (the export's own split), every record
checked against the format's schema by the export.  The folder that is
uploaded is assembled first, with the dataset card; a dry run stops there.
The upload goes through ``huggingface_hub`` (the ``hf`` extra), whose token
comes from ``HF_TOKEN`` or ``hf auth login``: prmsynth never reads, prints
or stores it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from prmsynth._errors import ExportError, InputError, PublishError, storage_error
from prmsynth._io import atomic_file, clean_leftovers, hidden_name, write_json
from prmsynth._sources import import_optional
from prmsynth._version import __version__
from prmsynth.export._formats import (
    FORMATS,
    ExportSettings,
    check_format_options,
    export_file,
    load_schema,
    manifest_path,
)
from prmsynth.publish._card import ConfigFiles, dataset_card, public_config, public_settings
from prmsynth.publish._features import Unrepresentable, features_from_schema
from prmsynth.run._folder import SETTINGS_FILE, SUMMARY_FILE

#: The run's ``config.yaml`` (every option it took), published beside ``run.json``.
CONFIG_FILE = "config.yaml"

#: The formats ``push`` publishes unless told otherwise: a PRM, a Math-Shepherd
#: and a DPO layout.
DEFAULT_FORMATS = ("trl", "math-shepherd", "dpo-trl")
#: The share of questions ``push`` puts in the validation split by default.
DEFAULT_VALIDATION_FRACTION = 0.1

# What the Hub accepts as a repository name: owner/name.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
# What the Hub accepts as a card's language: an ISO 639-1, 639-2 or 639-3 code, or a word.
_LANGUAGE = re.compile(r"^([a-z]{2,3}|code|multilingual)$")


@attrs.frozen(kw_only=True)
class PushReport:
    """What [`push`][prmsynth.push] did.

    ``folder``: the files as uploaded (None once a temporary folder is
    removed); ``url``: the dataset's page (None for a dry run); ``records``:
    the records per config and split; ``left_out``: formats with no record.
    """

    repo_id: str
    folder: Path | None
    url: str | None
    records: dict[str, dict[str, int]]
    left_out: tuple[str, ...] = ()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(path, f"cannot read: {error}") from None


def _check_empty(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(folder, "must be an empty folder (or not exist yet)")


@contextlib.contextmanager
def _staged(folder: Path) -> Iterator[Path]:
    """A hidden staging folder beside ``folder`` to assemble in, renamed to
    ``folder`` when the block ends without an error and removed otherwise:
    ``folder`` is whole or absent, and a retry finds it as empty as before.
    One a killed push left is removed by the next push beside it."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(folder.parent)
        staging = folder.parent / hidden_name(folder.name, "staging")
        staging.mkdir()
    except OSError as error:
        raise (storage_error(error, folder) or error) from None
    try:
        yield staging
        try:
            if folder.is_dir():
                folder.rmdir()  # empty, as checked
            os.replace(staging, folder)
        except OSError as error:
            raise (storage_error(error, folder) or error) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _export_config(trees: Path, format: str, folder: Path, settings: ExportSettings) -> ConfigFiles:
    """Export one format into ``folder/FORMAT/``; the splits with records."""
    target = folder / format
    target.mkdir()
    out = target / f"{format}.jsonl"
    manifest = export_file(trees, format, out, settings)
    # The manifest travels with the data; where the trees were on this machine does not.
    manifest["source_files"] = [trees.name]
    write_json(manifest_path(out), manifest)
    splits = {}
    for part, entry in manifest["files"].items():
        if entry["records"]:
            # Without a validation fraction the export's one file is the train split.
            splits["train" if part == "all" else part] = {
                **entry,
                "path": f"{format}/{entry['path']}",
            }
        else:  # datasets refuses a split with no rows
            (target / entry["path"]).unlink()
    if not splits:
        return ConfigFiles(name=format, splits=splits, manifest=manifest)
    files = [folder / entry["path"] for entry in splits.values()]
    for entry, path in zip(splits.values(), files, strict=True):
        entry["bytes"] = path.stat().st_size
    with contextlib.closing(_records(files)) as records:
        sample = next(records)
    schema = load_schema(format)
    try:
        features_from_schema(schema)  # a recursive tree fails here, before reading records
        # The records decide a column the schema gives several types (labels: bool or float).
        features = features_from_schema(schema, _records(files))
    except Unrepresentable:
        features = None  # datasets infers them from the records
    return ConfigFiles(
        name=format,
        splits=splits,
        manifest=manifest,
        features=features,
        sample=sample,
        download_size=sum(entry["bytes"] for entry in splits.values()),
    )


def _records(files: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for path in files:
        with path.open(encoding="utf-8") as lines:
            yield from map(json.loads, lines)


def _publish_run_files(run_dir: Path, staging: Path) -> tuple[list[str], list[str]]:
    """Copy the run's ``run.json`` and ``config.yaml`` (those it has) into
    ``staging`` as a card shows them; the names copied, and the options of
    ``config.yaml`` emptied for naming a machine."""
    published, removed = [], []
    run_info = _read_json(run_dir / SETTINGS_FILE)
    if run_info is not None:
        write_json(staging / SETTINGS_FILE, public_settings(run_info))
        published.append(SETTINGS_FILE)
    config = run_dir / CONFIG_FILE
    if config.is_file():
        try:
            text, removed = public_config(config.read_text(encoding="utf-8"), run_info)
        except (OSError, ValueError) as error:  # public_config's for bad YAML too
            raise InputError(config, f"cannot read: {error}") from None
        with atomic_file(staging / CONFIG_FILE) as handle:
            handle.write(text)
        published.append(CONFIG_FILE)
    return published, removed


def prepare_push_folder(
    run_dir: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    repo_id: str,
    formats: Sequence[str] = DEFAULT_FORMATS,
    settings: ExportSettings | None = None,
    license: str = "unknown",
    command: str | None = None,
    language: Sequence[str] = ("en",),
) -> PushReport:
    """Write what [`push`][prmsynth.push] uploads into the empty ``folder``:
    one sub-folder per format with its splits and export manifest, the run's
    ``run.json`` and ``config.yaml`` as the card shows them (no server, no
    local path, no credential), and the dataset card ``README.md``, whose
    ``language`` is ``language`` (ISO 639 codes).  Nothing leaves the
    machine.  It is assembled in a hidden folder beside ``folder`` and
    renamed into place when complete, so a failure leaves ``folder`` as it
    was.

    ``settings`` default to [`ExportSettings`][prmsynth.ExportSettings] with a
    validation fraction of ``DEFAULT_VALIDATION_FRACTION``; ``command`` is the
    push command the card shows beside the run's own.  Raises
    [`InputError`][prmsynth.InputError] for a folder that is no run, an
    unknown format, a bad repository id or settings a format refuses (soft
    labels), and [`ExportError`][prmsynth.ExportError] when a format cannot
    honour the settings (balance, consensus) or a record fails its schema.
    """

    run_dir, folder = Path(run_dir), Path(folder)
    if not _REPO_ID.match(repo_id):
        raise InputError(repo_id, "expected a Hub repository id such as user/name")
    language = [language] if isinstance(language, str) else list(language)
    bad = [code for code in language if not _LANGUAGE.match(code)]
    if bad or not language:
        raise InputError(
            "--language",
            f"expected ISO 639 codes such as en or de (or code, multilingual), got {bad or 'none'}",
        )
    unknown = [format for format in formats if format not in FORMATS]
    if unknown or not formats:
        raise InputError(
            "--formats", f"unknown format(s) {unknown}; choose from {', '.join(FORMATS)}"
        )
    trees = run_dir / "trees.jsonl"
    if not trees.is_file():
        raise InputError(run_dir, "holds no trees.jsonl: not a prmsynth run folder")
    if settings is None:
        settings = ExportSettings(validation_fraction=DEFAULT_VALIDATION_FRACTION)
    for format in formats:
        # Before anything is written: an option one format refuses stops the push.
        check_format_options(format, settings)
    _check_empty(folder)
    configs, left_out = [], []
    with _staged(folder) as staging:
        for format in dict.fromkeys(formats):
            config = _export_config(trees, format, staging, settings)
            if config.splits:
                configs.append(config)
            else:
                shutil.rmtree(staging / format)
                left_out.append(format)
        if not configs:
            raise ExportError(f"nothing to publish: no record in any of {', '.join(formats)}")
        published, removed = _publish_run_files(run_dir, staging)
        card = dataset_card(
            configs,
            repo_id=repo_id,
            run_info=_read_json(run_dir / SETTINGS_FILE),
            summary=_read_json(run_dir / SUMMARY_FILE),
            license=license,
            push_command=command,
            version=__version__,
            language=language,
            published=published,
            removed_options=removed,
        )
        with atomic_file(staging / "README.md") as handle:
            handle.write(card)
    return PushReport(
        repo_id=repo_id,
        folder=folder,
        url=None,
        records={
            config.name: {split: entry["records"] for split, entry in config.splits.items()}
            for config in configs
        },
        left_out=tuple(left_out),
    )


def upload_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    endpoint: str | None = None,
    commit_message: str = "Upload with prmsynth",
) -> str:
    """Create the dataset repository ``repo_id`` if it does not exist (with
    ``private``; an existing one keeps its visibility) and upload ``folder``
    in one commit; return the dataset's URL.

    ``endpoint`` defaults to ``HF_ENDPOINT`` or the Hub.  Raises
    [`InputError`][prmsynth.InputError] without a token or ``huggingface_hub``,
    [`PublishError`][prmsynth.PublishError] when the Hub refuses or cannot be reached.
    """
    hub = import_optional("huggingface_hub", repo_id, "publishing to the Hub")
    if not hub.get_token():
        raise InputError(
            repo_id, "no Hugging Face token: set HF_TOKEN or run 'hf auth login' first"
        )
    # huggingface_hub reads HF_ENDPOINT once, at import; read it when the upload starts.
    api = hub.HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None)
    try:
        repo = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="dataset",
            commit_message=commit_message,
        )
    except Exception as error:  # HTTP errors, a refused card, no connection, ...
        raise PublishError(f"{repo_id}: upload failed: {type(error).__name__}: {error}") from error
    return str(repo)


def push(
    run_dir: str | os.PathLike,
    repo_id: str,
    *,
    formats: Sequence[str] = DEFAULT_FORMATS,
    settings: ExportSettings | None = None,
    private: bool = False,
    dry_run: bool = False,
    folder: str | os.PathLike | None = None,
    license: str = "unknown",
    command: str | None = None,
    endpoint: str | None = None,
    language: Sequence[str] = ("en",),
) -> PushReport:
    """Publish a run folder's exports as the Hub dataset ``repo_id``.

    Each of ``formats`` becomes one config with its train and validation
    splits (by question), exported with ``settings`` as
    [`export_file`][prmsynth.export_file] does, beside a dataset card
    (configs with their features and counts, ``language``, task categories,
    the seed dataset, one record per config, the run's settings, the method
    and its citations, and the commands that reproduce the data from the
    ``run.json`` and ``config.yaml`` uploaded with it).  The upload is
    assembled in ``folder`` (default: a temporary folder, removed after the upload) by
    ``prepare_push_folder``; with ``dry_run`` nothing is uploaded and the
    folder stays (a temporary one included).  The token comes from
    ``HF_TOKEN`` or ``hf auth login`` and is never printed or written.

    >>> report = push("no-such-run", "me/data", dry_run=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    prmsynth._errors.InputError: no-such-run: holds no trees.jsonl: not a prmsynth run folder
    """
    temporary = folder is None
    folder = Path(tempfile.mkdtemp(prefix="prmsynth-push-") if temporary else folder)
    try:
        report = prepare_push_folder(
            run_dir,
            folder,
            repo_id=repo_id,
            formats=formats,
            settings=settings,
            license=license,
            command=command,
            language=language,
        )
        if dry_run:
            return report
        from prmsynth._version import __version__

        url = upload_folder(
            folder,
            repo_id,
            private=private,
            endpoint=endpoint,
            commit_message=f"prmsynth {__version__}: {', '.join(report.records)}",
        )
    except BaseException:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if temporary:
        shutil.rmtree(folder, ignore_errors=True)
    return attrs.evolve(report, url=url, folder=None if temporary else folder)
