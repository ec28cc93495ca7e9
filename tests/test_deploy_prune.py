"""Structured pruning: channels really go, the model still runs, the pruned run folder is a normal one."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from cli_helpers import run_main
from deploy_helpers import make_tiny_runs
from kdistill.config import ModelConfig, PruneConfig
from kdistill.deploy.errors import PruneError
from kdistill.deploy.prune import prune_and_distill, prune_to, size_of
from kdistill.deploy.source import load_run
from kdistill.models import build_model, count_parameters


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    return make_tiny_runs(tmp_path_factory.mktemp("runs"))


def conv_channels(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("measure", ["params", "flops"])
def test_prune_to_removes_channels_down_to_the_target(measure):
    model = build_model(ModelConfig(name="resnet", kwargs={"width": 8, "blocks": [1, 1, 1]}), (1, 8, 8), 10)
    example = torch.randn(2, 1, 8, 8)
    before, channels = size_of(model, example, measure), conv_channels(model)
    pruned = prune_to(copy.deepcopy(model), example, before // 2, measure, 10)
    assert size_of(pruned, example, measure) <= before // 2
    assert sum(conv_channels(pruned)) < sum(channels)
    assert pruned(example).shape == (2, 10)  # residual adds still line up; the class count is kept


def test_global_allocation_takes_the_weak_channels_where_they_are():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="cnn", kwargs={"width": 8, "depth": 1}), (1, 8, 8), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert conv_channels(model) == [8, 16, 32]
    with torch.no_grad():  # half of the middle layer's channels all but dead: weights in, scale, weights out
        convs[1].weight[:8] *= 1e-3
        norms[1].weight[:8] *= 1e-3
        convs[2].weight[:, :8] *= 1e-3
    example = torch.randn(2, 1, 8, 8)
    keep = int(0.7 * size_of(model, example, "params"))
    uniform = prune_to(copy.deepcopy(model), example, keep, "params", 10, "uniform")
    ranked = prune_to(copy.deepcopy(model), example, keep, "params", 10, "global")
    assert size_of(uniform, example, "params") <= keep and size_of(ranked, example, "params") <= keep
    assert all(a < b for a, b in zip(conv_channels(uniform), [8, 16, 32], strict=True))  # every layer loses some
    first, middle, last = conv_channels(ranked)
    assert (first, last) == (8, 32) and 8 <= middle < 16  # only the dead channels go
    middle_conv = [m for m in ranked.modules() if isinstance(m, nn.Conv2d)][1]
    assert middle_conv.weight.flatten(1).norm(dim=1).topk(8).values.min() > 1e-2  # the 8 live channels all stay
    assert ranked(example).shape == (2, 10)


def test_a_target_that_cannot_be_met_is_a_prune_error():
    model = build_model(ModelConfig(name="mlp", kwargs={"width": 16}), (1, 8, 8), 10)
    with pytest.raises(PruneError, match="pruning target cannot be met: 10 params asked"):
        prune_to(model, torch.randn(2, 1, 8, 8), 10, "params", 10)


@pytest.mark.slow
def test_prune_and_distill_writes_loadable_run_folders(tiny_runs, tmp_path, monkeypatch, capsys):
    run = load_run(tiny_runs.student)
    steps = prune_and_distill(run, run.config.teacher, PruneConfig(amount=0.5, steps=2, epochs=1), tmp_path)
    assert [s.run_dir.name for s in steps] == ["pruned-step1", "pruned"]
    original = count_parameters(run.student)
    assert steps[0].parameters < original and steps[1].parameters <= original // 2
    assert steps[1].share_removed >= 0.5
    pruned = load_run(tmp_path / "pruned")  # rebuilt from its config.yaml: the `pruned` model source
    assert count_parameters(pruned.student) == steps[1].parameters
    assert sum(conv_channels(pruned.student)) < sum(conv_channels(run.student))
    assert pruned.student(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    summary = json.loads((tmp_path / "pruned" / "summary.json").read_text())
    assert "test_agreement" in summary  # distilled from the teacher
    code, out, err = run_main(monkeypatch, capsys, "eval", str(tmp_path / "pruned"), "--latency-runs", "3")
    assert code == 0, err
    assert "pruned" in out and f"{steps[1].parameters:,}" in out


def test_cli_prune_without_a_teacher_is_one_error_line(tiny_runs, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "deploy", str(tiny_runs.teacher), "--prune", "0.5")
    assert code == 2 and err.startswith("error: pruning and QAT distil from the teacher, but run 'teacher' has none")


@pytest.mark.parametrize(("flags", "words"), [
    (["--prune", "0.5", "--prune-allocation", "sideways"], ["allocation", "'uniform' or 'global'"]),
    (["--prune", "0.5", "--prune-steps", "0"], ["steps", "greater than 0"]),
    (["--prune-epochs", "0"], ["epochs", "greater than 0"]),
    (["--quantize", "int4"], ["quantize", "'none' or 'int8'"]),
])
def test_cli_bad_deploy_flag_values_are_one_error_line(tiny_runs, monkeypatch, capsys, flags, words):
    code, _, err = run_main(monkeypatch, capsys, "deploy", str(tiny_runs.student), *flags)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: invalid config (flags)")
    assert all(word in err for word in words), err
