"""kill -9 at a random optimiser step inside an epoch, then resume: the final weights are bit-identical to an
uninterrupted run (CPU). Real subprocesses, real SIGKILL; step checkpoints every 3 steps, random crop augmentation
(drawn from torch's RNG, which the checkpoint restores), and the data position (epoch + step) skips the consumed
batches."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdistill.runs import read_jsonl
from process_helpers import kill_when

CHILD = Path(__file__).with_name("train_child.py")
EPOCHS = 2
STEPS_PER_EPOCH = 21  # digits: 1,294 training images in batches of 64 (asserted below)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}


def _run(out: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHILD), str(out), name, str(EPOCHS), *extra], env=ENV,
                          capture_output=True, text=True, timeout=300)


def _kill_at(out: Path, name: str, step: int) -> None:
    """Start a run, SIGKILL it once it reports ``step`` (it may be a step or two further by then)."""
    progress = out / f"{name}.step"
    process = subprocess.Popen([sys.executable, str(CHILD), str(out), name, str(EPOCHS)], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(process, lambda: progress.is_file() and int(progress.read_text()) >= step, f"step {step}", 180)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("reference")
    done = _run(out, "full")
    assert done.returncode == 0, done.stderr[-2000:]
    records = read_jsonl(out / "full/metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    return load_file(str(out / "full/student.safetensors"))


# Three kill points drawn at random (seeded, so a failure can be replayed), each strictly inside an epoch.
KILL_STEPS = [random.Random(seed).randrange(2, EPOCHS * STEPS_PER_EPOCH - 1) for seed in (11, 22, 33)]


@pytest.mark.slow
@pytest.mark.parametrize("kill_step", KILL_STEPS)
def test_kill_minus_nine_mid_epoch_then_resume_is_bit_identical(tmp_path, uninterrupted, kill_step) -> None:
    _kill_at(tmp_path, "killed", kill_step)
    run = tmp_path / "killed"
    assert not (run / "student.safetensors").exists(), "the run finished before it was killed"
    resumed = _run(tmp_path, "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = load_file(str(run / "student.safetensors"))
    assert final.keys() == uninterrupted.keys()
    assert all(torch.equal(final[k], uninterrupted[k]) for k in final)
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2]


def test_steps_per_epoch_matches_the_data() -> None:
    from kdistill.data import load_data
    from train_child import config

    train = load_data(config(Path("unused"), "x", 1).data).train
    assert -(-len(train) // 64) == STEPS_PER_EPOCH
