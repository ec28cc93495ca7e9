"""Training runs on digits with a tiny MLP: determinism, run-folder layout, resume, refusals, stages, kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdistill import api, load_config
from kdistill.config import RunConfig
from kdistill.data import load_data
from kdistill.errors import RunFolderError
from kdistill.evaluate import accuracy, predict
from kdistill.models import build_model, load_weights, save_weights
from kdistill.runs import read_jsonl
from process_helpers import kill_when

KDISTILL = Path(sys.executable).with_name("kdistill")


def _config(output_dir: Path, name: str = "run", epochs: int = 2, *extra: str) -> RunConfig:
    return load_config(
        overrides=[
            f"output_dir={output_dir}",
            f"name={name}",
            "data.name=digits",
            "student={name: mlp, kwargs: {width: 8, depth: 1}}",
            f"trainer.epochs={epochs}",
            "trainer.progress=false",
            "trainer.accelerator=cpu",
            *extra,
        ]
    )


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_times(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in records]


def _teacher_weights(tmp_path: Path) -> Path:
    model = build_model(load_config().student.model_copy(update={"kwargs": {"width": 16}}), (1, 8, 8), 10)
    return save_weights(model, tmp_path / "teacher.safetensors")


def test_fixed_seed_is_bit_identical(tmp_path) -> None:
    api.train(_config(tmp_path, "a"))
    api.train(_config(tmp_path, "b"))
    api.train(_config(tmp_path, "c", 2, "seed=1"))
    a, b, c = (_weights(tmp_path / n / "student.safetensors") for n in "abc")
    assert _same(a, b)
    assert not _same(a, c)  # the seed matters, so the equality above is not vacuous
    assert _without_times(read_jsonl(tmp_path / "a/metrics.jsonl")) == _without_times(
        read_jsonl(tmp_path / "b/metrics.jsonl")
    )


def test_run_folder_layout(tmp_path) -> None:
    config = _config(tmp_path, "layout", 2)
    result = api.train(config)
    run = tmp_path / "layout"
    assert result.run_dir == run
    assert load_config(run / "config.yaml") == config
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]  # numbered from 1, as on the console
    for key in ("lr", "train_accuracy", "train_loss", "train_task", "val_loss", "val_accuracy", "epoch_time_s"):
        assert all(key in r for r in records)
    assert "train_kd" not in records[0]
    assert (run / "checkpoints/last/student.safetensors").is_file()
    assert (run / "checkpoints/last/state.pt").is_file()
    assert (run / "checkpoints/best/student.safetensors").is_file()
    assert not (run / "checkpoints/last.tmp").exists() and not (run / "checkpoints/last.old").exists()
    final = _weights(run / "student.safetensors")
    assert _same(final, _weights(run / "checkpoints/last/student.safetensors"))
    assert list(run.glob("tensorboard/**/events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2
    best = max(records, key=lambda r: (r["val_accuracy"], -r["epoch"]))
    assert summary["best_epoch"] == best["epoch"]
    assert summary["best_val_accuracy"] == best["val_accuracy"]
    # The summary's test accuracy is what the saved weights really score on the test split.
    model = build_model(config.student, (1, 8, 8), 10)
    load_weights(model, run / "student.safetensors")
    logits, targets = predict(model, load_data(config.data).test)
    assert summary["test_accuracy"] == pytest.approx(accuracy(logits, targets))
    state = torch.load(run / "checkpoints/last/state.pt", weights_only=True)
    assert state["position"]["epoch"] == 2 and state["position"]["step"] == 0  # two epochs done


def test_resume_extends_a_finished_run_exactly(tmp_path) -> None:
    # With a constant learning rate, "1 epoch, then resume to 3" is the same training as 3 epochs at once.
    # (With the cosine schedule the first run decays its rate over 1 epoch, so the two are different by design.)
    api.train(_config(tmp_path, "full", 3, "optim.schedule=constant"))
    api.train(_config(tmp_path, "split", 1, "optim.schedule=constant"))
    resumed_config = load_config(tmp_path / "split/config.yaml", overrides=["trainer.epochs=3"])
    result = api.train(resumed_config, resume=True)
    assert _same(_weights(tmp_path / "full/student.safetensors"), _weights(tmp_path / "split/student.safetensors"))
    records = read_jsonl(tmp_path / "split/metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert _without_times(records) == _without_times(read_jsonl(tmp_path / "full/metrics.jsonl"))
    assert [r["epoch"] for r in result.history] == [1, 2, 3]


class CrashAt:
    """A callback that raises at the start of one epoch (numbered from 1), as a crash there would."""

    def __init__(self, epoch: int, event: str = "on_train_epoch_start", error: type = RuntimeError) -> None:
        self.epoch, self.error = epoch, error
        setattr(self, event, self._maybe_crash)

    def _maybe_crash(self, epoch: int) -> None:
        if epoch == self.epoch:
            raise self.error("simulated crash")


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path) -> None:
    api.train(_config(tmp_path, "full", 3))  # default cosine schedule
    with pytest.raises(RuntimeError, match="simulated crash"):
        api.train(_config(tmp_path, "crashed", 3), callbacks=[CrashAt(3)])
    assert len(read_jsonl(tmp_path / "crashed/metrics.jsonl")) == 2
    api.train(_config(tmp_path, "crashed", 3), resume=True)
    assert _same(_weights(tmp_path / "full/student.safetensors"), _weights(tmp_path / "crashed/student.safetensors"))
    assert _without_times(read_jsonl(tmp_path / "crashed/metrics.jsonl")) == _without_times(
        read_jsonl(tmp_path / "full/metrics.jsonl")
    )


def test_distill_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path) -> None:
    teacher = _teacher_weights(tmp_path)
    extra = ("teacher={name: mlp, kwargs: {width: 16}, weights: " + str(teacher) + "}", "distill.alpha=0.3")
    api.distill(_config(tmp_path, "full", 3, *extra))
    with pytest.raises(RuntimeError, match="simulated crash"):
        api.distill(_config(tmp_path, "crashed", 3, *extra), callbacks=[CrashAt(2)])
    result = api.distill(_config(tmp_path, "crashed", 3, *extra), resume=True)
    assert _same(_weights(tmp_path / "full/student.safetensors"), _weights(tmp_path / "crashed/student.safetensors"))
    records = read_jsonl(tmp_path / "crashed/metrics.jsonl")
    assert _without_times(records) == _without_times(read_jsonl(tmp_path / "full/metrics.jsonl"))
    assert all(r["train_kd"] > 0 for r in records)
    assert "test_agreement" in result.metrics


def test_resume_accepts_a_run_saved_before_a_config_key_existed(tmp_path) -> None:
    # A run folder written by an older kdistill lacks keys added since; their defaults must not block --resume.
    import yaml

    api.train(_config(tmp_path, "old", 1))
    saved_path = tmp_path / "old/config.yaml"
    saved = yaml.safe_load(saved_path.read_text())
    del saved["trainer"]["accumulate_grad_batches"]
    saved_path.write_text(yaml.safe_dump(saved))
    api.train(_config(tmp_path, "old", 2), resume=True)
    assert [r["epoch"] for r in read_jsonl(tmp_path / "old/metrics.jsonl")] == [1, 2]
    with pytest.raises(RunFolderError, match="optim.lr"):  # a real difference is still refused
        api.train(_config(tmp_path, "old", 3, "optim.lr=0.5"), resume=True)


def test_resume_drops_metrics_written_after_the_checkpoint(tmp_path) -> None:
    api.train(_config(tmp_path, "r", 2))
    metrics = tmp_path / "r/metrics.jsonl"
    metrics.write_text(metrics.read_text() + json.dumps({"epoch": 3, "val_accuracy": 0.0}) + "\n")
    api.train(load_config(tmp_path / "r/config.yaml", overrides=["trainer.epochs=3"]), resume=True)
    records = read_jsonl(metrics)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[2]["val_accuracy"] > 0


@pytest.mark.parametrize("event", ["on_validation_end", "on_train_epoch_end"])
def test_a_death_around_the_epoch_checkpoint_keeps_every_epoch_once(tmp_path, event) -> None:
    # on_validation_end: before epoch 2's metrics line and checkpoint; on_train_epoch_end: after both.
    with pytest.raises(KeyboardInterrupt):
        api.train(_config(tmp_path, "k", 3), callbacks=[CrashAt(2, event, KeyboardInterrupt)])
    api.train(_config(tmp_path, "k", 3), resume=True)
    assert [r["epoch"] for r in read_jsonl(tmp_path / "k/metrics.jsonl")] == [1, 2, 3]


def test_kill_during_checkpoint_swap_can_resume(tmp_path, monkeypatch) -> None:
    real_rename = Path.rename
    calls = {"swaps": 0}

    def rename(self, target):
        if self.name == "last.tmp" and Path(target).name == "last":
            calls["swaps"] += 1
            if calls["swaps"] == 2:  # epoch 1: "last" was already moved to last.old
                raise KeyboardInterrupt
        return real_rename(self, target)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "rename", rename)
        with pytest.raises(KeyboardInterrupt):
            api.train(_config(tmp_path, "swap", 3))
    assert not (tmp_path / "swap/checkpoints/last").exists()
    api.train(_config(tmp_path, "swap", 3), resume=True)
    assert [r["epoch"] for r in read_jsonl(tmp_path / "swap/metrics.jsonl")] == [1, 2, 3]


def test_resume_with_a_different_config_is_refused(tmp_path) -> None:
    api.train(_config(tmp_path, "r", 1))
    before = (tmp_path / "r/metrics.jsonl").read_text()
    with pytest.raises(RunFolderError, match=r"different config \(differs at: optim\.lr\)"):
        api.train(_config(tmp_path, "r", 2, "optim.lr=0.01"), resume=True)
    assert (tmp_path / "r/metrics.jsonl").read_text() == before


def test_resume_without_checkpoint_is_refused(tmp_path) -> None:
    with pytest.raises(RunFolderError, match="no checkpoint"):
        api.train(_config(tmp_path, "never"), resume=True)
    with pytest.raises(RunFolderError, match="not both"):
        api.train(_config(tmp_path, "never"), resume=True, overwrite=True)


def test_existing_folder_is_kept_without_overwrite(tmp_path) -> None:
    api.train(_config(tmp_path, "r", 1))
    run = tmp_path / "r"
    snapshot = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RunFolderError, match="exists; pass --overwrite"):
        api.train(_config(tmp_path, "r", 1))
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == snapshot


def test_overwrite_replaces_a_run_folder(tmp_path) -> None:
    api.train(_config(tmp_path, "r", 1))
    (tmp_path / "r/notes.txt").write_text("old")
    api.train(_config(tmp_path, "r", 2), overwrite=True)
    assert not (tmp_path / "r/notes.txt").exists()
    assert len(read_jsonl(tmp_path / "r/metrics.jsonl")) == 2


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path) -> None:
    precious = tmp_path / "r" / "thesis.tex"
    precious.parent.mkdir()
    precious.write_text("do not delete")
    with pytest.raises(RunFolderError, match="not a kdistill run folder"):
        api.train(_config(tmp_path, "r", 1), overwrite=True)
    assert precious.read_text() == "do not delete"
    assert sorted(p.name for p in precious.parent.iterdir()) == ["thesis.tex"]


def test_stages_switch_the_loss_mix(tmp_path) -> None:
    teacher = _teacher_weights(tmp_path)
    config = _config(
        tmp_path,
        "staged",
        3,
        "teacher={name: mlp, kwargs: {width: 16}, weights: " + str(teacher) + "}",
        "distill.alpha=0.5",
        "distill.methods={kd: 1.0}",
        "distill.stages=[{epochs: 1, alpha: 1.0, methods: {}}, {epochs: 1, alpha: 0.0, methods: {kd: 2.0}}]",
    )
    api.distill(config)
    first, second, third = read_jsonl(tmp_path / "staged/metrics.jsonl")
    # Stage 1: no method, plain cross-entropy.
    assert "train_kd" not in first
    assert first["train_loss"] == pytest.approx(first["train_task"], rel=1e-6)
    # Stage 2: alpha 0, only the (weighted) KD term.
    assert second["train_kd"] > 0
    assert second["train_loss"] == pytest.approx(second["train_kd"], rel=1e-5)
    # Then the main setting: 0.5 * CE + 0.5 * KD.
    assert third["train_loss"] == pytest.approx(0.5 * third["train_task"] + 0.5 * third["train_kd"], rel=1e-5)


def test_stage_method_weight_scales_the_term(tmp_path) -> None:
    # Same run twice with the stage's kd weight 1 vs 3 at alpha 0: the weighted term of the first step's batch
    # differs by exactly 3x, so the epoch mean of the first epoch differs (a weight that was ignored would not).
    teacher = _teacher_weights(tmp_path)
    kd = {}
    for weight in (1.0, 3.0):
        config = _config(
            tmp_path,
            f"w{weight}",
            1,
            "teacher={name: mlp, kwargs: {width: 16}, weights: " + str(teacher) + "}",
            f"distill.stages=[{{epochs: 1, alpha: 0.0, methods: {{kd: {weight}}}}}]",
            "optim.lr=1e-9",  # the student barely moves, so the unweighted KD is the same in both runs
        )
        api.distill(config)
        kd[weight] = read_jsonl(tmp_path / f"w{weight}/metrics.jsonl")[0]["train_kd"]
    assert kd[3.0] == pytest.approx(3 * kd[1.0], rel=1e-4)


def test_kill_minus_nine_then_resume(tmp_path) -> None:
    epochs = 40
    args = [
        str(KDISTILL),
        "train",
        "--data",
        "digits",
        "--student",
        "mlp",
        "--student-kwargs",
        "{width: 8, depth: 1}",
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
        "--no-progress",
        "--accelerator",
        "cpu",
        "--output-dir",
        str(tmp_path),
        "--name",
        "killed",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "killed"
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(process, (run / "checkpoints/last/state.pt").exists, "a checkpoint", 120)
    done = len(read_jsonl(run / "metrics.jsonl"))
    assert done < epochs, "the run finished before it was killed; the test needs more epochs"
    resumed = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    assert (run / "summary.json").is_file() and (run / "student.safetensors").is_file()
