"""`kdistill demo`: teacher, student alone and student distilled, measured side by side."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kdistill import demo
from kdistill.errors import ConfigError, RunFolderError
from kdistill.results import ResultTable

KDISTILL = Path(sys.executable).with_name("kdistill")
ROWS = ["Teacher", "Student (alone)", "Student (distilled)"]


@pytest.fixture
def tiny_digits_preset(monkeypatch) -> None:
    preset = demo.PRESETS["digits"]
    monkeypatch.setitem(preset, "teacher_epochs", 2)
    monkeypatch.setitem(preset, "student_epochs", 2)


def test_run_demo_tiny(tmp_path, tiny_digits_preset) -> None:
    result = demo.run_demo(output_dir=str(tmp_path))
    top = tmp_path / "demo-digits"
    assert result.run_dir == top
    assert [row.name for row in result.table.rows] == ROWS
    assert ResultTable.from_json(top / "results.json") == result.table  # what the report will read back
    assert f"kdistill demo --data digits --output-dir {tmp_path} --name demo-digits --seed 0" in (
        top / "results.md").read_text()
    saved = json.loads((top / "results.json").read_text())
    rows = {row["name"]: row for row in saved["rows"]}
    assert list(rows) == ROWS
    assert saved["title"] == "kdistill demo: digits"
    teacher, alone, distilled = (rows[n] for n in ROWS)
    assert teacher["parameters"] > alone["parameters"] == distilled["parameters"]
    assert teacher["size_bytes"] > alone["size_bytes"]
    assert teacher["agreement"] is None
    assert alone["agreement"] is not None and distilled["agreement"] is not None
    for row in rows.values():
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["latency_ms"] > 0
    markdown = (top / "results.md").read_text()
    for name in ROWS:
        assert re.search(rf"^\| {re.escape(name)} \|", markdown, re.MULTILINE), name
    # Each model is a run folder of its own, trained for the preset's epochs.
    # The student alone sees only the labelled 5%, for as many optimiser steps as the distilled student.
    preset = demo.PRESETS["digits"]
    alone_epochs = demo.alone_epochs(preset["data"], 2, preset["batch_size"])
    assert alone_epochs > 2
    for sub, epochs in [("teacher", 2), ("student-alone", alone_epochs), ("student-distilled", 2)]:
        summary = json.loads((top / sub / "summary.json").read_text())
        assert summary["epochs"] == epochs
    distilled_summary = json.loads((top / "student-distilled/summary.json").read_text())
    assert distilled["test_accuracy"] == pytest.approx(distilled_summary["test_accuracy"])
    assert distilled["agreement"] == pytest.approx(distilled_summary["test_agreement"])
    assert teacher["test_accuracy"] == pytest.approx(distilled_summary["teacher_test_accuracy"])
    alone_summary = json.loads((top / "student-alone/summary.json").read_text())
    assert alone_summary["train_unlabeled"] == 0 < alone_summary["train_labeled"] == distilled_summary["train_labeled"]
    assert distilled_summary["train_unlabeled"] > 10 * distilled_summary["train_labeled"]  # the 95% transfer set
    expected_gap = (distilled["test_accuracy"] - alone["test_accuracy"]) / (teacher["test_accuracy"]
                                                                           - alone["test_accuracy"])
    assert distilled["gap_recovered"] == pytest.approx(expected_gap)
    assert alone["gap_recovered"] is None and teacher["gap_recovered"] is None


def test_demo_folder_is_not_replaced_without_overwrite(tmp_path, tiny_digits_preset) -> None:
    top = tmp_path / "demo-digits"
    top.mkdir()
    (top / "config.yaml").write_text("name: demo-digits\n")
    (top / "keep.txt").write_text("x")
    with pytest.raises(RunFolderError):
        demo.run_demo(output_dir=str(tmp_path))
    assert (top / "keep.txt").read_text() == "x"


def test_demo_unknown_data(tmp_path) -> None:
    with pytest.raises(ConfigError, match="demo data 'mnist' unknown; choose one of digits, fashion-mnist"):
        demo.run_demo(data="mnist", output_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_kdistill_demo_full_preset(tmp_path) -> None:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    result = subprocess.run(
        [str(KDISTILL), "demo", "--output-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = []
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        if cells and cells[0] in ROWS:
            found.append(cells[0])
            assert cells[3].endswith("%")
    assert found == ROWS
    rows = json.loads((tmp_path / "demo-digits/results.json").read_text())["rows"]
    teacher, alone, distilled = rows
    assert teacher["parameters"] > alone["parameters"]
    # The full preset trains long enough to learn digits well above chance (10 classes).
    assert teacher["test_accuracy"] > 0.9 and alone["test_accuracy"] > 0.85 and distilled["test_accuracy"] > 0.85


def test_demo_command_bad_data_is_one_error_line(tmp_path, monkeypatch, capsys) -> None:
    from kdistill import cli

    monkeypatch.setattr(sys, "argv", ["kdistill", "demo", "--data", "mnist", "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error: demo data 'mnist' unknown")
    assert not any(tmp_path.iterdir())
