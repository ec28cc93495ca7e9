"""`kdistill eval` on language-model runs, teacher metrics of runs distilled from a cache, and `cache info` sizes."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cli_helpers import run_main  # noqa: E402
from kdistill import api  # noqa: E402
from kdistill.cache import build_cache  # noqa: E402
from kdistill.commands.cache import app as cache_app  # noqa: E402
from kdistill.config import DataConfig, DistillConfig, ModelConfig, OptimConfig, RunConfig, TrainerConfig  # noqa: E402
from kdistill.data import load_data  # noqa: E402
from kdistill.errors import ConfigError  # noqa: E402
from kdistill.evaluate import task_metrics  # noqa: E402
from kdistill.models import build_model, save_weights  # noqa: E402
from kdistill.results import ResultTable
from kdistill.tasks import CausalLMTask  # noqa: E402

MAX_LENGTH = 32
TEACHER = ModelConfig(name="tiny-gpt2", kwargs={"hidden": 32, "n_layer": 1, "heads": 2})
STUDENT = ModelConfig(name="tiny-gpt2", kwargs={"hidden": 16, "n_layer": 1, "heads": 2})
TRAINER = TrainerConfig(epochs=1, batch_size=8, eval_batch_size=16, accelerator="cpu", progress=False)


def write_corpus(folder: Path, records: int = 60) -> DataConfig:
    lines = []
    for i in range(records):
        if i % 3 == 0:
            lines.append({"prompt": f"def f{i}(x):", "completion": f" return x * {i}"})
        else:
            lines.append({"text": f"line {i}: " + "abcdef"[: 1 + i % 6] * (1 + i % 3)})
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return DataConfig(name=f"jsonl:{corpus}", max_length=MAX_LENGTH, val_fraction=0.1, test_fraction=0.2)


def lm_config(name: str, data: DataConfig, runs: Path, **update) -> RunConfig:
    config = RunConfig(name=name, task="causal-lm", output_dir=str(runs), data=data, student=STUDENT,
                       distill=DistillConfig(temperature=1.0, alpha=0.5, methods={"token_fkl": 1.0}),
                       optim=OptimConfig(name="adamw", lr=3e-3), trainer=TRAINER)
    return config.model_copy(update=update)


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory) -> dict:
    """A tiny GPT-2 teacher trained 1 epoch on a tiny corpus, and a smaller student distilled from it (live)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("lm")
    data = write_corpus(folder)
    runs = folder / "runs"
    teacher = api.train(lm_config("teacher", data, runs, student=TEACHER))
    teacher_weights = ModelConfig(**{**TEACHER.model_dump(), "weights": str(teacher.run_dir / "student.safetensors")})
    student = api.distill(lm_config("student", data, runs, teacher=teacher_weights))
    return {"folder": folder, "data": data, "runs": runs, "teacher": teacher, "student": student,
            "teacher_model": teacher_weights}


def table_rows(text: str, names: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(header cells, {name: cells}) of the rich table printed by `kdistill eval`."""
    header, rows = [], {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0] == "Model":
            header = cells
        elif cells and cells[0] in names:
            rows[cells[0]] = cells
    return header, rows


def naive_next_token(model, dataset) -> tuple[float, float]:
    """(mean cross-entropy per target token, next-token accuracy), one sequence and one position at a time."""
    model.eval()
    total, hits, count = 0.0, 0, 0
    with torch.no_grad():
        for index in range(len(dataset)):
            item = dataset[index]
            logits = model(input_ids=item["input_ids"][None], attention_mask=item["attention_mask"][None]).logits[0]
            for position in range(MAX_LENGTH - 1):
                target = int(item["labels"][position + 1])
                if target == -100:
                    continue
                total += float(-F.log_softmax(logits[position].double(), -1)[target])
                hits += int(logits[position].argmax()) == target
                count += 1
    return total / count, hits / count


def test_lm_eval_reports_perplexity_agreement_and_speed(lm_runs, tmp_path, monkeypatch, capsys):
    runs = lm_runs["runs"]
    code, out, err = run_main(monkeypatch, capsys, "eval", str(runs / "student"), "--teacher", str(runs / "teacher"),
                              "--latency-runs", "2", "--output", str(tmp_path / "table"))
    assert code == 0, err
    header, printed = table_rows(out, ["teacher", "student"])
    assert header == ["Model", "Params", "Size", "Loss/token", "Perplexity", "Next-token acc", "Agree", "ms (b=1)",
                      "tokens/s"]
    assert "ECE" not in out and "samples/s" not in out
    saved = json.loads((tmp_path / "table/results.json").read_text())
    assert saved["task"] == "causal-lm"
    rows = {row["name"]: row for row in saved["rows"]}
    assert list(rows) == ["teacher", "student"]

    splits = load_data(lm_runs["data"])
    student = STUDENT.model_copy(update={"weights": str(runs / "student/student.safetensors")})
    for name, config in (("teacher", lm_runs["teacher_model"]), ("student", student)):
        row = rows[name]
        model = build_model(config, splits.input_shape, splits.num_classes)
        loss, accuracy = naive_next_token(model, splits.test)
        assert "ece" not in row
        assert row["test_loss"] == pytest.approx(loss, rel=1e-5)
        assert row["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
        assert row["test_accuracy"] == pytest.approx(accuracy)
        assert row["parameters"] == sum(p.numel() for p in model.parameters())
        assert row["size_bytes"] > 0 and row["latency_ms"] > 0 and row["tokens_per_s"] > 0
        assert printed[name][3] == f"{row['test_loss']:.4f}" and printed[name][4] == f"{row['perplexity']:.3f}"
    assert rows["teacher"]["agreement"] is None and printed["teacher"][6] == "-"
    # The student's figures agree with its own summary (written by the training run's final metrics).
    summary = json.loads((runs / "student/summary.json").read_text())
    assert rows["student"]["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert rows["student"]["agreement"] == pytest.approx(summary["test_agreement"])
    assert rows["teacher"]["perplexity"] == pytest.approx(summary["teacher_test_perplexity"], rel=1e-5)
    assert 0.0 < rows["student"]["agreement"] < 1.0
    # The run's own results.json: the same figures under the language-model columns.
    own = ResultTable.from_json(runs / "student/results.json")
    assert own.task == "causal-lm" and [row.name for row in own.rows] == ["teacher", "student"]
    assert own.row("student").values["perplexity"] == summary["test_perplexity"]
    assert own.row("student").values["agreement"] == summary["test_agreement"]
    assert own.row("teacher").values["perplexity"] == summary["teacher_test_perplexity"]


def test_lm_eval_of_the_teacher_against_itself_and_a_bare_checkpoint(lm_runs, monkeypatch, capsys):
    runs = lm_runs["runs"]
    code, out, err = run_main(monkeypatch, capsys, "eval", str(runs / "teacher"), "--teacher", str(runs / "teacher"),
                              "--latency-runs", "1", "--threads", "1")
    assert code == 0, err
    lines = [table_rows(line, ["teacher"])[1]["teacher"] for line in out.splitlines()
             if table_rows(line, ["teacher"])[1]]
    assert len(lines) == 2 and lines[0][6] == "-" and lines[1][6] == "100.00%"
    assert lines[0][3:6] == lines[1][3:6]  # same model: same loss, perplexity, accuracy
    # A checkpoint given as --model/--weights: the task and data come from the teacher's run.
    kwargs = yaml.safe_dump(STUDENT.kwargs, default_flow_style=True).strip()
    code, out, err = run_main(monkeypatch, capsys, "eval", "--model", "tiny-gpt2", "--model-kwargs", kwargs,
                              "--weights", str(runs / "student/student.safetensors"), "--teacher",
                              str(runs / "teacher"), "--latency-runs", "1")
    assert code == 0, err
    summary = json.loads((runs / "student/summary.json").read_text())
    cells = table_rows(out, ["student"])[1]["student"]
    assert cells[3] == f"{summary['test_loss']:.4f}" and cells[6] == f"{100 * summary['test_agreement']:.2f}%"


def assert_one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_mixing_classification_and_lm_runs_is_a_config_error(lm_runs, tmp_path, monkeypatch, capsys):
    classifier = tmp_path / "classifier"
    classifier.mkdir()
    (classifier / "config.yaml").write_text(yaml.safe_dump(RunConfig(name="classifier").model_dump(mode="json")))
    save_weights(build_model(ModelConfig(name="mlp", kwargs={"width": 8, "depth": 1}), (1, 8, 8), 10),
                 classifier / "student.safetensors")
    runs = lm_runs["runs"]
    for args in ([str(runs / "student"), str(classifier)], [str(classifier), "--teacher", str(runs / "teacher")],
                 [str(runs / "student"), "--task", "classification"]):
        code, _, err = run_main(monkeypatch, capsys, "eval", *args, "--latency-runs", "1")
        line = assert_one_line_error(code, err)
        assert "different tasks" in line and "causal-lm" in line and "classification" in line, line
    with pytest.raises(ConfigError, match="different tasks"):
        api.evaluate([api.entry_from_run(runs / "student")[0], api.entry_from_run(classifier)[0]], lm_runs["data"])
    code, _, err = run_main(monkeypatch, capsys, "eval", str(runs / "student"), "--task", "causal-llm")
    assert "causal-llm" in assert_one_line_error(code, err)


def test_lm_checkpoint_with_another_vocabulary_than_the_teacher_is_refused(lm_runs, tmp_path, monkeypatch, capsys):
    wide = ModelConfig(name="tiny-gpt2", kwargs={**STUDENT.kwargs, "vocab_size": 300})
    weights = save_weights(build_model(wide, (MAX_LENGTH,), 300), tmp_path / "wide.safetensors")
    kwargs = yaml.safe_dump(wide.kwargs, default_flow_style=True).strip()
    code, out, err = run_main(monkeypatch, capsys, "eval", "--model", "tiny-gpt2", "--model-kwargs", kwargs,
                              "--weights", str(weights), "--teacher", str(lm_runs["runs"] / "teacher"))
    line = assert_one_line_error(code, err)
    assert "vocabulary of 300 tokens" in line and "259" in line and "teacher" in line, line
    assert out == ""


def test_cached_teacher_runs_record_teacher_metrics(lm_runs, tmp_path):
    """LM: agreement and teacher perplexity from the manifest's teacher; weights gone or not recorded: skipped."""
    torch.set_num_threads(1)
    data, teacher_run = lm_runs["data"], lm_runs["teacher"]
    weights = tmp_path / "teacher-copy.safetensors"
    weights.write_bytes((teacher_run.run_dir / "student.safetensors").read_bytes())
    source = lm_config("source", data, tmp_path / "runs",
                       teacher=TEACHER.model_copy(update={"weights": str(weights)}))
    info = build_cache(source, tmp_path / "cache", mode="topk", k=8, shard_size=100)
    assert info["manifest"]["teacher"]["weights"] == str(weights.resolve())
    from_cache = ModelConfig(name=f"cache:{tmp_path / 'cache'}")

    run = api.distill(lm_config("cached", data, tmp_path / "runs", teacher=from_cache))
    summary = json.loads((run.run_dir / "summary.json").read_text())
    splits = load_data(data)
    teacher = build_model(lm_runs["teacher_model"], splits.input_shape, splits.num_classes)
    expected = task_metrics(run.student, splits.test, CausalLMTask(), teacher, batch_size=5)
    assert summary["test_agreement"] == pytest.approx(expected["test_agreement"])
    teacher_summary = json.loads((teacher_run.run_dir / "summary.json").read_text())
    assert summary["teacher_test_perplexity"] == pytest.approx(teacher_summary["test_perplexity"], rel=1e-5)

    weights.unlink()
    with pytest.warns(UserWarning, match="are gone"):
        run = api.distill(lm_config("weights-gone", data, tmp_path / "runs", teacher=from_cache))
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert "test_agreement" not in summary and "teacher_test_perplexity" not in summary
    assert math.isfinite(summary["test_perplexity"])

    manifest_path = tmp_path / "cache/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["teacher"]["weights"]  # a store built before the path was recorded
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="older kdistill"):
        run = api.distill(lm_config("old-manifest", data, tmp_path / "runs", teacher=from_cache))
    assert "test_agreement" not in json.loads((run.run_dir / "summary.json").read_text())


def test_cached_teacher_classifier_run_records_agreement_and_teacher_accuracy(tmp_path):
    torch.set_num_threads(1)
    data = DataConfig(name="digits")
    splits = load_data(data)
    teacher_config = ModelConfig(name="mlp", kwargs={"width": 16, "depth": 1})
    torch.manual_seed(0)
    teacher = build_model(teacher_config, splits.input_shape, splits.num_classes)
    weights = save_weights(teacher, tmp_path / "teacher.safetensors")
    config = RunConfig(name="cached", output_dir=str(tmp_path / "runs"), data=data,
                       teacher=teacher_config.model_copy(update={"weights": str(weights)}),
                       student=ModelConfig(name="mlp", kwargs={"width": 8, "depth": 1}), trainer=TRAINER)
    build_cache(config, tmp_path / "cache", shard_size=2000)
    run = api.distill(config.model_copy(update={"teacher": ModelConfig(name=f"cache:{tmp_path / 'cache'}")}))
    summary = json.loads((run.run_dir / "summary.json").read_text())
    inputs = torch.stack([splits.test[i]["input"] for i in range(len(splits.test))])
    targets = torch.stack([splits.test[i]["target"] for i in range(len(splits.test))])
    with torch.no_grad():
        teacher_top1 = teacher.eval()(inputs).argmax(-1)
        student_top1 = run.student.cpu().eval()(inputs).argmax(-1)
    assert summary["teacher_test_accuracy"] == pytest.approx(float((teacher_top1 == targets).float().mean()))
    assert summary["test_agreement"] == pytest.approx(float((student_top1 == teacher_top1).float().mean()))


def test_cache_info_shows_bytes_per_token_and_per_sample(lm_runs, tmp_path):
    source = lm_config("source", lm_runs["data"], tmp_path / "runs", teacher=lm_runs["teacher_model"])
    build_cache(source, tmp_path / "lm", mode="topk", k=4, shard_size=20)
    runner = CliRunner()
    shown = runner.invoke(cache_app, ["info", str(tmp_path / "lm")])
    assert shown.exit_code == 0, shown.output
    size = sum(p.stat().st_size for p in (tmp_path / "lm").iterdir())
    splits = load_data(lm_runs["data"])
    per_token = size / (len(splits.train) * MAX_LENGTH)
    per_target = size / int((splits.train.labels[:, 1:] != -100).sum())
    text = " ".join(shown.output.split())
    assert "bytes per token" in text and "bytes per sample" not in text
    assert f"{per_token:,.2f} on disk" in text and f"{per_target:,.2f} per target token" in text
    assert f"({4 * 2 + 4 * 2 + 4} of outputs" in text  # float16 values, int16 indices, float32 rest

    classifier = RunConfig(data=DataConfig(name="digits"),
                           teacher=ModelConfig(name="mlp", kwargs={"width": 8, "depth": 1},
                                               weights=str(save_weights(build_model(
                                                   ModelConfig(name="mlp", kwargs={"width": 8, "depth": 1}),
                                                   (1, 8, 8), 10), tmp_path / "mlp.safetensors"))))
    info = build_cache(classifier, tmp_path / "cls", shard_size=2000)
    shown = runner.invoke(cache_app, ["info", str(tmp_path / "cls")])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    per_sample = sum(p.stat().st_size for p in (tmp_path / "cls").iterdir()) / len(load_data(classifier.data).train)
    assert info["manifest"]["views"] == 1
    assert "bytes per token" not in text and "bytes per sample" in text
    assert f"{per_sample:,.2f} on disk (20 of outputs)" in text
