"""``distill_embeddings`` command function (mounted by the CLI as ``distill-embeddings``): real MiniLM, tiny run."""

from __future__ import annotations

import json
import os

import pytest
import typer
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kdistill.commands.embed import distill_embeddings, parse_layers  # noqa: E402
from kdistill.errors import ConfigError  # noqa: E402
from kdistill.results import ResultTable  # noqa: E402


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("distill-embeddings")(distill_embeddings)

    @app.command("noop")  # a second command, so Typer keeps the sub-command name
    def noop() -> None: ...

    return app


def test_command_prints_the_table_and_saves_the_student(tmp_path):
    out = tmp_path / "student"
    result = CliRunner().invoke(_app(), ["distill-embeddings", "--layers", "0,5", "--sentences", "140",
                                         "--heldout", "40", "--epochs", "1", "--output", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for label in ("teacher", "student before", "student after", "cosine to teacher", "top-10 overlap"):
        assert label in result.output
    assert "100 training sentences, 40 held out" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["student"] == "teacher layers [0, 5]" and metrics["teacher"]["cosine_to_teacher"] > 0.999
    assert (out / "encoder" / "config.json").is_file() and (out / "encoder" / "tokenizer_config.json").is_file()
    table = ResultTable.from_json(out / "results.json")  # the printed table, as a result the report can read
    assert [row.name for row in table.rows] == ["teacher", "student before", "student after"]
    assert table.row("teacher").values["cosine_to_teacher"] == metrics["teacher"]["cosine_to_teacher"]
    assert table.task == "embedding"


def test_bad_layers_are_config_errors():
    assert parse_layers("0, 2,4") == [0, 2, 4]
    with pytest.raises(ConfigError, match="comma-separated"):
        parse_layers("first")
    with pytest.raises(ConfigError, match="subset of 0..5"):
        distill_embeddings(layers="0,9", sentences=140, heldout=40, epochs=1)
