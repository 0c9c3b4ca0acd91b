"""``prmsynth view``: the HTML viewer, its data, and the page in a real headless browser.

The browser tests drive Debian's chromium over the Chrome DevTools Protocol
(a websocket, through aiohttp): no browser is downloaded.  Where chromium is
missing and the tests run as root with apt-get, a session fixture installs
it (``apt-get install -y chromium``); otherwise they are skipped, saying
why.  Set ``PRMSYNTH_NO_BROWSER_INSTALL=1`` to never install.  The
screenshot and the page go to ``tests/artifacts/`` (or
``$PRMSYNTH_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import re
import shutil
import string
import subprocess
import sys
import time
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest

from prmsynth import (
    Question,
    ReasoningTree,
    Rollout,
    RunFolder,
    Verdict,
    read_tree_file,
    render_html,
    tree_to_dict,
    write_html,
)
from prmsynth.cli._view import add_parsers, run_view
from prmsynth.view import _html
from prmsynth.view._html import _PAGE_FIELDS, compact_question

from ..run.test_pipeline import QUESTIONS, scripted_pipeline

ARTIFACTS = Path(
    os.environ.get("PRMSYNTH_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts")
)
HOSTILE_TEXT = (
    '<img src=x onerror="window.__pwned = 1"></script><script>window.__pwned = 2</script>'
)


def view_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="prmsynth")
    add_parsers(parser.add_subparsers(dest="command"))
    return run_view(parser.parse_args(["view", *argv]))


def embedded_data(page: str) -> dict:
    start = page.index('id="prmsynth-data">') + len('id="prmsynth-data">')
    return json.loads(page[start : page.index("</script>", start)])


# -- synthetic trees ---------------------------------------------------------------------


def _rollout(rng: random.Random, correct: bool, length: int) -> Rollout:
    answer = "5" if correct else str(rng.randint(6, 99))
    text = (
        " ".join(rng.choice(WORDS) for _ in range(length)) + f" The answer is \\boxed{{{answer}}}."
    )
    return Rollout(
        text=text,
        steps=(text,),
        verdict=Verdict(status="correct" if correct else "incorrect", extracted_answer=answer),
        n_tokens=length,
        finish_reason="stop",
    )


WORDS = "so then we add multiply divide the sum of both sides gives x equals half twice".split()


def synthetic_tree(index: int, *, rollout_words: int = 12) -> ReasoningTree:
    """A search-like tree: a screened root, 2 to 4 solutions sharing a first step,
    Monte Carlo estimates on some steps (binary search), a wrong step in most."""
    rng = random.Random(index)
    tree = ReasoningTree(
        Question(
            id=f"q{index:05d}",
            text=f"Question {index}: "
            + " ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 40)))
            + "?",
            reference_answer="5",
        )
    )
    screening = [_rollout(rng, i % 2 == 0, rollout_words) for i in range(16)]
    tree.record_rollouts(tree.root, screening)
    opening = f"Let us start with question {index}."
    for branch in range(rng.randint(2, 4)):
        length = rng.randint(3, 9)
        texts = [opening] + [
            f"Step {depth} of branch {branch}: "
            + " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20)))
            for depth in range(2, length + 1)
        ]
        nodes = tree.add_steps(tree.root, texts)
        error_at = rng.randint(1, length - 1) if rng.random() < 0.7 else None
        for position, node in enumerate(nodes):
            if tree.node(node).n_rollouts or rng.random() < 0.4:
                continue  # shared, or never sampled
            wrong = error_at is not None and position >= error_at
            correct = 0 if wrong else rng.randint(1, 4)
            tree.record_rollouts(
                node,
                [_rollout(rng, i < correct, rollout_words) for i in range(4)],
            )
        tree.mark_terminal(
            nodes[-1], Verdict(status="incorrect" if error_at is not None else "correct")
        )
    return tree


def write_synthetic_trees(path: Path, count: int, **options) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for index in range(count):
            record = tree_to_dict(synthetic_tree(index, **options))
            record.update(status="kept", n_completions=16, prompt_tokens=100, cost=0.001)
            file.write(json.dumps(record, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A run folder from the scripted pipeline, with one question of hostile text."""
    folder = tmp_path_factory.mktemp("run")
    questions = [
        *QUESTIONS,
        Question(id="hostile", text=HOSTILE_TEXT + " What is 2 + 3?", reference_answer="5"),
    ]
    RunFolder(folder).run(
        scripted_pipeline(), questions, run_info={"model": "fake", "sampling": {"seed": 0}}
    )
    with open(folder / "skipped.jsonl", "a", encoding="utf-8") as file:
        file.write(
            json.dumps(
                {
                    "question_id": "too-easy",
                    "question": "What is 1 + 1?",
                    "status": "skipped",
                    "reason": "all_correct",
                    "n_correct": 16,
                    "n_rollouts": 16,
                    "n_completions": 16,
                }
            )
            + "\n"
        )
    return folder


# -- the page's data (no browser) ----------------------------------------------------------


def test_first_error_is_the_first_wrong_step_on_each_path():
    tree = ReasoningTree(Question(id="q", text="Q", reference_answer="5"))
    a, _b, c, d = tree.add_steps(tree.root, ["a", "b", "c", "d"])
    e = tree.add_step(a, "e")
    wrong = Rollout(text="x", steps=("x",), verdict=Verdict(status="incorrect"))
    right = Rollout(text="y", steps=("y",), verdict=Verdict(status="correct"))
    tree.record_rollouts(a, [right, wrong])  # 0.5
    tree.record_rollouts(c, [wrong])  # 0.0 under b, never sampled
    tree.record_rollouts(d, [wrong])  # 0.0 but below c
    tree.record_rollouts(e, [right, wrong, wrong, wrong])  # 0.25
    question = compact_question(tree_to_dict(tree))
    assert question["p"] == [[0, 0, 0]]  # a -> b -> c
    node_c = question["t"]["k"][0]["k"][0]["k"][0]
    assert (node_c["e"], node_c["w"]) == (1, 1)
    assert "e" not in node_c["k"][0] and node_c["k"][0]["w"] == 1  # d is wrong, not first
    # with a higher threshold, e (0.25) is a first error too, and a (0.5) is not
    question = compact_question(tree_to_dict(tree), first_error_threshold=0.25)
    assert question["p"] == [[0, 0, 0], [0, 1]]
    question = compact_question(tree_to_dict(tree), first_error_threshold=0.5)
    assert question["p"] == [[0]]  # everything below a wrong step is after the first error


def test_page_keeps_counts_and_excerpts_not_full_rollouts(run_folder):
    page = render_html(list(read_tree_file(run_folder / "trees.jsonl")), title="t")
    data = embedded_data(page)
    trees = [json.loads(line) for line in (run_folder / "trees.jsonl").read_text().splitlines()]
    assert [q["id"] for q in data["questions"]] == [t["question_id"] for t in trees]
    first, record = data["questions"][0], trees[0]
    root = record["reasoning_steps"]
    assert (first["c"], first["n"], first["m"]) == (root["n_correct"], root["n_rollouts"], 0.5)
    assert first["a"] == "5" and first["q"] == record["question"]
    step = first["t"]["k"][0]
    assert step["x"] == root["children"][0]["text"]
    assert (step["c"], step["n"]) == (
        root["children"][0]["n_correct"],
        root["children"][0]["n_rollouts"],
    )
    assert set(step) <= set("xvcntdwekgb")
    # the planted first error: "BAD step 2" with MC 0 under "good step 1"
    [path] = first["p"]
    node = first["t"]
    for index in path:
        node = node["k"][index]
    assert (node["x"], node["v"], node["e"]) == ("BAD step 2", 0.0, 1)


def test_json_in_the_page_cannot_close_its_script_element():
    tree = ReasoningTree(Question(id="<q>", text=HOSTILE_TEXT, reference_answer="</script>"))
    tree.add_steps(tree.root, ["<!-- a", "]]> </SCRIPT >"])
    page = render_html([tree], title="<title>")
    body = page[page.index('id="prmsynth-data">') :]
    data_text = body[: body.index("</script>")]
    assert "<" not in data_text.removeprefix('id="prmsynth-data">')
    assert embedded_data(page)["questions"][0]["q"] == HOSTILE_TEXT
    assert "<title>&lt;title&gt;</title>" in page
    assert "innerHTML" not in page and "outerHTML" not in page
    assert "http:" not in page and "https:" not in page and "//cdn" not in page


def test_view_of_a_folder_lists_skipped_questions_and_reads_the_run_threshold(run_folder, tmp_path):
    out = tmp_path / "trees.html"
    assert view_cli(str(run_folder), "--out", str(out)) == 0
    data = embedded_data(out.read_text(encoding="utf-8"))
    statuses = {q["id"]: q["s"] for q in data["questions"]}
    assert statuses["too-easy"] == "skipped" and statuses["hostile"] == "kept"
    skipped = next(q for q in data["questions"] if q["id"] == "too-easy")
    assert (skipped["t"], skipped["m"], skipped["r"], skipped["a"]) == (
        None,
        1.0,
        "all_correct",
        None,
    )
    assert data["threshold"] == 0.0  # run.json has no search settings here
    info = json.loads((run_folder / "run.json").read_text())
    (tmp_path / "run.json").write_text(
        json.dumps({**info, "search": {"first_error_threshold": 0.3}})
    )
    shutil.copy(run_folder / "trees.jsonl", tmp_path / "trees.jsonl")
    assert view_cli(str(tmp_path / "trees.jsonl"), "--out", str(out)) == 0
    assert embedded_data(out.read_text(encoding="utf-8"))["threshold"] == 0.3
    assert (
        view_cli(str(tmp_path / "trees.jsonl"), "--out", str(out), "--first-error-threshold", "0")
        == 0
    )
    assert embedded_data(out.read_text(encoding="utf-8"))["threshold"] == 0.0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"question_id": "1"}\n', "trees.jsonl:1: malformed tree record"),
        ("\n{not json\n{}\n", "trees.jsonl:2: bad JSON"),
        ("[1, 2]\n", "trees.jsonl:1: expected a JSON object"),
    ],
)
def test_bad_tree_files_exit_2_naming_the_line(tmp_path, capsys, content, expected):
    (tmp_path / "trees.jsonl").write_text(content)
    out = tmp_path / "view.html"
    assert view_cli(str(tmp_path / "trees.jsonl"), "--out", str(out)) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_bad_arguments_exit_2(tmp_path, run_folder, capsys):
    out = tmp_path / "view.html"
    assert view_cli(str(tmp_path / "missing.jsonl"), "--out", str(out)) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    assert view_cli(str(tmp_path), "--out", str(out)) == 2
    assert "holds no trees.jsonl" in capsys.readouterr().err
    trees = str(run_folder / "trees.jsonl")
    with pytest.raises(SystemExit):  # refused when parsed
        view_cli(trees, "--out", str(out), "--first-error-threshold", "1.5")
    assert "argument --first-error-threshold" in capsys.readouterr().err
    assert view_cli(trees, "--out", str(tmp_path / "no" / "such" / "view.html")) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        view_cli(trees, "--out", str(out), "--excerpt-chars", "-1")
    assert not out.exists()


def test_a_torn_last_line_is_left_out(run_folder, tmp_path):
    text = (run_folder / "trees.jsonl").read_text()
    (tmp_path / "trees.jsonl").write_text(text + text.splitlines()[0][:50])
    written = write_html(tmp_path / "trees.jsonl", tmp_path / "view.html")
    assert written["questions"] == len(text.splitlines())


def test_three_thousand_questions_make_a_page_of_reasonable_size(tmp_path, capsys):
    trees = tmp_path / "trees.jsonl"
    write_synthetic_trees(trees, 3000)
    started = time.perf_counter()
    written = write_html(trees, tmp_path / "view.html")
    seconds = time.perf_counter() - started
    assert written["questions"] == 3000
    size = written["bytes"]
    # reported, not asserted: the time depends on the machine
    with capsys.disabled():
        print(
            f"\n3,000 questions: trees.jsonl {trees.stat().st_size / 1e6:.1f} MB -> "
            f"view.html {size / 1e6:.1f} MB in {seconds:.1f} s"
        )
    assert size < trees.stat().st_size / 2
    assert size < 40e6
    data = embedded_data((tmp_path / "view.html").read_text(encoding="utf-8"))
    assert sum(1 for q in data["questions"] if q["f"]) > 1000


# -- the page's files: prmsynth/view/assets (no browser) ---------------------------------

ASSETS = resources.files("prmsynth.view").joinpath("assets")


def asset_text(name: str) -> str:
    return ASSETS.joinpath(name).read_text(encoding="utf-8")


def inline_element(page: str, start_tag: str, end_tag: str) -> str:
    start = page.index(start_tag) + len(start_tag)
    return page[start : page.index(end_tag, start)]


class _TagNesting(HTMLParser):
    """The page template's tags, checked to close in the order they open."""

    VOID = frozenset({"meta", "input", "br", "img", "link", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> at line {self.getpos()[0]}, open: {self.open}")
        else:
            self.open.pop()


def test_viewer_script_is_valid_javascript(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: viewer.js is not parsed (node --check)")
    script = tmp_path / "viewer.js"
    script.write_text(asset_text("viewer.js"), encoding="utf-8")
    done = subprocess.run(
        [node, "--check", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_style_sheet_braces_balance_and_the_template_tags_nest():
    style = re.sub(r"/\*.*?\*/", "", asset_text("viewer.css"), flags=re.S)
    depth = 0
    for character in style:
        depth += {"{": 1, "}": -1}.get(character, 0)
        assert depth >= 0, "a } closes nothing in viewer.css"
    assert depth == 0, "a { is never closed in viewer.css"
    nesting = _TagNesting()
    nesting.feed(asset_text("page.html"))
    nesting.close()
    assert nesting.problems == [] and nesting.open == []


def test_page_template_has_exactly_the_placeholders_render_html_fills():
    found = {"named": set(), "braced": set(), "escaped": set(), "invalid": set()}
    for match in string.Template.pattern.finditer(asset_text("page.html")):
        for kind, value in match.groupdict().items():
            if value is not None:
                found[kind].add(value)
    assert found["escaped"] == found["invalid"] == found["braced"] == set()
    assert found["named"] == _PAGE_FIELDS
    page = render_html([], title="t")
    assert not [field for field in _PAGE_FIELDS if f"${field}" in page]
    page = render_html([], title="$title ${csp} $$")
    assert "<title>$title ${csp} $$</title>" in page  # filled once, never rescanned


def test_page_inlines_the_assets_verbatim_and_allows_only_them_by_hash():
    page = render_html([], title="t")
    script, style = asset_text("viewer.js"), asset_text("viewer.css")
    assert inline_element(page, "<script>", "</script>") == script
    assert inline_element(page, "<style>", "</style>") == style
    assert page.count("<script") == 2 and page.count("<style") == 1  # the data, the script

    def sha256(text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"

    csp = inline_element(page, '<meta http-equiv="Content-Security-Policy" content="', '"')
    assert csp == (
        f"default-src 'none'; script-src {sha256(script)}; style-src {sha256(style)}; "
        "base-uri 'none'; form-action 'none'"
    )


def test_assets_cannot_close_their_inline_element():
    assert "</script" not in asset_text("viewer.js").lower()
    assert "<!--" not in asset_text("viewer.js")
    assert "</style" not in asset_text("viewer.css").lower()


def test_an_asset_that_would_close_its_element_is_refused(tmp_path, monkeypatch):
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "viewer.js").write_text('var s = "</SCRIPT>";\n', encoding="utf-8")
    (tmp_path / "assets" / "viewer.css").write_text("a { color: red; }\n", encoding="utf-8")
    monkeypatch.setattr(_html.resources, "files", lambda package: tmp_path)
    read = _html._asset.__wrapped__  # not the cached reader: the real assets stay cached
    assert read("viewer.css") == "a { color: red; }\n"
    with pytest.raises(RuntimeError, match=re.escape("viewer.js must not contain '</script'")):
        read("viewer.js")


# -- the page in a real browser ------------------------------------------------------------


def _install_chromium() -> str | None:
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    for attempt in range(2):
        if attempt:  # empty or stale package lists
            subprocess.run(
                ["apt-get", "update", "-q"],
                env=environment,
                capture_output=True,
                timeout=600,
                check=False,
            )
        done = subprocess.run(
            command, env=environment, capture_output=True, timeout=1200, check=False
        )
        if done.returncode == 0:
            break
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get where missing (as root)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("PRMSYNTH_NO_BROWSER_INSTALL"):
        pytest.skip("chromium is not installed and PRMSYNTH_NO_BROWSER_INSTALL is set")
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "chromium is not installed, and the tests can install it only as root with "
            "apt-get: run `apt-get install -y chromium`"
        )
    path = _install_chromium()
    if not path:
        pytest.skip("chromium is not installed and `apt-get install -y chromium` failed")
    return path


class Browser:
    """A headless chromium and one page, driven over the DevTools protocol."""

    def __init__(self, executable: str, profile: Path) -> None:
        import aiohttp

        self.loop = asyncio.new_event_loop()
        self.profile = profile
        self.log = open(profile.parent / "chromium.log", "wb")
        self.process = subprocess.Popen(
            [
                executable,
                "--headless",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={profile}",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--mute-audio",
                "--hide-scrollbars",
                "--window-size=1280,860",
                "about:blank",
            ],
            stdout=self.log,
            stderr=self.log,
        )
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.pending: dict[int, asyncio.Future] = {}
        self.next_id = 0
        self.session = None
        self.socket = None
        self.reader = None
        self.aiohttp = aiohttp
        try:
            self.run(self._connect())
        except BaseException:
            self.close()
            raise

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    async def _connect(self) -> None:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port in 60 s")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        self.session = self.aiohttp.ClientSession()
        targets = []
        while not any(t.get("type") == "page" for t in targets):
            async with self.session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json(content_type=None)
            if time.monotonic() > deadline:
                raise RuntimeError("chromium shows no page target")
            await asyncio.sleep(0.05)
        page = next(t for t in targets if t.get("type") == "page")
        self.socket = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self.reader = asyncio.ensure_future(self._read())
        for domain in ("Runtime", "Log", "Page", "Network"):
            await self.send(f"{domain}.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=860,
            deviceScaleFactor=1,
            mobile=False,
        )

    async def _read(self) -> None:
        async for message in self.socket:
            if message.type != self.aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                future = self.pending.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(RuntimeError(f"DevTools: {data['error']}"))
                    else:
                        future.set_result(data.get("result", {}))
            else:
                self._event(data.get("method"), data.get("params", {}))

    def _event(self, method: str, params: dict) -> None:
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            texts = [
                str(arg.get("value", arg.get("description"))) for arg in params.get("args", [])
            ]
            self.errors.append("console: " + " ".join(texts))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"exception: {description}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log ({entry.get('source')}): {entry.get('text')}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(params.get("request", {}).get("url", ""))

    async def send(self, method: str, **params):
        self.next_id += 1
        future = self.loop.create_future()
        self.pending[self.next_id] = future
        await self.socket.send_json({"id": self.next_id, "method": method, "params": params})
        return await asyncio.wait_for(future, 30)

    def call(self, method: str, **params):
        return self.run(self.send(method, **params))

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            self.run(asyncio.sleep(0.05))

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && document.body.dataset.ready === '1'")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) in the middle of the first match."""
        x, y = self.evaluate(
            f"""(() => {{
                const element = document.querySelector({json.dumps(selector)});
                element.scrollIntoView({{block: "center"}});
                const box = element.getBoundingClientRect();
                return [box.left + Math.min(box.width / 2, 20), box.top + box.height / 2];
            }})()"""
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type_text(self, selector: str, text: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path) -> None:
        result = self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(result["data"]))

    def close(self) -> None:
        try:
            if self.socket is not None:
                self.run(self.socket.close())
            if self.reader is not None:
                self.reader.cancel()
                self.run(asyncio.gather(self.reader, return_exceptions=True))
            if self.session is not None:
                self.run(self.session.close())
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.log.close()
            self.loop.close()


@pytest.fixture(scope="module")
def page(chromium, run_folder, tmp_path_factory):
    """The viewer of ``run_folder``, open in headless chromium."""
    pytest.importorskip("aiohttp", reason="the browser tests talk to chromium through aiohttp")
    folder = tmp_path_factory.mktemp("browser")
    html = folder / "trees.html"
    write_html(run_folder, html, title="prmsynth viewer test")
    browser = Browser(chromium, folder / "profile")
    try:
        browser.open(html.as_uri())
        browser.html = html
        yield browser
    finally:
        browser.close()


def test_page_loads_with_no_console_errors_and_no_requests(page):
    assert page.errors == []
    assert all(url.startswith("file:") for url in page.requests), page.requests
    assert page.evaluate("document.querySelectorAll('#list li').length") == 7
    assert page.evaluate("document.getElementById('count').textContent") == "7 of 7 questions"
    assert page.evaluate("document.querySelector('#detail h2').textContent").startswith(
        "Question 0"
    )


def test_a_click_expands_a_node(page):
    node = "document.querySelector('#tree > details.node')"
    assert page.evaluate(f"{node}.open") is False
    assert page.evaluate(f"{node}.querySelectorAll('.node').length") == 0  # drawn lazily
    page.click("#tree > details.node > summary")
    page.wait_for(f"{node}.open && {node}.querySelectorAll(':scope > .kids > .node').length > 0")
    texts = page.evaluate(
        f"Array.from({node}.querySelectorAll(':scope > .kids > .node > .head .text'),"
        " e => e.textContent)"
    )
    assert "BAD step 2" in texts and "good step 2" in texts
    page.click("#tree > details.node > summary")
    page.wait_for(f"!{node}.open")
    assert page.errors == []


def test_first_errors_are_marked_and_revealed(page):
    page.click("#list li:first-child")
    page.evaluate(
        "Array.from(document.querySelectorAll('#detail .toolbar button'))"
        ".find(b => b.textContent === 'Show first errors').click()"
    )
    marked = page.wait_for(
        "Array.from(document.querySelectorAll('#tree .node.first-error > .head .text'),"
        " e => e.textContent)"
    )
    assert marked == ["BAD step 2"]
    assert (
        page.evaluate(
            "getComputedStyle(document.querySelector('#tree .node.first-error .mc'))"
            ".backgroundColor"
        )
        == "rgb(182, 32, 32)"
    )  # hsl(0, 70%, 42%): red for MC 0
    assert page.errors == []


def test_search_filters_the_list_and_model_text_stays_text(page):
    page.type_text("#search", "script")
    page.wait_for("document.getElementById('count').textContent === '1 of 7 questions'")
    page.click("#list li")
    page.wait_for("document.querySelector('#detail h2').textContent.includes('hostile')")
    shown = page.evaluate("document.querySelector('#detail .question').textContent")
    assert shown == HOSTILE_TEXT + " What is 2 + 3?"
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    page.evaluate("document.getElementById('search').value = ''")
    page.type_text("#search", " ")
    page.wait_for("document.getElementById('count').textContent === '7 of 7 questions'")
    page.evaluate("document.getElementById('status').value = 'skipped'")
    page.evaluate("document.getElementById('status').dispatchEvent(new Event('change'))")
    page.wait_for("document.getElementById('count').textContent === '1 of 7 questions'")
    page.click("#list li")
    assert "No tree" in page.evaluate("document.getElementById('tree').textContent")
    assert page.errors == []


def test_screenshot_is_saved_as_an_artifact(page, tmp_path):
    page.evaluate("document.getElementById('status').value = ''")
    page.evaluate("document.getElementById('status').dispatchEvent(new Event('change'))")
    page.click("#list li:first-child")
    page.evaluate(
        "Array.from(document.querySelectorAll('#detail .toolbar button'))"
        ".find(b => b.textContent === 'Expand all').click()"
    )
    page.wait_for("document.querySelectorAll('#tree details.node:not([open])').length === 0")
    shot = tmp_path / "view.png"
    page.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "view-screenshot.png")
    shutil.copy(page.html, ARTIFACTS / "view.html")
    assert page.errors == []


def test_excerpts_are_cut_and_can_be_left_out(run_folder):
    trees = list(read_tree_file(run_folder / "trees.jsonl"))

    def excerpts(node):
        found = [node[key] for key in ("g", "b") if key in node]
        for child in node.get("k", []):
            found += excerpts(child)
        return found

    data = embedded_data(render_html(trees, title="t", excerpt_chars=10))
    found = [text for q in data["questions"] for text in excerpts(q["t"])]
    assert found and all(len(text) <= 10 for text in found)
    assert any(text.endswith("\u2026") for text in found)
    data = embedded_data(render_html(trees, title="t", excerpt_chars=0))
    assert [text for q in data["questions"] for text in excerpts(q["t"])] == []
