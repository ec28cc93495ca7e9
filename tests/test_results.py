"""The one result model: JSON round trip, the same cells in rich, Markdown and JSON, loud on malformed input, and the
result a training run writes into its folder."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest
import torch
from rich.console import Console

from kdistill import api
from kdistill.config import DataConfig, ModelConfig, RunConfig, TrainerConfig
from kdistill.errors import KdistillError
from kdistill.render import cells, format_value, header, markdown, rich_table, save
from kdistill.results import Column, Environment, ResultTable, Row, columns_for


def sample_result() -> ResultTable:
    columns = [
        Column("rank", "#", "int"),
        Column("teacher", "Teacher", "text"),
        Column("acc", "Acc (%)", "points", unit="fraction", spread="acc_std"),
        Column("gap", "Gap", "signed_percent"),
        Column("speed", "vs alone", "ratio"),
        Column("size", "Size", "bytes", unit="B"),
        Column("ece", "ECE", "float", 4),
    ]
    rows = [Row("kd", {"rank": 1, "teacher": "cache", "acc": 0.9123, "acc_std": 0.0045, "gap": 0.5, "speed": 1.25,
                       "size": 2048, "ece": 0.0123}, {"per_seed": [{"seed": 0, "acc": 0.91}]}),
            Row("alone", {"rank": None, "teacher": "-", "acc": 0.8, "acc_std": None, "gap": None, "speed": 1.0,
                          "size": 10, "ece": None})]
    return ResultTable("a table", "classification", columns, rows, Environment.capture(), caption="caption",
                     command="kdistill compare x.yaml", name_label="Method", details={"ranked_by": "acc"})


def test_json_round_trip(tmp_path) -> None:
    result = sample_result()
    path = save(result, tmp_path)
    assert path == tmp_path / "results.json"
    back = ResultTable.from_json(path)
    assert back == result
    saved = json.loads(path.read_text())
    kd = saved["rows"][0]
    assert kd["name"] == "kd" and kd["acc"] == 0.9123 and kd["per_seed"] == [{"seed": 0, "acc": 0.91}]
    assert saved["rows"][1]["ece"] is None  # a value not measured is written, as null
    assert saved["columns"][2] == {"key": "acc", "label": "Acc (%)", "kind": "points", "digits": 4,
                                   "unit": "fraction", "spread": "acc_std", "description": ""}


def test_cells_of_each_kind() -> None:
    result = sample_result()
    assert header(result) == ["Method", "#", "Teacher", "Acc (%)", "Gap", "vs alone", "Size", "ECE"]
    assert cells(result) == [["kd", "1", "cache", "91.23 ± 0.45", "+50.0%", "1.25x", "2.0 KB", "0.0123"],
                             ["alone", "-", "-", "80.00", "-", "1.00x", "10 B", "-"]]
    assert format_value(Column("a", "A", "percent"), 0.5) == "50.00%"
    assert format_value(Column("t", "T", "float", 0), 12345.6) == "12,346"


def test_rich_and_markdown_show_the_same_cells() -> None:
    result = sample_result()
    console = Console(width=250, record=True)
    console.print(rich_table(result))
    text = console.export_text()
    printed = [[c.strip() for c in re.split(r"[│┃]", line) if c.strip()] for line in text.splitlines()]
    md_lines = markdown(result).splitlines()
    md = [[c.strip() for c in line.strip("|").split("|")] for line in md_lines if line.startswith("| ")]
    expected = [header(result), *cells(result)]
    assert [row for row in printed if row and row[0] in ("Method", "kd", "alone")] == expected
    assert md == expected
    assert "```\nkdistill compare x.yaml\n```" in markdown(result) and "Measured with torch" in markdown(result)


def test_malformed_results_are_refused(tmp_path) -> None:
    columns = columns_for("classification")
    env = Environment.capture()
    with pytest.raises(KdistillError, match="test_acuracy"):  # a typo in a value key is not silently dropped
        ResultTable("t", "classification", columns, [Row("m", {"test_acuracy": 0.5})], env)
    with pytest.raises(KdistillError, match="clash"):
        ResultTable("t", "classification", columns, [Row("m", {}, {"ece": 1})], env)
    with pytest.raises(KdistillError, match="unknown kind"):
        Column("x", "X", "percentage")
    with pytest.raises(KdistillError, match="no result columns for task"):
        columns_for("segmentation")
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(KdistillError, match="not a kdistill result"):
        ResultTable.from_json(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text('{"format": "kdistill.result/1", "rows": [')
    with pytest.raises(KdistillError, match="cannot read result"):
        ResultTable.from_json(tmp_path / "broken.json")
    with pytest.raises(KdistillError, match="cannot read result"):
        ResultTable.from_json(tmp_path / "missing.json")


def test_environment_names_the_machine() -> None:
    env = Environment.capture("cpu", threads=1)
    assert env.torch == torch.__version__ and env.threads == 1 and env.device == "cpu"
    assert "logical cores" in env.cpu and env.kdistill
    assert datetime.fromisoformat(env.date).tzinfo is not None


def test_a_training_run_writes_its_result(tmp_path) -> None:
    config = RunConfig(name="tiny", output_dir=str(tmp_path), data=DataConfig(name="digits"),
                       student=ModelConfig(name="mlp", kwargs={"width": 8, "depth": 1}),
                       trainer=TrainerConfig(epochs=1, progress=False, accelerator="cpu"))
    run = api.train(config)
    result = ResultTable.from_json(run.run_dir / "results.json")
    summary = json.loads((run.run_dir / "summary.json").read_text())
    (student,) = result.rows
    assert result.task == "classification" and result.environment.device == "cpu"
    assert student.values["test_accuracy"] == summary["test_accuracy"]
    assert student.values["ece"] == summary["test_ece"]
    assert student.values["parameters"] == sum(p.numel() for p in run.student.parameters())
    assert student.values["size_bytes"] == (run.run_dir / "student.safetensors").stat().st_size
    assert student.values["latency_ms"] is None  # a run does not time the model; kdistill eval does
    assert result.details["summary"] == summary
