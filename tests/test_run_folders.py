"""A run folder is a model (teacher, student, eval model, load_model), a teacher's data is the student's unless the
user says otherwise, nn.Module objects go straight into api.distill, and the recipe knobs (Nesterov, final teacher
pass, cache build flags) reach what they configure. Issue 18, points 2, 4, 9 and 10; all through the CLI in-process
where there is a CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from cli_helpers import run_main
from kdistill import load_config, load_model
from kdistill.trainer import make_optimizer

TINY = ["--student", "mlp", "--student-kwargs", "{width: 8, depth: 1}", "--epochs", "1", "--no-progress",
        "--accelerator", "cpu"]


def write_csv(path: Path, rows: int = 150) -> str:
    """Three classes separated by the sign of two features, so a tiny model learns them."""
    rng = random.Random(0)
    lines = ["a,b,c,label"]
    for _ in range(rows):
        a, b, c = (rng.uniform(-1, 1) for _ in range(3))
        lines.append(f"{a:.3f},{b:.3f},{c:.3f},{'x' if a > 0 else ('y' if b > 0 else 'z')}")
    path.write_text("\n".join(lines) + "\n")
    return f"csv:{path}"


@pytest.fixture(scope="module")
def csv_teacher(tmp_path_factory) -> tuple[Path, str]:
    """A teacher trained on a CSV (not the default digits), and that data's name."""
    root = tmp_path_factory.mktemp("runs")
    data = write_csv(root / "t.csv")
    mp = pytest.MonkeyPatch()
    try:
        code, out, err = run_main(mp, _NoCapture(), "train", *TINY, "--data", data, "--name", "teacher",
                                  "--output-dir", str(root), "--student-kwargs", "{width: 16, depth: 1}")
    finally:
        mp.undo()
    assert code == 0, err
    return root / "teacher", data


class _NoCapture:
    """capsys stand-in for a module-scoped fixture (pytest's capsys is function-scoped)."""

    def readouterr(self) -> tuple[str, str]:
        return "", ""


def test_run_folder_records_the_data_and_load_model_returns_the_trained_module(csv_teacher):
    run, data = csv_teacher
    record = json.loads((run / "data.json").read_text())
    assert record == {"name": data, "root": None, "num_classes": 3, "input_shape": [3], "class_names": ["x", "y", "z"]}
    model = load_model(run)
    assert isinstance(model, nn.Module) and not model.training
    assert model(torch.zeros(2, 3)).shape == (2, 3)
    from safetensors.torch import load_file

    saved = load_file(str(run / "student.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_distill_without_data_uses_the_teacher_runs_data_and_says_so(csv_teacher, tmp_path, monkeypatch, capsys):
    run, data = csv_teacher
    code, out, err = run_main(monkeypatch, capsys, "distill", *TINY, "--teacher", str(run), "--name", "kd",
                              "--output-dir", str(tmp_path))
    assert code == 0, err
    assert f"data: {data} (from the teacher's run {run}" in out
    saved = load_config(tmp_path / "kd/config.yaml")
    assert saved.data.name == data
    assert saved.teacher.name == "mlp" and saved.teacher.kwargs == {"width": 16, "depth": 1}  # the run's model
    assert saved.teacher.weights == str(run / "student.safetensors")
    assert "test_agreement" in json.loads((tmp_path / "kd/summary.json").read_text())


def test_other_data_than_the_teachers_is_refused_naming_both_and_the_override(csv_teacher, tmp_path, monkeypatch,
                                                                                capsys):
    run, data = csv_teacher
    other = write_csv(tmp_path / "other.csv")
    args = ["distill", *TINY, "--teacher-weights", str(run), "--data", other, "--output-dir", str(tmp_path)]
    code, out, err = run_main(monkeypatch, capsys, *args, "--name", "refused")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert data in err and other in err and "distill.allow_data_mismatch=true" in err
    assert not (tmp_path / "refused").exists()
    code, _, err = run_main(monkeypatch, capsys, *args, "--name", "allowed", "-s", "distill.allow_data_mismatch=true")
    assert code == 0, err


def test_run_folder_as_student_starts_from_its_weights_and_as_eval_model(csv_teacher, tmp_path, monkeypatch, capsys):
    run, data = csv_teacher
    code, _, err = run_main(monkeypatch, capsys, "train", "--student", str(run), "--data", data, "--epochs", "1",
                            "--no-progress", "--accelerator", "cpu", "--lr", "1e-12", "--optimizer", "sgd",
                            "--name", "again", "--output-dir", str(tmp_path))
    assert code == 0, err
    saved = load_config(tmp_path / "again/config.yaml").student
    assert saved.name == "mlp" and saved.weights == str(run / "student.safetensors")
    before, after = load_model(run).state_dict(), load_model(tmp_path / "again").state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)  # lr ~0: it started from them
    code, out, err = run_main(monkeypatch, capsys, "eval", "--model", str(run), "--teacher", str(run),
                              "--latency-runs", "1")
    assert code == 0, err
    assert "100.00%" in out  # a model agrees with itself


class Tiny(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_api_distill_takes_modules_and_refuses_to_rebuild_them(csv_teacher, tmp_path):
    from kdistill import api
    from kdistill.errors import ModelError

    run, data = csv_teacher
    config = load_config(overrides=[f"data.name={data}", "trainer.epochs=1", "trainer.progress=false",
                                    "trainer.accelerator=cpu", f"output_dir={tmp_path}", "name=modules"])
    student, teacher = Tiny(4), load_model(run)
    first = [p.detach().clone() for p in student.parameters()]
    result = api.distill(config, teacher=teacher, student=student)
    assert result.student is student
    assert any(not torch.equal(a, b) for a, b in zip(first, student.parameters(), strict=True))  # trained in place
    assert "test_agreement" in result.metrics
    assert load_config(result.run_dir / "config.yaml").student.name == "module:Tiny"
    with pytest.raises(ModelError, match="pass the module again"):
        load_model(result.run_dir)


def test_nesterov_flag_reaches_the_optimizer():
    params = [nn.Parameter(torch.zeros(2))]
    on = make_optimizer(load_config(overrides=["optim.name=sgd"]), params)
    off = make_optimizer(load_config(overrides=["optim.name=sgd", "optim.nesterov=false"]), params)
    assert on.param_groups[0]["nesterov"] is True  # the default keeps the earlier behaviour
    assert off.param_groups[0]["nesterov"] is False


def test_teacher_metrics_false_skips_the_final_teacher_pass(csv_teacher, tmp_path, monkeypatch, capsys):
    run, _ = csv_teacher
    code, _, err = run_main(monkeypatch, capsys, "distill", *TINY, "--teacher", str(run), "--name", "quick",
                            "--output-dir", str(tmp_path), "-s", "eval.teacher_metrics=false")
    assert code == 0, err
    summary = json.loads((tmp_path / "quick/summary.json").read_text())
    assert "test_agreement" not in summary and "teacher_test_accuracy" not in summary
    assert "test_accuracy" in summary


def test_cache_build_takes_the_distill_flags(csv_teacher, tmp_path, monkeypatch, capsys):
    run, data = csv_teacher
    code, out, err = run_main(monkeypatch, capsys, "cache", "build", "--teacher", str(run), "--data", data,
                              "--dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path), "-T", "2",
                              "--workers", "0", "-s", "trainer.eval_batch_size=64")
    assert code == 0, err
    manifest = json.loads((tmp_path / "cache/manifest.json").read_text())
    assert manifest["data"]["name"] == data and manifest["teacher"]["name"] == "mlp"
    code, _, err = run_main(monkeypatch, capsys, "distill", *TINY, "--data", data, "--name", "cached",
                            "--output-dir", str(tmp_path), "--teacher", f"cache:{tmp_path / 'cache'}")
    assert code == 0, err


def test_digits_read_without_scikit_learn_match_its_loader():
    """The digits source reads scikit-learn's CSV itself (no sklearn import, less memory); same samples."""
    from sklearn.datasets import load_digits as sklearn_digits

    from kdistill.data.digits import _read_digits_csv

    pixels, labels = _read_digits_csv()
    reference = sklearn_digits()
    assert (pixels == reference.data).all() and (labels == reference.target).all()
