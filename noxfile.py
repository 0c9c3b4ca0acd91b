"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s examples``, ``nox -s train``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Unit, property, doctest and local-model integration tests (in the current environment)."""
    session.run("python", "-m", "pip", "install", "-q", "-e", ".[test,local]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=False)
def train(session: nox.Session) -> None:
    """The train and evaluate tests with the train extra (torch from the CPU index)."""
    session.run(
        "python",
        "-m",
        "pip",
        "install",
        "-q",
        "torch",
        "--index-url",
        "https://download.pytorch.org/whl/cpu",
    )
    session.run("python", "-m", "pip", "install", "-q", "-e", ".[test,train]")
    session.run("python", "-m", "pytest", "tests/train/test_train.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Static checks with ruff."""
    session.install("ruff>=0.6")
    paths = ("prmsynth", "tests", "benchmarks", "examples", "docs", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session(python=False)
def examples(session: nox.Session) -> None:
    """Run every example script (they run offline)."""
    import pathlib

    session.run("python", "-m", "pip", "install", "-q", "-e", ".[local]")
    for script in sorted(pathlib.Path("examples").glob("*.py")):
        session.run("python", str(script))


@nox.session(python=False)
def docs(session: nox.Session) -> None:
    """Build the documentation site; any warning is an error."""
    session.run("python", "-m", "pip", "install", "-q", "-e", ".[docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/site")
