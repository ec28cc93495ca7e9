"""SIGTERM / SIGINT to a real training process: a checkpoint at the next step, exit 143 / 130, a line saying how
to resume; running that line finishes the run with the weights of an uninterrupted one."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdistill.runs import read_jsonl

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
EPOCHS = 12


def _args(out: Path, name: str) -> list[str]:
    return ["train", "--data", "digits", "--student", "mlp", "--student-kwargs", "{width: 8, depth: 1}", "--epochs",
            str(EPOCHS), "--batch-size", "8", "--no-progress", "--accelerator", "cpu", "--output-dir", str(out),
            "--name", name]


def _kdistill(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdistill", *args], env=ENV, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("reference")
    done = _kdistill(_args(out, "full"))
    assert done.returncode == 0, done.stderr[-2000:]
    return load_file(str(out / "full/student.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize(("number", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_signal_checkpoints_exits_and_says_how_to_resume(tmp_path, uninterrupted, number, exit_code) -> None:
    run = tmp_path / "sig"
    process = subprocess.Popen([sys.executable, "-m", "kdistill", *_args(tmp_path, "sig")], env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (run / "checkpoints/last/state.pt").exists():  # running: epoch 1 is checkpointed
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no checkpoint after 180 s"
            time.sleep(0.01)
        time.sleep(0.05)  # somewhere inside epoch 2 or later
        process.send_signal(number)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == exit_code, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"interrupted: {signal.Signals(number).name} received"), err
    assert "Traceback" not in err
    state = torch.load(run / "checkpoints/last/state.pt", weights_only=True)
    assert state["position"]["epoch"] < EPOCHS, "the run finished before the signal"
    assert not (run / "summary.json").exists()

    command = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert command[0] == "kdistill" and command[-1] == "--resume"
    resumed = _kdistill(command[1:])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == list(range(1, EPOCHS + 1))
    final = load_file(str(run / "student.safetensors"))
    assert all(torch.equal(final[k], uninterrupted[k]) for k in uninterrupted)
