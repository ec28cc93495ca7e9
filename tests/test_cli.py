"""The command line: every bad input is one `error:` line and exit status 2 with no run folder; train/distill/eval
end to end on digits with tiny models."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_helpers import run_main
from kdistill.config import ModelConfig
from kdistill.models import build_model, save_weights

KDISTILL = Path(sys.executable).with_name("kdistill")
TINY = [
    "--data",
    "digits",
    "--student",
    "mlp",
    "--student-kwargs",
    "{width: 8, depth: 1}",
    "--epochs",
    "1",
    "--no-progress",
    "--accelerator",
    "cpu",
]


def assert_one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    build = lambda width, classes: build_model(  # noqa: E731
        ModelConfig(name="mlp", kwargs={"width": width, "depth": 1}), (1, 8, 8), classes
    )
    save_weights(build(16, 10), folder / "teacher16.safetensors")
    save_weights(build(16, 3), folder / "three_classes.safetensors")
    return folder


def _bad_inputs(w: Path) -> dict[str, list[str]]:
    teacher = ["--teacher", "mlp", "--teacher-kwargs", "{width: 16, depth: 1}"]
    return {
        "unknown model": ["train", *TINY, "--student", "mpl"],
        "unknown timm model": ["train", *TINY, "--student", "timm:resnet10tt"],
        "unknown data": ["train", *TINY, "--data", "digts"],
        "missing csv": ["train", *TINY, "--data", "csv:/nope.csv"],
        "missing imagefolder": ["train", *TINY, "--data", "imagefolder:/nope/images"],
        "class count mismatch": ["distill", *TINY, *teacher, "--teacher-weights", str(w / "three_classes.safetensors")],
        "checkpoint does not fit": [
            "distill",
            *TINY,
            "--teacher",
            "mlp",
            "--teacher-kwargs",
            "{width: 32, depth: 1}",
            "--teacher-weights",
            str(w / "teacher16.safetensors"),
        ],
        "missing teacher weights file": ["distill", *TINY, *teacher, "--teacher-weights", str(w / "nope.safetensors")],
        "alpha 1.5": [
            "distill",
            *TINY,
            *teacher,
            "--teacher-weights",
            str(w / "teacher16.safetensors"),
            "--alpha",
            "1.5",
        ],
        "temperature 0": [
            "distill",
            *TINY,
            *teacher,
            "--teacher-weights",
            str(w / "teacher16.safetensors"),
            "--temperature",
            "0",
        ],
        "negative method weight": [
            "distill",
            *TINY,
            *teacher,
            "--teacher-weights",
            str(w / "teacher16.safetensors"),
            "--method",
            "kd=-1",
        ],
        "unknown method": [
            "distill",
            *TINY,
            *teacher,
            "--teacher-weights",
            str(w / "teacher16.safetensors"),
            "--method",
            "kdd",
        ],
        "distill without teacher weights": ["distill", *TINY, *teacher],
        "distill without teacher": ["distill", *TINY],
        "unknown config key": ["train", *TINY, "--set", "trainer.epoch=3"],
        "epochs 0": ["train", *TINY, "--epochs", "0"],
        "cnn on tabular": ["train", *TINY, "--data", "csv:CSV", "--student", "cnn"],
        "resume without checkpoint": ["train", *TINY, "--resume"],
    }


BAD_INPUTS = list(_bad_inputs(Path("w")))


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_error_line(case: str, tmp_path, weights_dir, monkeypatch, capsys) -> None:
    csv = tmp_path / "table.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    args = [a.replace("csv:CSV", f"csv:{csv}") for a in _bad_inputs(weights_dir)[case]]
    out_dir = tmp_path / "runs"
    code, _, err = run_main(monkeypatch, capsys, *args, "--output-dir", str(out_dir), "--name", "bad")
    assert_one_line_error(code, err)
    assert not (out_dir / "bad").exists(), f"{case}: a run folder was created"


def test_error_messages_name_the_problem(tmp_path, weights_dir, monkeypatch, capsys) -> None:
    bad = _bad_inputs(weights_dir)
    expected = {
        "unknown model": "did you mean 'mlp'",
        "unknown data": "did you mean 'digits'",
        "missing csv": "/nope.csv",
        "class count mismatch": "head.weight",
        "checkpoint does not fit": "do not fit the teacher",
        "alpha 1.5": "distill.alpha",
        "temperature 0": "distill.temperature",
        "distill without teacher weights": "teacher.weights is required",
        "distill without teacher": "distill needs a teacher",
        "unknown config key": "trainer.epoch",
    }
    for case, fragment in expected.items():
        code, _, err = run_main(monkeypatch, capsys, *bad[case], "--output-dir", str(tmp_path), "--name", "x")
        assert code == 2 and fragment in err, (case, err)


def test_existing_run_folder_is_refused_and_kept(tmp_path, monkeypatch, capsys) -> None:
    common = [*TINY, "--output-dir", str(tmp_path), "--name", "r"]
    code, out, err = run_main(monkeypatch, capsys, "train", *common)
    assert code == 0, err
    snapshot = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    code, _, err = run_main(monkeypatch, capsys, "train", *common)
    assert_one_line_error(code, err)
    assert "--overwrite" in err and "--resume" in err
    assert {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == snapshot
    code, _, err = run_main(monkeypatch, capsys, "train", *common, "--overwrite", "--resume")
    assert_one_line_error(code, err)
    code, _, err = run_main(monkeypatch, capsys, "train", *common, "--overwrite")
    assert code == 0, err


def test_overwrite_of_a_foreign_folder_is_refused(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("mine")
    code, _, err = run_main(
        monkeypatch, capsys, "train", *TINY, "--output-dir", str(tmp_path), "--name", "r", "--overwrite"
    )
    assert_one_line_error(code, err)
    assert (tmp_path / "r" / "keep.txt").read_text() == "mine"


def test_run_path_that_is_a_file(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "r").write_text("a file where the run folder would go")
    for extra in ([], ["--overwrite"], ["--resume"]):
        code, _, err = run_main(
            monkeypatch, capsys, "train", *TINY, "--output-dir", str(tmp_path), "--name", "r", *extra
        )
        assert_one_line_error(code, err)
        assert (tmp_path / "r").read_text() == "a file where the run folder would go"
    code, _, err = run_main(monkeypatch, capsys, "train", *TINY, "--output-dir", str(tmp_path / "r"), "--name", "x")
    assert_one_line_error(code, err)


def test_eval_with_nothing_to_evaluate(monkeypatch, capsys) -> None:
    code, _, err = run_main(monkeypatch, capsys, "eval")
    assert_one_line_error(code, err)


def test_eval_of_a_folder_that_is_not_a_run(tmp_path, monkeypatch, capsys) -> None:
    code, _, err = run_main(monkeypatch, capsys, "eval", str(tmp_path))
    assert_one_line_error(code, err)


def test_config_command_prints_resolved_yaml(monkeypatch, capsys) -> None:
    code, out, err = run_main(monkeypatch, capsys, "config", "--set", "trainer.epochs=3", "--set", "distill.alpha=0.2")
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed["trainer"]["epochs"] == 3 and printed["distill"]["alpha"] == 0.2
    assert printed["student"]["name"] == "mlp"


def test_entry_point_in_a_subprocess(tmp_path) -> None:
    """The installed `kdistill` script: bad input -> exit 2, one stderr line, no traceback, no folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            str(KDISTILL),
            "distill",
            *TINY,
            "--teacher",
            "mlp",
            "--teacher-weights",
            "x.safetensors",
            "--alpha",
            "1.5",
            "--output-dir",
            str(tmp_path),
            "--name",
            "bad",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert_one_line_error(result.returncode, result.stderr)
    assert "distill.alpha" in result.stderr
    assert not (tmp_path / "bad").exists()


def _table_rows(text: str, names: list[str]) -> dict[str, list[str]]:
    """Cells of the rich table rows whose first cell is one of ``names``."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0] in names:
            rows[cells[0]] = cells
    return rows


def test_train_distill_eval_end_to_end(tmp_path, monkeypatch, capsys) -> None:
    runs = tmp_path / "runs"
    common = ["--data", "digits", "--no-progress", "--accelerator", "cpu", "--output-dir", str(runs)]
    code, out, err = run_main(
        monkeypatch,
        capsys,
        "train",
        *common,
        "--name",
        "teacher",
        "--student",
        "mlp",
        "--student-kwargs",
        "{width: 32, depth: 1}",
        "--epochs",
        "2",
    )
    assert code == 0, err
    summary = json.loads((runs / "teacher/summary.json").read_text())
    assert f"test accuracy {100 * summary['test_accuracy']:.2f}%" in out
    student = ["--student", "mlp", "--student-kwargs", "{width: 8, depth: 1}", "--epochs", "2"]
    code, out, err = run_main(monkeypatch, capsys, "train", *common, *student, "--name", "alone")
    assert code == 0, err
    code, out, err = run_main(
        monkeypatch,
        capsys,
        "distill",
        *common,
        *student,
        "--name",
        "distilled",
        "--teacher",
        "mlp",
        "--teacher-kwargs",
        "{width: 32, depth: 1}",
        "--teacher-weights",
        str(runs / "teacher/student.safetensors"),
        "-T",
        "2",
        "--alpha",
        "0.3",
    )
    assert code == 0, err
    distilled_summary = json.loads((runs / "distilled/summary.json").read_text())
    assert "agreement with teacher" in out
    assert "train_kd" in json.loads((runs / "distilled/metrics.jsonl").read_text().splitlines()[0])
    saved = yaml.safe_load((runs / "distilled/config.yaml").read_text())
    assert saved["distill"]["temperature"] == 2.0 and saved["distill"]["alpha"] == 0.3

    table_dir = tmp_path / "table"
    code, out, err = run_main(
        monkeypatch,
        capsys,
        "eval",
        str(runs / "alone"),
        str(runs / "distilled"),
        "--teacher",
        str(runs / "teacher"),
        "--latency-runs",
        "3",
        "--output",
        str(table_dir),
    )
    assert code == 0, err
    names = ["teacher", "alone", "distilled"]
    printed = _table_rows(out, names)
    assert list(printed) == names
    results = json.loads((table_dir / "results.json").read_text())
    rows = {row["name"]: row for row in results["rows"]}
    assert list(rows) == names
    assert rows["teacher"]["agreement"] is None
    assert 0.0 <= rows["distilled"]["agreement"] <= 1.0 and 0.0 <= rows["alone"]["agreement"] <= 1.0
    assert rows["teacher"]["parameters"] > rows["alone"]["parameters"] == rows["distilled"]["parameters"]
    # The table agrees with the runs' own summaries and with the JSON.
    assert rows["teacher"]["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert rows["distilled"]["test_accuracy"] == pytest.approx(distilled_summary["test_accuracy"])
    assert rows["distilled"]["agreement"] == pytest.approx(distilled_summary["test_agreement"])
    for name in names:
        assert printed[name][1] == f"{rows[name]['parameters']:,}"
        assert printed[name][3] == f"{100 * rows[name]['test_accuracy']:.2f}%"
    assert printed["teacher"][4] == "-"
    markdown = (table_dir / "results.md").read_text()
    md_rows = _table_rows(markdown, names)
    assert list(md_rows) == names
    assert md_rows["alone"][3] == printed["alone"][3]

    # One checkpoint on its own: --model/--weights, named after the weights file.
    code, out, err = run_main(
        monkeypatch,
        capsys,
        "eval",
        "--model",
        "mlp",
        "--model-kwargs",
        "{width: 8, depth: 1}",
        "--weights",
        str(runs / "distilled/student.safetensors"),
        "--latency-runs",
        "2",
    )
    assert code == 0, err
    single = _table_rows(out, ["student"])
    assert single["student"][3] == printed["distilled"][3]
