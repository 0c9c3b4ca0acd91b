"""Every ```python block of the docs and the README runs, offline, on public names only.

Each block runs in a fresh namespace, in a temporary folder holding what the
docs assume a user has: ``seeds.jsonl`` (a copy of ``examples/seeds.jsonl``),
``out/`` (a run folder written by ``prmsynth run``) and ``data/``.

Nothing leaves the machine.  A `FakeOpenAIServer` on 127.0.0.1 plays every
model: ``openai/...`` models reach it through ``OPENAI_API_BASE`` (the
environment variable a user would set for an OpenAI-compatible gateway), and
the local vLLM server the tutorial starts at ``LOCAL_SERVER`` is the fake
server's address.  Any other connection, or a name lookup of another host,
fails the test, and the embedded local model is made unavailable, so no
snippet can fall back to it.

A block that cannot run here (it trains a model with another project's
trainer and weights from the Hub) is marked by an HTML comment on the line
before its fence, invisible in the rendered page:
``<!-- docs-test: skip (REASON) -->``.  It is still compiled and checked for
private imports, and skipped with its reason.  A block that runs wherever
some optional packages are installed says which, the same way:
``<!-- docs-test: needs trl.experimental.prm gguf -->``; it runs when every
one of them can be imported and is skipped, naming the missing ones, otherwise.
"""

from __future__ import annotations

import ast
import importlib.util
import ipaddress
import json
import re
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import prmsynth
from prmsynth.cli import main
from prmsynth.testing import FakeOpenAIServer, FakeRequest

from .conftest import REPO_ROOT

DOC_FILES = [*sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "README.md"]
EXAMPLE_FILES = sorted((REPO_ROOT / "examples").glob("*.py"))
SEED_FILE = REPO_ROOT / "examples" / "seeds.jsonl"

#: Where the docs' local vLLM server listens; the fake server stands in for it.
LOCAL_SERVER = "http://127.0.0.1:8000/v1"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_SKIP = re.compile(r"^\s*<!-- docs-test: skip \((?P<reason>.+)\) -->\s*$")
_NEEDS = re.compile(r"^\s*<!-- docs-test: needs (?P<modules>[\w. ]+?) -->\s*$")


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # of the opening fence, from 1
    source: str
    skip: str | None = None  # why the tests do not run it (a docs-test: skip comment)
    needs: tuple[str, ...] = ()  # modules it runs with (a docs-test: needs comment)

    @property
    def name(self) -> str:
        return f"{self.path.name}:{self.line}"

    def code(self) -> object:
        # Padding keeps tracebacks pointing at the Markdown file's own lines.
        return compile("\n" * self.line + self.source, str(self.path), "exec")


def python_blocks(path: Path) -> list[Snippet]:
    """The fenced ```python blocks of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    snippets = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = (opening["info"].split() or [""])[0].lower()
        end = index + 1
        while end < len(lines):
            closing = _FENCE.match(lines[end])
            if closing and closing["fence"].startswith(fence) and not closing["info"].strip():
                break
            end += 1
        if language in ("python", "py"):
            body = [line.removeprefix(indent) for line in lines[index + 1 : end]]
            marker = _SKIP.match(lines[index - 1]) if index else None
            skip = marker["reason"] if marker else None
            needed = _NEEDS.match(lines[index - 1]) if index else None
            needs = tuple(needed["modules"].split()) if needed else ()
            snippets.append(Snippet(path, index + 1, "\n".join(body) + "\n", skip, needs))
        index = end + 1
    return snippets


SNIPPETS = [snippet for path in DOC_FILES for snippet in python_blocks(path)]


# ---------------------------------------------------------------------------
# Only public names
# ---------------------------------------------------------------------------


def _private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def private_imports(source: str, filename: str) -> list[str]:
    """Every import of a private module or name (a dotted component starting with ``_``)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _private(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if _private(node.module or ""):
                found.append(module)
            elif (node.module or "").split(".")[0] == "prmsynth":
                found += [f"{module}.{alias.name}" for alias in node.names if _private(alias.name)]
        elif isinstance(node, ast.Attribute):  # prmsynth.view._html.write_html
            parts = [node.attr]
            value = node.value
            while isinstance(value, ast.Attribute):
                parts.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id == "prmsynth":
                dotted = ".".join(["prmsynth", *reversed(parts)])
                if _private(dotted):
                    found.append(dotted)
    return sorted(set(found))


PUBLIC_IMPORT_CASES = [
    *[pytest.param(snippet.source, snippet.name, id=snippet.name) for snippet in SNIPPETS],
    *[
        pytest.param(path.read_text(encoding="utf-8"), path.name, id=f"examples/{path.name}")
        for path in EXAMPLE_FILES
    ],
]


@pytest.mark.parametrize(("source", "filename"), PUBLIC_IMPORT_CASES)
def test_imports_only_public_names(source, filename):
    assert private_imports(source, filename) == [], (
        f"{filename} imports private modules; import the name from prmsynth instead"
    )


def test_the_private_import_check_sees_private_imports():
    source = (
        "import prmsynth\n"
        "from prmsynth.view._html import write_html\n"
        "import prmsynth._run as run\n"
        "from prmsynth.view import _stats\n"
        "from prmsynth import Pipeline, __version__\n"
        "from prmsynth.testing import ScriptedLLM\n"
        "prmsynth.view._html.render_html\n"
    )
    assert private_imports(source, "x.py") == [
        "prmsynth._run",
        "prmsynth.view._html",
        "prmsynth.view._html.render_html",
        "prmsynth.view._stats",
    ]


def test_the_docs_have_snippets():
    assert len(SNIPPETS) >= 15
    assert len({snippet.name for snippet in SNIPPETS}) == len(SNIPPETS)
    assert any(snippet.path.name == "README.md" for snippet in SNIPPETS)
    # skipping is the exception: most snippets run
    assert sum(snippet.skip is None for snippet in SNIPPETS) > 2 * sum(
        snippet.skip is not None for snippet in SNIPPETS
    )


def test_a_needs_comment_before_the_fence_names_the_modules_a_snippet_runs_with(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: needs trl.experimental.prm gguf -->\n```python\nx = 1\n```\n")
    [snippet] = python_blocks(page)
    assert (snippet.needs, snippet.skip) == (("trl.experimental.prm", "gguf"), None)
    assert missing_modules(("json", "no_such_module.sub")) == ["no_such_module.sub"]


def missing_modules(names: tuple[str, ...]) -> list[str]:
    """The modules of ``names`` that cannot be imported here."""
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def test_a_skip_comment_before_the_fence_marks_a_snippet_skipped(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: skip (needs a GPU) -->\n```python\nimport trl\n```\n\n"
        "```python\nx = 1\n```\n"
    )
    assert [(snippet.source, snippet.skip) for snippet in python_blocks(page)] == [
        ("import trl\n", "needs a GPU"),
        ("x = 1\n", None),
    ]


# ---------------------------------------------------------------------------
# Offline: a guard on sockets, and a fake server for every model
# ---------------------------------------------------------------------------


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).split("%")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NetworkGuard:
    """Refuses connections and name lookups beyond the loopback interface, and keeps them."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def check(self, host: object) -> None:
        if not _is_loopback(host):
            self.attempts.append(str(host))
            raise OSError(f"no network in the docs tests (tried to reach {host!r})")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
        getaddrinfo = socket.getaddrinfo

        def address_host(address: object) -> object:
            return address[0] if isinstance(address, tuple) else None  # None: a Unix socket

        def guarded_connect(sock, address):
            self.check(address_host(address))
            return connect(sock, address)

        def guarded_connect_ex(sock, address):
            self.check(address_host(address))
            return connect_ex(sock, address)

        def guarded_getaddrinfo(host, *args, **kwargs):
            self.check(host)
            return getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", guarded_connect)
        monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
        monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
        # The embedded model is never an option: a snippet that falls back to it fails.
        monkeypatch.setattr("prmsynth.llm._local.GGUF_PACKAGE", "no_such_gguf_package")


def _answers() -> dict[str, str]:
    rows = [json.loads(line) for line in SEED_FILE.read_text().splitlines() if line.strip()]
    return {row["problem"]: str(row["final_answer"]) for row in rows}


ANSWERS = _answers()


def responder(request: FakeRequest) -> str:
    """Half the whole solutions go wrong at a planted step; continuations follow their prefix."""
    prompt = request.prompt
    answer = next((answer for problem, answer in ANSWERS.items() if problem in prompt), None)
    if answer is None:  # a prompt about no seed question (an evolver's, say)
        return "Let me think.\n\nThe answer is \\boxed{1}."
    wrong = str(int(answer) + 1)
    if "Here are the first steps" in prompt:
        if "BAD" in prompt:
            return f"So the result is {wrong}.\n\nThe answer is \\boxed{{{wrong}}}."
        return f"So the result is {answer}.\n\nThe answer is \\boxed{{{answer}}}."
    if request.sample_index % 2 == 0:
        return f"Read the question.\n\nWork it out: {answer}.\n\nThe answer is \\boxed{{{answer}}}."
    return f"Read the question.\n\nBAD step: it is {wrong}.\n\nThe answer is \\boxed{{{wrong}}}."


def _point_models_at(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs0123456789")
    monkeypatch.setenv("OPENAI_API_BASE", server.url)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.delenv("HOSTED_VLLM_API_BASE", raising=False)


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(responder=responder, keep_bodies=False) as fake:
        yield fake


@pytest.fixture(scope="module")
def run_folder(server, tmp_path_factory):
    """A run folder, as ``prmsynth run seeds.jsonl --out out/`` writes it."""
    folder = tmp_path_factory.mktemp("docs-run")
    guard = NetworkGuard()
    with pytest.MonkeyPatch.context() as monkeypatch:
        guard.install(monkeypatch)
        _point_models_at(server, monkeypatch)
        shutil.copy(SEED_FILE, folder / "seeds.jsonl")
        argv = ["run", str(folder / "seeds.jsonl"), "--out", str(folder / "out")]
        argv += ["--model", "openai/fake", "--api-base", server.url, "--quiet"]
        assert main(argv) == 0
    assert guard.attempts == []
    assert (folder / "out" / "trees.jsonl").read_text().strip(), "the run kept no question"
    return folder / "out"


def _hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hugging Face libraries offline, as a user without network sets them: ``datasets``
    otherwise pings the Hub to count a load, even of a local file."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    if "datasets" in sys.modules:  # it read the environment when it was imported
        monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)


@pytest.fixture
def workdir(tmp_path, run_folder, server, monkeypatch):
    """A folder with what the docs assume, as the working directory, offline."""
    shutil.copy(SEED_FILE, tmp_path / "seeds.jsonl")
    shutil.copytree(run_folder, tmp_path / "out")
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    _point_models_at(server, monkeypatch)
    _hub_offline(monkeypatch)
    guard = NetworkGuard()
    guard.install(monkeypatch)
    yield guard
    assert guard.attempts == [], "a snippet tried to reach the network"


def _close(namespace: dict) -> None:
    """End the verifier worker processes a snippet's pipelines may have started."""
    for value in namespace.values():
        if isinstance(value, prmsynth.Pipeline):
            close = getattr(value.verifier, "close", None)
            if callable(close):
                close()


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda snippet: snippet.name)
def test_snippet_runs(snippet, workdir, server):
    if "plot_stats(" in snippet.source and importlib.util.find_spec("matplotlib") is None:
        pytest.skip("plot_stats needs matplotlib (the plot extra)")
    if "import datasets" in snippet.source and importlib.util.find_spec("datasets") is None:
        pytest.skip("this snippet needs datasets (the hf extra)")
    code = snippet.code()
    if snippet.skip is not None:
        pytest.skip(snippet.skip)
    missing = missing_modules(snippet.needs)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (not installed)")
    if LOCAL_SERVER in snippet.source:  # the tutorial's vLLM server is the fake one
        source = "\n" * snippet.line + snippet.source.replace(LOCAL_SERVER, server.url)
        code = compile(source, str(snippet.path), "exec")
    namespace: dict = {"__name__": "__main__"}
    try:
        exec(code, namespace)
    finally:
        _close(namespace)
