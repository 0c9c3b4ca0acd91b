"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s examples``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Unit, property, doctest and local-model integration tests (in the current environment)."""
    session.run("python", "-m", "pip", "install", "-q", "-e", ".[test,local]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Static checks with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "prmsynth", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session(python=False)
def examples(session: nox.Session) -> None:
    """Run every example script (they run offline)."""
    import pathlib

    session.run("python", "-m", "pip", "install", "-q", "-e", ".[local]")
    for script in sorted(pathlib.Path("examples").glob("*.py")):
        session.run("python", str(script))
