"""Discoverability: every flag has help text, ``config --explain`` describes every key, docs/cli.md is generated from
the app and up to date, and a run without validation is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from pydantic import BaseModel

from cli_helpers import run_main
from kdistill import cli
from kdistill.commands.explain import description_of
from kdistill.commands.reference import BEGIN, END, cli_reference
from kdistill.config import RunConfig, load_config
from kdistill.errors import ConfigError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def all_commands(command, path: str = "kdistill"):
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from all_commands(sub, f"{path} {name}")


def test_every_option_of_every_command_has_help_text() -> None:
    missing = [f"{path} {param.opts[0]}" for path, command in all_commands(typer.main.get_command(cli.app))
               for param in command.params if param.param_type_name == "option" and not param.help]
    assert missing == []


def config_keys(model: type[BaseModel], prefix: str = ""):
    for key, field in model.model_fields.items():
        yield model, key, prefix + key
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from config_keys(annotation, f"{prefix}{key}.")


def test_every_config_field_has_a_description() -> None:
    from kdistill.config import ModelConfig

    undocumented = [dotted for model, key, dotted in config_keys(RunConfig) if not description_of(model, key)]
    undocumented += [f"teacher.{key}" for key in ModelConfig.model_fields if not description_of(ModelConfig, key)]
    assert undocumented == []


def comments_by_key(text: str) -> dict[str, str]:
    """dotted key -> its ``# comment``, from the indentation of the explained YAML."""
    comments, path = {}, []
    for line in text.splitlines():
        depth = (len(line) - len(line.lstrip(" "))) // 2
        key = line.strip().split(":", 1)[0]
        path = path[:depth] + [key]
        comments[".".join(path)] = line.split("  # ", 1)[1] if "  # " in line else ""
    return comments


def test_config_explain_comments_every_key_and_stays_loadable(tmp_path, monkeypatch, capsys) -> None:
    overrides = ["--set", "teacher={name: cnn, weights: t.safetensors}", "--set",
                 "distill.stages=[{epochs: 1, methods: {kd: 1}}]", "--set", "trainer.epochs=3"]
    code, out, err = run_main(monkeypatch, capsys, "config", "--explain", *overrides)
    assert code == 0, err
    comments = comments_by_key(out)
    for model, key, dotted in config_keys(RunConfig):
        assert comments[dotted] == description_of(model, key), dotted
    assert comments["teacher.name"].startswith("mlp | cnn")  # the teacher's own fields, described too
    saved = tmp_path / "explained.yaml"
    saved.write_text(out)
    plain = load_config(None, [arg for arg in overrides if arg != "--set"])
    assert load_config(saved) == plain  # the comments do not change what the YAML says


def test_docs_cli_md_is_the_generated_reference() -> None:
    text = DOCS.read_text()
    generated = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert generated == cli_reference().strip(), "run: python -m kdistill.commands.reference docs/cli.md"
    assert "| `mlp` | `width` | `128` |" in generated and "### `kdistill cache build`" in generated


def test_a_run_without_validation_split_is_refused(tmp_path, monkeypatch, capsys) -> None:
    with pytest.raises(ConfigError, match="val_fraction must be > 0.*best checkpoint"):
        load_config(None, ["data.val_fraction=0"])
    code, _, err = run_main(monkeypatch, capsys, "train", "--set", "data.val_fraction=0", "--output-dir",
                            str(tmp_path), "--no-progress")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "val_fraction must be > 0" in err
    assert not any(tmp_path.iterdir())
    assert yaml.safe_load("val_fraction: 0.05")  # small but positive fractions stay accepted
    assert load_config(None, ["data.val_fraction=0.05"]).data.val_fraction == 0.05
