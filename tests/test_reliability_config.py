"""Issue 19, points 4 and 7: NaN/inf/negative weights and values, seeds, Fabric settings and hostile YAML are
refused with the key named, from the CLI (one `error:` line) and the API (a KdistillError)."""

from __future__ import annotations

import time

import pytest

from cli_helpers import run_main
from kdistill.config import load_config
from kdistill.errors import ConfigError
from reliability_helpers import TINY, assert_one_error_line

TEACHER = ["--teacher", "mlp", "--teacher-kwargs", "{width: 8, depth: 1}", "--teacher-weights", "t.safetensors"]


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A 'billion laughs' YAML mapping: 9 levels of 9 aliases each expand to 9^9 (387 million) strings."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "{" + ", ".join(lines) + "}"


@pytest.mark.parametrize(("args", "key"), [
    (["--method", "kd=nan"], "distill.methods.kd"),
    (["--method", "kd=.inf"], "distill.methods.kd"),
    (["--method", "kd=-1"], "weight of method 'kd'"),
    (["--alpha", "nan"], "distill.alpha"),
    (["-T", "inf"], "distill.temperature"),
    (["--lr", "nan"], "optim.lr"),
    (["-s", "distill.stages=[{epochs: 1, methods: {kd: -5}}]"], "distill.stages.0.methods"),
    (["-s", "distill.stages=[{epochs: 1, methods: {kd: .nan}}]"], "distill.stages.0.methods.kd"),
    (["-s", "distill.stages=[{epochs: 1, alpha: .nan, methods: {kd: 1}}]"], "distill.stages.0.alpha"),
    (["-s", "distill.method_options={dkd: {beta: .nan}}"], "dkd.beta must be a finite number"),
    (["-s", "optim.gamma=-.inf"], "optim.gamma"),
    (["--seed", "-1"], "seed"),
    (["--seed", "4294967296"], "seed"),
    (["-s", "data.split_seed=-3"], "data.split_seed"),
    (["--accelerator", "quantum"], "trainer.accelerator"),
    (["--devices", "0"], "trainer.devices"),
    (["--devices", "two"], "trainer.devices"),
    (["-s", "trainer.strategy=ddpp"], "trainer.strategy"),
    (["--precision", "8-bit"], "trainer.precision"),
    (["-s", "distill.methods={kd: [1}"], "--set distill.methods is not valid YAML"),
    (["--method", "kd=[1"], "--set distill.methods is not valid YAML"),
    (["--student-kwargs", "{width: [8"], "--set student.kwargs is not valid YAML"),
    (["--student-kwargs", "{width: .nan}"], "width must be a finite number"),
    (["--student-kwargs", alias_bomb()], "expands to over"),
    (["--student-kwargs", "&a [*a]"], "YAML"),
    (["--student-kwargs", "[" * 5000], "nests too deeply"),
])
def test_bad_value_is_one_error_line_naming_the_key(tmp_path, monkeypatch, capsys, args, key) -> None:
    started = time.monotonic()
    code, _, err = run_main(monkeypatch, capsys, "distill", *TINY, *TEACHER, "--output-dir", str(tmp_path), *args)
    assert key in assert_one_error_line(code, err)
    assert time.monotonic() - started < 60, "a bounded loader answers at once (the bomb once hung > 150 s)"
    assert not any(tmp_path.iterdir())  # refused before the run folder was made


def test_the_api_raises_config_errors_for_the_same_inputs() -> None:
    for override in ("distill.methods={kd: .nan}", "seed=-1", "trainer.devices=0", "name=..",
                     f"student.kwargs={alias_bomb()}"):
        with pytest.raises(ConfigError):
            load_config(overrides=[override])


def test_fabric_settings_the_machine_cannot_run_are_a_config_error(tmp_path, monkeypatch, capsys) -> None:
    # Values Fabric knows but this CPU machine cannot honour fail in Fabric itself: still one line.
    import torch

    if torch.cuda.is_available():
        args = ["--accelerator", "cpu", "-s", "trainer.strategy=fsdp"]
    else:
        args = ["--accelerator", "cuda"]
    code, _, err = run_main(monkeypatch, capsys, "train", *TINY, "--output-dir", str(tmp_path), *args)
    assert "cannot use trainer settings" in assert_one_error_line(code, err)


def test_yaml_config_file_with_an_alias_bomb_is_refused(tmp_path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(f"student: {{name: mlp, kwargs: {alias_bomb()}}}\n")
    assert len(path.read_bytes()) < 1000  # the size: under a kilobyte
    with pytest.raises(ConfigError, match="expands to over"):
        load_config(path)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "binary.yaml")
