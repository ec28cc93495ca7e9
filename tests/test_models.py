"""Model sources (built-in, timm, torchvision, file), weights files, and the input/output checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from kdistill.config import ModelConfig
from kdistill.errors import CheckpointError, ModelError, RegistryError
from kdistill.models import build_model, load_weights, logits_of, save_weights
from kdistill.models.base import check_model_io, count_parameters

IMAGE = (1, 8, 8)


def _forward(model: nn.Module, shape: tuple[int, ...], batch: int = 3) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return logits_of(model(torch.randn(batch, *shape)))


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("mlp", {"width": 8, "depth": 1}, IMAGE),
        ("mlp", {"width": 8, "depth": 3, "dropout": 0.1}, (5,)),
        ("cnn", {"width": 4, "depth": 1, "stages": 2}, IMAGE),
        ("cnn", {"width": 4, "depth": 2, "stages": 3}, (3, 9, 7)),
        ("resnet", {"width": 4, "blocks": [1, 1]}, IMAGE),
        ("resnet", {"width": 4, "blocks": [1, 1, 1], "stem_stride": 2}, (3, 16, 16)),
    ],
)
def test_builtin_output_shapes(name: str, kwargs: dict, shape: tuple[int, ...]) -> None:
    model = build_model(ModelConfig(name=name, kwargs=kwargs), shape, 7)
    assert _forward(model, shape, batch=4).shape == (4, 7)


def test_builtin_width_knob_changes_size() -> None:
    small = build_model(ModelConfig(name="cnn", kwargs={"width": 4}), IMAGE, 10)
    large = build_model(ModelConfig(name="cnn", kwargs={"width": 8}), IMAGE, 10)
    assert count_parameters(large) > count_parameters(small)
    mlp = build_model(ModelConfig(name="mlp", kwargs={"width": 8, "depth": 1}), IMAGE, 10)
    assert count_parameters(mlp) == (64 * 8 + 8) + (8 * 10 + 10)


def test_timm_model_grey_input_ten_classes() -> None:
    model = build_model(ModelConfig(name="timm:resnet10t"), (1, 32, 32), 10)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1
    assert _forward(model, (1, 32, 32), batch=2).shape == (2, 10)


def test_torchvision_model_grey_input_ten_classes() -> None:
    model = build_model(ModelConfig(name="torchvision:resnet18"), (1, 32, 32), 10)
    assert model.conv1.in_channels == 1
    assert model.fc.out_features == 10
    assert _forward(model, (1, 32, 32), batch=2).shape == (2, 10)


def test_unknown_source_suggests_a_name() -> None:
    with pytest.raises(RegistryError, match="did you mean 'mlp'"):
        build_model(ModelConfig(name="mpl"), IMAGE, 10)
    with pytest.raises(RegistryError, match="known: .*timm.*torchvision"):
        build_model(ModelConfig(name="nosuchsource:thing"), IMAGE, 10)


def test_unknown_hub_names() -> None:
    with pytest.raises(ModelError, match="unknown timm model 'resnet10tt'; similar: resnet10t"):
        build_model(ModelConfig(name="timm:resnet10tt"), (1, 32, 32), 10)
    with pytest.raises(ModelError, match="unknown torchvision model 'resnet19'.*list_models"):
        build_model(ModelConfig(name="torchvision:resnet19"), (1, 32, 32), 10)


def test_bad_kwargs_are_a_model_error() -> None:
    with pytest.raises(ModelError, match=r"student 'mlp' could not be built with kwargs \{'widht': 8\}"):
        build_model(ModelConfig(name="mlp", kwargs={"widht": 8}), IMAGE, 10, role="student")


def test_cnn_on_tabular_input() -> None:
    with pytest.raises(ModelError, match=r"cnn needs image inputs .*\(5,\).*use mlp"):
        build_model(ModelConfig(name="cnn"), (5,), 3)
    with pytest.raises(ModelError, match="resnet needs image inputs"):
        build_model(ModelConfig(name="resnet"), (5,), 3)


# ----- file:<path.py>:<factory> -----

USER_FILE = """
from torch import nn


class Tiny(nn.Module):
    def __init__(self, in_features, num_classes, hidden):
        super().__init__()
        layers = [nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x), x.mean()  # (logits, extra): kdistill takes the first element


def make(num_classes, input_shape, hidden=4):
    features = 1
    for n in input_shape:
        features *= n
    return Tiny(features, num_classes, hidden)


def make_any(**kwargs):
    return nn.Sequential(nn.Flatten(), nn.Linear(kwargs["in_channels"] * 64, kwargs["num_classes"]))


def three_classes(in_channels):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, 3))


def wrong_input(num_classes):
    return nn.Linear(5, num_classes)


def not_a_model(num_classes):
    return [num_classes]
"""


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(USER_FILE)
    return path


def test_file_source_passes_what_the_factory_takes(user_file) -> None:
    model = build_model(ModelConfig(name=f"file:{user_file}:make", kwargs={"hidden": 6}), IMAGE, 10)
    assert model.net[1].out_features == 6 and model.net[1].in_features == 64
    assert _forward(model, IMAGE).shape == (3, 10)
    model = build_model(ModelConfig(name=f"file:{user_file}:make_any"), (2, 8, 8), 4)
    assert _forward(model, (2, 8, 8)).shape == (3, 4)


def test_file_source_errors(user_file, tmp_path) -> None:
    with pytest.raises(ModelError, match="has no callable 'nope'; callables there: .*make"):
        build_model(ModelConfig(name=f"file:{user_file}:nope"), IMAGE, 10)
    with pytest.raises(ModelError, match="not found"):
        build_model(ModelConfig(name=f"file:{tmp_path / 'missing.py'}:make"), IMAGE, 10)
    with pytest.raises(ModelError, match=r"must look like file:<path.py>:<factory>"):
        build_model(ModelConfig(name=f"file:{user_file}"), IMAGE, 10)
    with pytest.raises(ModelError, match="returned list, not a torch.nn.Module"):
        build_model(ModelConfig(name=f"file:{user_file}:not_a_model"), IMAGE, 10)


def test_class_count_differs_from_data(user_file) -> None:
    with pytest.raises(ModelError, match=r"outputs shape \(3,\) per sample but the data has 10 classes"):
        build_model(ModelConfig(name=f"file:{user_file}:three_classes"), IMAGE, 10, role="teacher")


def test_model_that_rejects_the_input_shape(user_file) -> None:
    with pytest.raises(ModelError, match=r"does not accept inputs of shape \(1, 8, 8\)") as info:
        build_model(ModelConfig(name=f"file:{user_file}:wrong_input"), IMAGE, 10)
    assert "\n" not in str(info.value)


def test_check_model_io_keeps_training_mode() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).train()
    check_model_io(model, IMAGE, 10, role="m")
    assert model.training


def test_logits_of_output_kinds() -> None:
    logits = torch.randn(2, 3)
    assert logits_of(logits) is logits
    assert logits_of((logits, torch.zeros(1))) is logits
    assert logits_of(SimpleNamespace(logits=logits)) is logits
    with pytest.raises(ModelError, match="cannot find logits"):
        logits_of({"scores": logits})


# ----- weights -----


def _mlp(width: int = 8, classes: int = 10) -> nn.Module:
    return build_model(ModelConfig(name="mlp", kwargs={"width": width, "depth": 1}), IMAGE, classes)


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_safetensors_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    source, target = _mlp(), _mlp()
    assert not _same_state(source, target)
    path = save_weights(source, tmp_path / "w.safetensors", metadata={"note": "x"})
    assert not (tmp_path / "w.safetensors.tmp").exists()
    load_weights(target, path)
    assert _same_state(source, target)


def test_round_trip_with_batchnorm_buffers(tmp_path) -> None:
    source = build_model(ModelConfig(name="cnn", kwargs={"width": 4, "stages": 2}), IMAGE, 10)
    source.train()
    source(torch.randn(8, *IMAGE))  # moves the running statistics away from their initial values
    target = build_model(ModelConfig(name="cnn", kwargs={"width": 4, "stages": 2}), IMAGE, 10)
    load_weights(target, save_weights(source, tmp_path / "cnn.safetensors"))
    assert _same_state(source, target)


def test_build_model_loads_weights(tmp_path) -> None:
    source = _mlp()
    path = save_weights(source, tmp_path / "w.safetensors")
    built = build_model(ModelConfig(name="mlp", kwargs={"width": 8, "depth": 1}, weights=str(path)), IMAGE, 10)
    assert _same_state(source, built)


@pytest.mark.parametrize("key", ["state_dict", "model", None])
def test_torch_checkpoint_formats(tmp_path, key: str | None) -> None:
    source, target = _mlp(), _mlp()
    state = {f"module.{k}": v for k, v in source.state_dict().items()}  # a DDP-wrapped save
    payload = {key: state, "epoch": 3, "optimizer": {"lr": 0.1}} if key else state
    torch.save(payload, tmp_path / "ckpt.pt")
    load_weights(target, tmp_path / "ckpt.pt")
    assert _same_state(source, target)


class _Arbitrary:
    """A pickled object that a weights-only load must refuse."""

    def __init__(self) -> None:
        self.value = 1


def test_torch_checkpoint_is_read_weights_only(tmp_path) -> None:
    torch.save({"state_dict": _mlp().state_dict(), "extra": _Arbitrary()}, tmp_path / "unsafe.pt")
    with pytest.raises(CheckpointError, match="cannot read weights") as info:
        load_weights(_mlp(), tmp_path / "unsafe.pt")
    assert "\n" not in str(info.value)


def test_mismatching_checkpoint_lists_missing_and_unexpected(tmp_path) -> None:
    state = _mlp().state_dict()
    state["extra.weight"] = torch.zeros(2)
    del state["head.bias"]
    torch.save({"state_dict": state}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as info:
        load_weights(_mlp(), tmp_path / "bad.pt", role="teacher")
    message = str(info.value)
    assert "do not fit the teacher" in message
    assert "1 missing (e.g. head.bias)" in message
    assert "1 unexpected (e.g. extra.weight)" in message


def test_checkpoint_of_another_shape(tmp_path) -> None:
    path = save_weights(_mlp(width=16), tmp_path / "wide.safetensors")
    with pytest.raises(CheckpointError, match=r"of another shape \(e.g. body.1.weight \(16, 64\) vs \(8, 64\)"):
        load_weights(_mlp(width=8), path)
    path = save_weights(_mlp(classes=3), tmp_path / "three.safetensors")
    with pytest.raises(CheckpointError, match="head.weight"):
        build_model(ModelConfig(name="mlp", kwargs={"width": 8, "depth": 1}, weights=str(path)), IMAGE, 10)


def test_unreadable_or_missing_weights(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(_mlp(), tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_weights(_mlp(), tmp_path / "junk.safetensors")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        load_weights(_mlp(), tmp_path / "list.pt")
