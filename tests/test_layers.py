"""Layer listing and automatic pairing on built-in, timm and torchvision models (random weights, no download)."""

from __future__ import annotations

import torch
from torch import nn

from kdistill.config import ModelConfig
from kdistill.layers import embedding_pair, list_layers, propose_pairs, stage_layers
from kdistill.models import build_model


def _builtin(name: str, width: int, shape=(1, 8, 8)) -> nn.Module:
    return build_model(ModelConfig(name=name, kwargs={"width": width}), shape, 5)


def test_list_layers_gives_per_sample_shapes_in_execution_order():
    layers = list_layers(_builtin("cnn", 4), torch.zeros(2, 1, 8, 8))
    by_name = {layer.name: layer for layer in layers}
    assert by_name["features.0.0.0"].output_shape == (4, 8, 8)
    assert by_name["features.1"].output_shape == (8, 2, 2)  # stage 2 ends with a max-pool
    assert by_name["pool"].output_shape == (16, 1, 1)
    assert layers[-1].name == "head" and layers[-1].is_output
    names = [layer.name for layer in layers]
    assert names.index("features.0.0") < names.index("features.0") < names.index("features")  # children first


def test_builtin_cnn_resnet_pairs_by_resolution():
    student, teacher = _builtin("cnn", 4), _builtin("resnet", 4)
    pairs = propose_pairs(student, teacher, torch.zeros(1, 1, 8, 8))
    assert pairs == [("features.0.1", "layers.0"), ("features.1.1", "layers.1"), ("features", "layers")]
    assert embedding_pair(student, teacher, torch.zeros(1, 1, 8, 8)) == ("dropout", "pool")


def test_nearest_resolution_when_stage_counts_differ():
    student = build_model(ModelConfig(name="cnn", kwargs={"width": 4, "stages": 2}), (1, 8, 8), 5)  # 8x8, 4x4
    teacher = build_model(ModelConfig(name="resnet", kwargs={"width": 4, "blocks": [1, 1, 1, 1]}), (1, 16, 16), 5)
    pairs = propose_pairs(student, teacher, torch.zeros(1, 1, 8, 8))  # teacher at 8, 4, 2, 1
    assert pairs == [("features.0.1", "layers.0"), ("features", "layers.1")]


def test_mlp_pairs_use_penultimate_features():
    student, teacher = _builtin("mlp", 8), _builtin("mlp", 16)
    assert propose_pairs(student, teacher, torch.zeros(1, 1, 8, 8)) == [("body", "body")]
    # An image model against an MLP also falls back to the embeddings.
    assert propose_pairs(_builtin("cnn", 4), teacher, torch.zeros(1, 1, 8, 8)) == [("dropout", "body")]


class _SharedActivation(nn.Module):
    """torchvision-style block that calls one ReLU twice: tapping it would be ambiguous."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(2, 3)

    def forward(self, x):
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.head(x.mean((2, 3)))


def test_modules_called_twice_are_never_proposed():
    layers = list_layers(_SharedActivation(), torch.zeros(1, 1, 4, 4))
    assert {layer.name: layer.calls for layer in layers}["relu"] == 2
    assert [layer.name for layer in stage_layers(layers)] == ["conv2"]
    # The classifier input is computed functionally: the penultimate module is the last one before the head.
    assert embedding_pair(_SharedActivation(), _SharedActivation(), torch.zeros(1, 1, 4, 4)) == ("conv2", "conv2")


def test_timm_and_torchvision_models_pair_without_editing_them():
    x = torch.zeros(1, 3, 32, 32)
    timm_model = build_model(ModelConfig(name="timm:resnet10t"), (3, 32, 32), 5)
    tv_model = build_model(ModelConfig(name="torchvision:resnet18"), (3, 32, 32), 5)
    assert [layer.name for layer in stage_layers(list_layers(timm_model, x))] == [
        "act1", "layer1", "layer2", "layer3", "layer4"]
    pairs = propose_pairs(timm_model, tv_model, x)
    assert pairs == [("act1", "relu"), ("layer1", "layer1"), ("layer2", "layer2"), ("layer3", "layer3"),
                     ("layer4", "layer4")]  # torchvision's per-block ReLUs are called twice and skipped
    assert embedding_pair(timm_model, tv_model, x) == ("global_pool", "avgpool")


def test_layers_command_prints_tables_and_pairs(capsys, monkeypatch):
    from kdistill.commands import layers as command

    monkeypatch.setenv("COLUMNS", "70")  # set after import: read by the console the command makes per call
    command.layers("resnet", "cnn", data="digits")
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 70  # the tables are 81 columns wide unwrapped
    assert "teacher resnet" in printed and "student cnn" in printed
    assert "proposed pairs" in printed and "features.1.1" in printed and "layers.1" in printed
