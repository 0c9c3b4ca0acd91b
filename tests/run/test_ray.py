"""Runs on a Ray cluster: one local cluster for the whole test session, runs
end to end through the command line against a loopback server, a worker
killed in the middle, Ctrl-C and resume, the budget across workers."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from prmsynth import Question, RunFolder

from ..conftest import REPO_ROOT
from .test_pipeline import scripted_pipeline

requires_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed (pip install 'prmsynth[ray]' runs these tests)",
)
#: Seconds a run on the test cluster may take to get going (workers import litellm).
STARTUP = 180


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for every test here: 2 CPUs, no dashboard, no usage report."""
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _node_ip_address="127.0.0.1",
    )
    yield context.address_info["gcs_address"]
    ray.shutdown()


def write_seeds(path, count):
    path.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "problem": f"What is 2 + 3? ({i})", "final_answer": "5"})
            + "\n"
            for i in range(count)
        )
    )


def lines(path):
    """The complete lines of an appended file (a line torn by SIGKILL has no newline)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1]]


def finished_ids(out):
    """Every question id with a line: kept trees, and skipped (not failed) questions."""
    kept = [row["question_id"] for row in lines(out / "trees.jsonl")]
    skipped = [row["question_id"] for row in lines(out / "skipped.jsonl")]
    return kept + skipped


def wait_for(condition, what, timeout=STARTUP, process=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended (status {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def start_run(argv, *, stderr, env_extra=None):
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-local0123456789",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        **(env_extra or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "prmsynth", "run", *argv],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env=env,
        cwd=REPO_ROOT,
    )


def run_workers(ray):
    """The prmsynth workers alive on the cluster, by name: (namespace, name)."""
    return sorted(
        (entry["namespace"], entry["name"])
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["name"].startswith("prmsynth-") and "-worker-" in entry["name"]
    )


class EveryNthFails:
    """A server fault rule: every ``n``-th request of several samples gets a 500
    (the one-sample check before the run always passes).  A request that failed
    once passes when it is sent again: a fixed period would otherwise line up
    with the retries' backoff and fail one request on every try."""

    def __init__(self, n):
        self.n, self.count, self.lock = n, 0, threading.Lock()
        self.failed = set()

    def __call__(self, body):
        if int(body.get("n") or 1) < 2:
            return None
        key = json.dumps(body, sort_keys=True)
        with self.lock:
            if key in self.failed:
                return None
            self.count += 1
            if self.count % self.n:
                return None
            self.failed.add(key)
            return "server_error"


@requires_ray
def test_a_killed_worker_loses_no_question_and_worker_logs_reach_the_log_file(
    ray_cluster, tmp_path
):
    import ray

    from prmsynth.testing import FakeOpenAIServer

    from ..verify.test_critic import planted_responder

    seeds, out, log_file = tmp_path / "seeds.jsonl", tmp_path / "out", tmp_path / "run.log"
    count = 40
    write_seeds(seeds, count)
    faults = EveryNthFails(7)
    with FakeOpenAIServer(
        responder=planted_responder, latency=0.15, fault_rule=faults, keep_bodies=False
    ) as server:
        argv = [str(seeds), "--out", str(out), "--model", "openai/fake", "--api-base", server.url]
        argv += ["--screen-rollouts", "4", "--concurrency", "2", "--log-file", str(log_file)]
        with open(tmp_path / "stderr.txt", "w") as stderr:
            process = start_run([*argv, "--ray", ray_cluster], stderr=stderr)
            try:
                wait_for(lambda: len(finished_ids(out)) >= 3, "3 questions", process=process)
                namespace, name = run_workers(ray)[0]
                pid = ray.get(ray.get_actor(name, namespace=namespace).ready.remote(), timeout=60)
                done_at_kill = len(finished_ids(out))
                os.kill(pid, signal.SIGKILL)
                assert process.wait(timeout=STARTUP) == 0
            finally:
                if process.poll() is None:
                    process.kill()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert f"Ray worker {name} is gone" in stderr
    assert done_at_kill < count  # killed mid-run
    ids = finished_ids(out)
    assert sorted(ids) == sorted(f"q{i}" for i in range(count))  # each exactly once
    summary = json.loads((out / "summary.json").read_text())
    failed = [row for row in lines(out / "skipped.jsonl") if row.get("status") == "failed"]
    assert summary["complete"] is True and summary["questions_done"] == count, (summary, failed)
    # The workers' retries (logged in their processes) are in the driver's log file.
    log = log_file.read_text()
    assert faults.count >= 7
    assert "-worker-" in log and "retrying in" in log
    # Every worker of the run ended with it.
    wait_for(lambda: run_workers(ray) == [], "the workers to end", 60)


@requires_ray
def test_ctrl_c_and_a_killed_driver_stop_the_workers_and_the_run_resumes_each_question_once(
    ray_cluster, tmp_path
):
    import ray

    from prmsynth.testing import FakeOpenAIServer

    from ..verify.test_critic import planted_responder

    seeds, out = tmp_path / "seeds.jsonl", tmp_path / "out"
    count = 24
    write_seeds(seeds, count)
    with FakeOpenAIServer(responder=planted_responder, latency=0.1, keep_bodies=False) as server:
        argv = [str(seeds), "--out", str(out), "--model", "openai/fake", "--api-base", server.url]
        argv += ["--screen-rollouts", "4", "--concurrency", "2", "--ray", ray_cluster]
        with open(tmp_path / "stderr.txt", "w") as stderr:
            process = start_run(argv, stderr=stderr)
            try:
                wait_for(lambda: len(finished_ids(out)) >= 2, "2 questions", process=process)
                workers = run_workers(ray)
                assert workers
                process.send_signal(signal.SIGINT)
                assert process.wait(timeout=120) == 130
            finally:
                if process.poll() is None:
                    process.kill()
        stderr = (tmp_path / "stderr.txt").read_text()
        assert "interrupted" in stderr and f"prmsynth run --config {out}/config.yaml" in stderr
        done_before = finished_ids(out)
        assert len(done_before) < count
        assert len(set(done_before)) == len(done_before)
        wait_for(lambda: not set(run_workers(ray)) & set(workers), "the workers to end", 60)
        # The same command resumes (on the same cluster, from config.yaml); SIGKILL of
        # its driver ends its workers too, and the command resumes again.
        resume = ["--config", str(out / "config.yaml")]
        resumed = start_run(resume, stderr=subprocess.DEVNULL)
        try:
            wait_for(
                lambda: len(finished_ids(out)) > len(done_before),
                "one more question",
                process=resumed,
            )
            workers = run_workers(ray)
            resumed.kill()
            resumed.wait(timeout=60)
        finally:
            if resumed.poll() is None:
                resumed.kill()
        done_before = finished_ids(out)
        assert len(set(done_before)) == len(done_before)
        wait_for(lambda: not set(run_workers(ray)) & set(workers), "the workers to end", 60)
        assert start_run(resume, stderr=subprocess.DEVNULL).wait(timeout=STARTUP) == 0
    assert sorted(finished_ids(out)) == sorted(f"q{i}" for i in range(count))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["questions_resumed"] == len(done_before)


@requires_ray
def test_the_budget_holds_across_workers_and_a_resumed_run_finishes_it(ray_cluster, tmp_path):
    from prmsynth import RayExecutor

    questions = [
        Question(id=f"q{i}", text=f"Planted question {i}", reference_answer="5") for i in range(30)
    ]
    info = {"model": "fake"}
    executor = RayExecutor(workers=2)
    folder = RunFolder(tmp_path)
    summary = folder.run(
        scripted_pipeline(concurrency=3),
        questions,
        run_info=info,
        max_completions=250,
        executor=executor,
    )
    # Hard across both workers: no request past the limit was sent.
    assert summary["stopped_by"] == "max_completions" and summary["completions"] <= 250
    assert 0 < summary["questions_done"] < 30
    first = finished_ids(tmp_path)
    assert len(set(first)) == len(first)
    summary = folder.run(
        scripted_pipeline(concurrency=3), questions, run_info=info, executor=executor
    )
    assert summary["complete"] is True
    assert sorted(finished_ids(tmp_path)) == sorted(q.id for q in questions)


@requires_ray
def test_a_cost_budget_sends_one_request_until_a_price_is_known_across_workers(ray_cluster):
    import asyncio

    import ray

    from prmsynth.run._budget import Budget
    from prmsynth.run._ray import _BudgetKeeper

    keeper = (
        ray.remote(_BudgetKeeper)
        .options(num_cpus=0, max_concurrency=100)
        .remote(Budget(max_cost=0.05), 0, 0.0)
    )

    async def request(worker):
        reserved, value = await keeper.acquire.remote(worker, 4)
        if not reserved:
            return 0
        await asyncio.sleep(0.05)  # in flight, its price unknown until it returns
        await keeper.settle.remote(worker, 4, value, 0.04)
        return 1

    async def sixteen_workers():
        return sum(await asyncio.gather(*(request(f"w{i}") for i in range(16))))

    try:
        assert asyncio.run(sixteen_workers()) == 1  # the rest wait for a price, then stop
        assert ray.get(keeper.snapshot.remote())["spent_cost"] <= 0.05
    finally:
        ray.kill(keeper)


@requires_ray
def test_a_pipeline_ships_to_workers_with_its_cache_opened_there(ray_cluster, tmp_path):
    import asyncio

    import ray

    from prmsynth import CachedLLM, CompletionCache
    from prmsynth.run._ray import _register_serializers
    from prmsynth.testing import ScriptedLLM

    _register_serializers(ray)
    with CompletionCache(tmp_path / "cache.sqlite") as cache:
        llm = CachedLLM(llm=ScriptedLLM(lambda request: "4"), cache=cache, model="m")

        @ray.remote
        def ask(llm):
            response = asyncio.run(llm.complete([{"role": "user", "content": "2+2"}], n=2, seed=1))
            return [completion.text for completion in response.completions], str(llm.cache.path)

        texts, path = ray.get(ask.remote(llm), timeout=STARTUP)
        assert texts == ["4", "4"] and path == str(tmp_path / "cache.sqlite")
        assert len(cache) == 2  # the worker stored them in the run's cache file


def test_ray_is_imported_only_when_asked_for(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        import prmsynth
        from prmsynth import RayExecutor, RunFolder, Question
        from prmsynth.cli import main
        from tests.test_pipeline import scripted_pipeline
        try:
            main(["run", "--help"])
        except SystemExit:
            pass
        RunFolder({str(tmp_path)!r}).run(
            scripted_pipeline(), [Question(id="q", text="Planted question", reference_answer="5")]
        )
        assert "ray" not in sys.modules, "ray was imported"
        print("ok")
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().endswith("ok")


def test_without_ray_the_option_says_how_to_install_it_and_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    from prmsynth.cli import main
    from prmsynth.run import _ray
    from prmsynth.testing import FakeOpenAIServer

    from ..verify.test_critic import planted_responder

    monkeypatch.setattr(_ray, "ray_installed", lambda: False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    seeds, out = tmp_path / "seeds.jsonl", tmp_path / "out"
    write_seeds(seeds, 2)
    with FakeOpenAIServer(responder=planted_responder) as server:
        argv = ["run", str(seeds), "--out", str(out), "--model", "openai/fake"]
        assert main([*argv, "--api-base", server.url, "--ray", "auto"]) == 2
    assert "pip install 'prmsynth[ray]'" in capsys.readouterr().err
    assert not (out / "run.json").exists() and not (out / "trees.jsonl").exists()


def test_a_router_llm_travels_to_another_process_and_spreads_its_requests_there(tmp_path):
    import asyncio
    import pickle

    from prmsynth import RouterLLM
    from prmsynth.testing import FakeOpenAIServer

    from ..llm.test_router import FAST, prompt, write_yaml_config

    with (
        FakeOpenAIServer(responder=lambda r: "from A") as a,
        FakeOpenAIServer(responder=lambda r: "from B") as b,
    ):
        llm = RouterLLM.from_config(write_yaml_config(tmp_path / "router.yaml", [a, b]), **FAST)
        copy = pickle.loads(pickle.dumps(llm))  # what a Ray worker gets (cloudpickle)
        assert copy.router is not llm.router and copy.model == llm.model
        assert copy.max_attempts == llm.max_attempts and copy.deployments == llm.deployments

        async def many():
            return await asyncio.gather(*(copy.complete(prompt(i), n=1) for i in range(20)))

        texts = {c.text for r in asyncio.run(many()) for c in r.completions}
    assert texts == {"from A", "from B"}


@requires_ray
def test_a_wrong_cluster_address_is_bad_input_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    import socket

    from prmsynth.cli import main
    from prmsynth.testing import FakeOpenAIServer

    from ..verify.test_critic import planted_responder

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    seeds, out = tmp_path / "seeds.jsonl", tmp_path / "out"
    write_seeds(seeds, 2)
    with FakeOpenAIServer(responder=planted_responder) as server:
        argv = ["run", str(seeds), "--out", str(out), "--model", "openai/fake"]
        assert main([*argv, "--api-base", server.url, "--ray", address]) == 2
    assert f"no Ray cluster answers at {address}" in capsys.readouterr().err
    assert not (out / "run.json").exists() and not (out / "trees.jsonl").exists()


@requires_ray
def test_evolution_runs_in_a_worker_and_its_questions_are_searched_on_the_cluster(
    ray_cluster, tmp_path
):
    from prmsynth import EvolutionSettings, RayExecutor, load_questions

    from ..evolve.test_evolve import HARDER, SEED, boxed, evolving_pipeline, is_answer_request

    evolved_in = tmp_path / "evolved-in"

    def script(request):
        if is_answer_request(request):
            return boxed("11")
        if "Rewrite" in request.prompt or "rewrite" in request.prompt:
            evolved_in.write_text(str(os.getpid()))
            return HARDER
        return boxed("7")

    from prmsynth.verify._math import MathEquivalence

    settings = EvolutionSettings(n_answer_samples=2)
    out = tmp_path / "out"
    with MathEquivalence() as equivalence:
        summary = RunFolder(out).run(
            evolving_pipeline(script, equivalence, settings),
            [SEED],
            run_info={"evolution": settings.to_dict()},
            executor=RayExecutor(workers=2),  # every CPU of the cluster: evolution needs none
        )
    assert [q.id for q in load_questions(out / "evolved.jsonl")] == ["s1", "s1.r1.0"]
    assert summary["complete"] is True and summary["questions_total"] == 2
    assert int(evolved_in.read_text()) != os.getpid()  # not in this process
