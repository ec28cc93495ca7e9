"""The loop through its public entry point ``Trainer.fit`` on tiny in-test data: non-finite losses stop (or skip)
at the step with the term and samples named, NaN weights are never "best", callbacks see every event and can stop
a run early, step checkpoints carry the data position."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from kdistill import load_config
from kdistill.errors import KdistillError, NonFiniteError
from kdistill.runs import read_jsonl
from kdistill.tasks import ClassificationTask
from kdistill.training import Trainer, make_fabric
from kdistill.training.nonfinite import advice

SAMPLES, FEATURES, CLASSES = 48, 6, 3


class Points(Dataset):
    """Linearly separable points; ``nan_rows`` get a NaN feature."""

    def __init__(self, seed: int, nan_rows: tuple[int, ...] = ()) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(SAMPLES, FEATURES, generator=generator)
        self.y = self.x[:, :CLASSES].argmax(1)
        for row in nan_rows:
            self.x[row, 0] = float("nan")

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input": self.x[i], "target": self.y[i], "index": torch.tensor(i)}


def _fit(tmp_path, train: Dataset, val: Dataset, *overrides: str, callbacks=()):
    config = load_config(overrides=[f"output_dir={tmp_path}", "name=run", "trainer.epochs=3", "trainer.batch_size=8",
                                    "trainer.progress=false", "trainer.accelerator=cpu", "optim.lr=0.05",
                                    *overrides])
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    torch.manual_seed(0)
    student = nn.Linear(FEATURES, CLASSES)
    trainer = Trainer(config, run_dir, ClassificationTask(), make_fabric(config, run_dir, callbacks))
    return trainer.fit(student, train, val), student, run_dir


def test_nan_loss_stops_at_its_step_naming_term_and_samples(tmp_path) -> None:
    with pytest.raises(NonFiniteError) as caught:
        _fit(tmp_path, Points(0, nan_rows=(17,)), Points(1))
    message = str(caught.value)
    assert isinstance(caught.value, KdistillError)
    assert "non-finite loss at epoch 1, step" in message and "loss=nan" in message and "task=nan" in message
    assert "non-finite inputs in samples 17)" in message
    assert "precision" not in message  # already 32-true: the advice must not suggest it
    assert not (tmp_path / "run/checkpoints/best").exists()


def test_skip_drops_the_bad_steps_and_keeps_training(tmp_path) -> None:
    result, student, run_dir = _fit(tmp_path, Points(0, nan_rows=(17,)), Points(1), "trainer.on_nonfinite=skip")
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["skipped_steps"] for r in records] == [1, 1, 1]  # sample 17 sits in one batch per epoch
    assert all(torch.isfinite(p).all() for p in student.parameters())
    assert records[-1]["val_accuracy"] > 0.5 and result.best_epoch is not None


def test_nan_validation_is_never_best(tmp_path) -> None:
    result, _, run_dir = _fit(tmp_path, Points(0), Points(1, nan_rows=tuple(range(SAMPLES))))
    assert all(math.isnan(r["val_loss"]) for r in read_jsonl(run_dir / "metrics.jsonl"))
    assert result.best_epoch is None
    assert not (run_dir / "checkpoints/last/best_student.safetensors").exists()
    assert not (run_dir / "checkpoints/best").exists()


def test_divergence_advice_names_precision_only_when_it_is_not_full() -> None:
    assert "precision" not in advice(load_config(overrides=["trainer.precision=32-true"]))
    assert "use precision 32-true" in advice(load_config(overrides=["trainer.precision=bf16-mixed"]))
    assert "grad_clip" not in advice(load_config(overrides=["trainer.grad_clip=1.0"]))


class Recorder:
    """Records events; asks the loop to stop after ``stop_after`` epochs."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list[tuple] = []
        self.stop_after = stop_after

    def on_fit_start(self, start_epoch, steps_per_epoch):
        self.events.append(("fit_start", start_epoch, steps_per_epoch))

    def on_train_epoch_start(self, epoch):
        self.events.append(("epoch_start", epoch))

    def on_train_batch_end(self, epoch, step, global_step, loss):
        assert math.isfinite(loss)
        self.events.append(("batch", epoch, step, global_step))

    def on_checkpoint(self, path, kind, epoch, step):
        state = torch.load(path / "state.pt", weights_only=True)
        self.events.append(("checkpoint", kind, epoch, step, state["position"]["epoch"], state["position"]["step"]))

    def on_train_epoch_end(self, trainer, epoch, record, improved):
        self.events.append(("epoch_end", epoch, record["epoch"]))
        if epoch == self.stop_after:
            trainer.request_stop("pruned by the search")

    def on_fit_end(self, result):
        self.events.append(("fit_end", len(result.history)))


def test_callbacks_see_every_event_and_can_stop_the_run(tmp_path) -> None:
    recorder = Recorder(stop_after=2)
    result, _, _ = _fit(tmp_path, Points(0), Points(1), "trainer.checkpoint_every_steps=4", callbacks=[recorder])
    assert result.stopped_early == "pruned by the search" and len(result.history) == 2
    events = recorder.events
    assert events[0] == ("fit_start", 1, 6) and events[-1] == ("fit_end", 2)
    assert [e for e in events if e[0] == "batch"] == [("batch", e, s, (e - 1) * 6 + s) for e in (1, 2)
                                                       for s in range(1, 7)]
    checkpoints = [e[1:] for e in events if e[0] == "checkpoint"]
    # Every 4 global steps inside an epoch (position: 0-based epoch + steps done), plus each epoch end.
    assert checkpoints == [("step", 1, 4, 0, 4), ("epoch", 1, 0, 1, 0), ("step", 2, 2, 1, 2), ("epoch", 2, 0, 2, 0)]
    assert [e for e in events if e[0] == "epoch_end"] == [("epoch_end", 1, 1), ("epoch_end", 2, 2)]


def test_a_long_run_prints_at_most_about_forty_epoch_lines() -> None:
    from kdistill.training.progress import MAX_EPOCH_LINES, shows_epoch

    assert all(shows_epoch(epoch, 10) for epoch in range(1, 11))  # a short run: every epoch
    shown = [epoch for epoch in range(1, 721) if shows_epoch(epoch, 720)]
    assert shown[0] == 1 and shown[-1] == 720 and len(shown) <= MAX_EPOCH_LINES + 2
