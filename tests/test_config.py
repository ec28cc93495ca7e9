"""RunConfig: strict keys, range checks naming the key, dotted overrides, YAML round trip."""

from __future__ import annotations

import pytest
import yaml

from kdistill.config import RunConfig, dump_config, load_config, parse_override
from kdistill.errors import ConfigError


def test_defaults_validate() -> None:
    config = load_config()
    assert isinstance(config, RunConfig)
    assert config.student.name == "mlp"
    assert config.teacher is None


@pytest.mark.parametrize(
    ("override", "key"),
    [("trainer.epoch=3", "trainer.epoch"), ("distill.temprature=2", "distill.temprature"), ("bogus=1", "bogus")],
)
def test_unknown_key_is_named(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    message = str(info.value)
    assert key in message
    assert "unknown key" in message


def test_unknown_key_in_yaml_file_is_named(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  name: digits\n  vall_fraction: 0.2\n")
    with pytest.raises(ConfigError, match=r"data\.vall_fraction"):
        load_config(path)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, 2])
def test_alpha_outside_unit_interval(alpha: float) -> None:
    with pytest.raises(ConfigError, match=r"distill\.alpha.*\[0, 1\]"):
        load_config(overrides=[f"distill.alpha={alpha}"])


@pytest.mark.parametrize("alpha", [0.0, 1.0, 0.25])
def test_alpha_bounds_accepted(alpha: float) -> None:
    assert load_config(overrides=[f"distill.alpha={alpha}"]).distill.alpha == alpha


@pytest.mark.parametrize("temperature", [0, -1.0])
def test_temperature_not_positive(temperature: float) -> None:
    with pytest.raises(ConfigError, match=r"distill\.temperature.*> 0"):
        load_config(overrides=[f"distill.temperature={temperature}"])


def test_negative_method_weight() -> None:
    with pytest.raises(ConfigError, match=r"distill\.methods.*'kd'.*>= 0"):
        load_config(overrides=["distill.methods={kd: -0.5}"])


def test_other_range_checks_name_their_key() -> None:
    for override, key in [
        ("trainer.epochs=0", "trainer.epochs"),
        ("optim.lr=-1", "optim.lr"),
        ("data.val_fraction=1.0", "data.val_fraction"),
        ("optim.name=rmsprop", "optim.name"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(overrides=[override])


def test_dotted_overrides_parse_yaml_values() -> None:
    config = load_config(
        overrides=[
            "trainer.epochs=3",
            "optim.lr=1e-2",
            "trainer.progress=false",
            "distill.methods={kd: 0.5, fitnet: 2}",
            "student.kwargs={width: 8, depth: 1}",
            "data.root=",
            "trainer.devices=auto",
        ]
    )
    assert config.trainer.epochs == 3 and isinstance(config.trainer.epochs, int)
    assert config.optim.lr == pytest.approx(0.01)
    assert config.trainer.progress is False
    assert config.distill.methods == {"kd": 0.5, "fitnet": 2.0}
    assert config.student.kwargs == {"width": 8, "depth": 1}
    assert config.data.root is None
    assert config.trainer.devices == "auto"


def test_student_kwargs_override_keeps_default_student_name() -> None:
    # `--student-kwargs '{width: 8}'` without `--student` must still build the default mlp.
    config = load_config(overrides=["student.kwargs={width: 8}"])
    assert config.student.name == "mlp"
    assert config.student.kwargs == {"width": 8}


def test_overrides_win_over_file(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("trainer:\n  epochs: 7\n  batch_size: 32\nseed: 4\n")
    config = load_config(path, overrides=["trainer.epochs=2"])
    assert config.trainer.epochs == 2
    assert config.trainer.batch_size == 32
    assert config.seed == 4


@pytest.mark.parametrize("text", ["trainer.epochs", "=3"])
def test_malformed_override(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_override(text)


def test_yaml_round_trip(tmp_path) -> None:
    config = load_config(
        overrides=[
            "name=rt",
            "teacher={name: cnn, kwargs: {width: 4}, weights: t.safetensors}",
            "distill.stages=[{epochs: 2, alpha: 0.0, methods: {kd: 1.0}}]",
            "distill.method_options={kd: {temperature: 2.0}}",
            "optim.lr=0.0123",
            "trainer.grad_clip=1.5",
            "data.augment_hflip=true",
        ]
    )
    path = tmp_path / "config.yaml"
    dump_config(config, path)
    again = load_config(path)
    assert again == config
    assert again.distill.stages[0].alpha == 0.0
    assert yaml.safe_load(path.read_text())["teacher"]["kwargs"] == {"width": 4}


def test_bad_yaml_file(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("trainer: {epochs: 3\n  lr: [\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_yaml_file_not_a_mapping(tmp_path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_missing_config_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
