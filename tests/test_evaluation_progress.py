"""Point 7 of issue 18: after training, each test pass shows a labelled bar (on a terminal) and one timing line,
and nothing with `trainer.progress: false`."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import Dataset

from cli_helpers import run_main
from kdistill.evaluate import predict
from kdistill.training import progress
from kdistill.training.progress import evaluation_display

TIMING_LINE = r"{label}  {items} items  \d+\.\d\d s"


class Points(Dataset):
    def __init__(self, count: int) -> None:
        self.inputs, self.targets = torch.randn(count, 4), torch.arange(count) % 3

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input": self.inputs[index], "target": self.targets[index]}


def _terminal(monkeypatch) -> io.StringIO:
    """The bar is drawn on a terminal only: give the progress module one that writes into a buffer."""
    screen = io.StringIO()
    monkeypatch.setattr(progress, "cli_console", lambda: Console(file=screen, force_terminal=True, width=100))
    return screen


def test_a_shown_test_pass_draws_its_bar_then_one_timing_line(monkeypatch) -> None:
    screen = _terminal(monkeypatch)
    with evaluation_display(True):
        logits, targets = predict(nn.Linear(4, 3), Points(10), batch_size=4, label="test: teacher")
    assert logits.shape == (10, 3) and targets.tolist() == (torch.arange(10) % 3).tolist()
    text = screen.getvalue()
    assert "test: teacher" in text and "3/3" in text  # the bar: 10 items in batches of 4
    assert re.search(TIMING_LINE.format(label="test: teacher", items=10), text)


def test_test_passes_are_silent_when_not_shown_or_outside_a_run(monkeypatch) -> None:
    screen = _terminal(monkeypatch)
    with evaluation_display(False):
        predict(nn.Linear(4, 3), Points(10), batch_size=4, label="test: teacher")
    predict(nn.Linear(4, 3), Points(10), batch_size=4, label="test: student")  # e.g. kdistill eval's own table
    assert screen.getvalue() == ""


def test_train_prints_the_final_test_passes_only_with_progress(tmp_path, monkeypatch, capsys) -> None:
    args = ["train", "--data", "digits", "--student", "mlp", "--student-kwargs", "{width: 8, depth: 1}", "--epochs",
            "1", "--accelerator", "cpu", "--output-dir", str(tmp_path)]
    code, out, err = run_main(monkeypatch, capsys, *args, "--name", "shown")
    assert code == 0, err
    test_items = 359  # digits' test split
    assert re.search(TIMING_LINE.format(label="test: student", items=test_items), out), out
    assert re.search(TIMING_LINE.format(label="test: best-val student", items=test_items), out), out
    code, out, err = run_main(monkeypatch, capsys, *args, "--name", "quiet", "--no-progress")
    assert code == 0, err
    assert "test: " not in out + err
    assert "test accuracy" in out  # the run's result line is still printed


def test_eval_shows_one_test_pass_per_model_unless_no_progress(tmp_path, monkeypatch, capsys) -> None:
    args = ["train", "--data", "digits", "--student", "mlp", "--student-kwargs", "{width: 8, depth: 1}", "--epochs",
            "1", "--accelerator", "cpu", "--output-dir", str(tmp_path), "--no-progress"]
    for name in ("small", "teacher"):
        assert run_main(monkeypatch, capsys, *args, "--name", name)[0] == 0
    runs = [str(tmp_path / "small"), "--teacher", str(tmp_path / "teacher"), "--latency-runs", "2"]
    code, out, err = run_main(monkeypatch, capsys, "eval", *runs)
    assert code == 0, err
    for label in ("test: small", "test: teacher"):
        assert re.search(TIMING_LINE.format(label=label, items=359), out), out
    code, out, err = run_main(monkeypatch, capsys, "eval", *runs, "--no-progress")
    assert code == 0, err
    assert "test: " not in out + err and "small" in out  # the table is still printed



def test_result_lines_stay_whole_on_a_narrow_console(tmp_path) -> None:
    """A run's data and result lines name paths: wrapped at the console's width they could not be grepped from a
    log (a 2-process DDP test once missed 'test accuracy' split over two lines)."""
    env = {**os.environ, "COLUMNS": "40", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    args = [sys.executable, "-m", "kdistill", "train", "--data", "digits", "--student", "mlp", "--student-kwargs",
            "{width: 8, depth: 1}", "--epochs", "1", "--accelerator", "cpu", "--output-dir", str(tmp_path), "--name",
            "narrow", "--no-progress"]
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert any(str(tmp_path / "narrow") in line and "test accuracy" in line for line in lines), run.stdout
    assert any(line.startswith("weights: ") and line.endswith("student.safetensors") for line in lines), run.stdout
    assert any(line.startswith("data: digits") and "this run trains on" in line for line in lines), run.stdout
