"""`kdistill check CONFIG`: builds everything, takes one step, writes nothing, and reports every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cli_helpers import run_main
from kdistill.config import ModelConfig
from kdistill.models import build_model, save_weights
from reliability_helpers import snapshot


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    teacher = build_model(ModelConfig(name="mlp", kwargs={"width": 16, "depth": 1}), (1, 8, 8), 10)
    save_weights(teacher, tmp_path / "teacher.safetensors")
    return tmp_path


def write_config(folder: Path, **changes) -> Path:
    config = {"data": {"name": "digits"}, "output_dir": str(folder / "runs"),
              "student": {"name": "mlp", "kwargs": {"width": 8, "depth": 1}},
              "teacher": {"name": "mlp", "kwargs": {"width": 16, "depth": 1},
                          "weights": str(folder / "teacher.safetensors")},
              "distill": {"methods": {"kd": 1.0, "dist": 1.0}},
              "trainer": {"epochs": 1, "accelerator": "cpu", "progress": False, "batch_size": 32}}
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            config[section][leaf] = value
        else:
            config[section] = value
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_good_config_takes_one_step_and_writes_nothing(workdir, monkeypatch, capsys) -> None:
    path = write_config(workdir)
    before = snapshot(workdir)
    code, out, err = run_main(monkeypatch, capsys, "check", str(path))
    assert code == 0, err
    assert "ok: one step: loss" in out and "ok: methods: dist, kd" in out and "no problems found" in out
    assert snapshot(workdir) == before and not (workdir / "runs").exists()


def test_every_config_problem_is_reported_at_once(workdir, monkeypatch, capsys) -> None:
    path = write_config(workdir, distill={"methods": {"kd": float("nan")}, "alpha": 3}, seed=-1,
                        trainer__bogus=1)
    code, _, err = run_main(monkeypatch, capsys, "check", str(path))
    lines = err.strip().splitlines()
    assert code == 2 and all(line.startswith("error: config: ") for line in lines), err
    assert {"distill.methods.kd", "distill.alpha", "seed", "trainer.bogus"} <= {
        line.removeprefix("error: config: ").split(":")[0] for line in lines}


def test_problems_of_separate_parts_are_all_reported(workdir, monkeypatch, capsys) -> None:
    path = write_config(workdir, student__kwargs={"widht": 8},
                        teacher__weights=str(workdir / "missing.safetensors"),
                        trainer__accelerator="cuda" if not _has_cuda() else "cpu")
    code, out, err = run_main(monkeypatch, capsys, "check", str(path))
    parts = [line.split(":")[1].strip() for line in err.strip().splitlines()]
    assert code == 2, out + err
    assert "student" in parts and "teacher" in parts, err  # both found in one run, not one at a time
    assert ("trainer" in parts) == (not _has_cuda())
    assert "missing.safetensors" in err and "widht" in err
    assert "ok: data:" in out  # what works is said too


def test_a_damaged_cache_teacher_is_found_by_check(workdir, monkeypatch, capsys) -> None:
    from kdistill.cache import build_cache
    from kdistill.cache.store import shard_name
    from kdistill.config import load_config

    path = write_config(workdir, distill={"methods": {"kd": 1.0}})
    build_cache(load_config(path), workdir / "cache", shard_size=500)
    (workdir / "cache" / shard_name(0)).write_bytes(b"")
    cached = write_config(workdir, distill={"methods": {"kd": 1.0}},
                          teacher={"name": f"cache:{workdir / 'cache'}"})
    code, _, err = run_main(monkeypatch, capsys, "check", str(cached))
    assert code == 2 and "error: methods: " in err and shard_name(0) in err, err  # the probe batch reads it first


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
