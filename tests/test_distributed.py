"""Two processes (DDP over gloo on CPU, launched by Fabric from the CLI) against one process with the same global
batch; trainer settings Fabric cannot use are one error line before the run folder exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cli_helpers import run_main
from kdistill import load_config
from kdistill.data import load_data
from kdistill.models import build_model, load_weights
from kdistill.runs import read_jsonl
from kdistill.tasks import ClassificationTask
from kdistill.training import Trainer, make_fabric

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
COMMON = ["train", "--data", "digits", "--student", "mlp", "--student-kwargs", "{width: 8, depth: 1}", "--epochs", "2",
          "--no-progress", "--accelerator", "cpu", "--lr", "0.01", "--set", "data.train_fraction=0.8"]
# Digits: 1,036 training images (even: the two shards hold the same samples as one process, no padding repeat)
# and 143 validation images (odd: the second shard pads one repeat, which must not be counted).
TOLERANCE = 1e-5  # float32 sums in another order (DDP averages two half-batch gradients); measured ~1e-7


def _kdistill(out: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "kdistill", *COMMON, "--output-dir", str(out), "--name", name, *extra]
    return subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path) -> None:
    one = _kdistill(tmp_path, "one", "--batch-size", "64")
    assert one.returncode == 0, one.stderr[-3000:]
    two = _kdistill(tmp_path, "two", "--batch-size", "32", "--devices", "2", "--strategy", "ddp")
    assert two.returncode == 0, two.stderr[-3000:]

    a, b = (load_file(str(tmp_path / n / "student.safetensors")) for n in ("one", "two"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < TOLERANCE

    # The run folder is written once: one line per epoch, one event file, one summary line on the console.
    records_one, records_two = read_jsonl(tmp_path / "one/metrics.jsonl"), read_jsonl(tmp_path / "two/metrics.jsonl")
    assert [r["epoch"] for r in records_two] == [1, 2]
    assert len(list((tmp_path / "two").glob("tensorboard/**/events.out.tfevents.*"))) == 1
    assert two.stdout.count("test accuracy") == 1 and two.stdout.count("epoch 2/2") == 1
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())

    # Epoch metrics are over both processes: the same as one process's up to float rounding.
    for r1, r2 in zip(records_one, records_two, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert r2[key] == pytest.approx(r1[key], abs=1e-5), key

    # Validation accuracy of the two-process run is the accuracy of its weights on the whole set, in one process.
    config = load_config(tmp_path / "two/config.yaml")
    splits = load_data(config.data)
    assert len(splits.train) % 2 == 0 and len(splits.val) % 2 == 1  # the cases the comment above describes
    model = build_model(config.student, splits.input_shape, splits.num_classes)
    load_weights(model, tmp_path / "two/student.safetensors")
    single = config.model_copy(update={"trainer": config.trainer.model_copy(update={"devices": 1, "strategy": "auto"})})
    trainer = Trainer(single, tmp_path / "scratch", ClassificationTask(), make_fabric(single, tmp_path / "scratch"))
    loader = torch.utils.data.DataLoader(splits.val, batch_size=1000)
    _, accuracy = trainer.validate(model, loader)
    assert records_two[-1]["val_accuracy"] == accuracy
    assert round(accuracy * len(splits.val)) == pytest.approx(accuracy * len(splits.val), abs=1e-9)

    # Both processes resume from the one checkpoint (each its own RNG state) and extend the run.
    more = _kdistill(tmp_path, "two", "--batch-size", "32", "--devices", "2", "--strategy", "ddp", "--epochs", "3",
                     "--resume")
    assert more.returncode == 0, more.stderr[-3000:]
    assert [r["epoch"] for r in read_jsonl(tmp_path / "two/metrics.jsonl")] == [1, 2, 3]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--devices", "0"], "devices must be a count >= 1"),
        (["--devices", "two"], "devices must be a count >= 1"),
        (["--strategy", "horovod"], "unknown strategy 'horovod'"),
        (["--accelerator", "abacus"], "unknown accelerator 'abacus'"),
        (["--num-nodes", "0"], "num_nodes"),
        (["--precision", "8-bit"], "unknown precision '8-bit'"),
        (["--accelerator", "cuda"] if not torch.cuda.is_available() else ["--devices", "1000"], "cannot use trainer"),
    ],
)
def test_trainer_settings_fabric_cannot_use_are_one_error_line(tmp_path, monkeypatch, capsys, flags, message):
    args = [*COMMON, "--output-dir", str(tmp_path), "--name", "bad"]
    args = [a for a in args if a not in ("--accelerator", "cpu")] if "--accelerator" in flags else args
    code, _, err = run_main(monkeypatch, capsys, *args, *flags)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "bad").exists()
