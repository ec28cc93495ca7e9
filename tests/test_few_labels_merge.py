"""benchmarks/few_labels.py --merge: seeds run as separate processes pool into one summary, or are refused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location("few_labels", Path(__file__).parents[1] / "benchmarks/few_labels.py")
few_labels = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(few_labels)


def _part(tmp_path: Path, name: str, seeds: str, alone: list[float], distilled: list[float], **changes) -> str:
    run = {"config": "c.yaml", "overrides": [], "train_labeled": 10, "train_unlabeled": 90, "alone_epochs": 40,
           "distilled_epochs": 4, "teacher_epochs": None, "wall_s": 5.0, **changes}
    summary = few_labels.summarize({"alone": alone, "distilled": distilled}, 0.9, {**run, "seeds": seeds})
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(summary))
    return str(path)


def test_merge_equals_one_run_over_all_seeds(tmp_path: Path) -> None:
    a = _part(tmp_path, "a", "0,1", [0.70, 0.72], [0.80, 0.81])
    b = _part(tmp_path, "b", "2", [0.71], [0.79])
    merged = few_labels.merge([a, b])
    whole = json.loads(Path(_part(tmp_path, "w", "0,1,2", [0.70, 0.72, 0.71], [0.80, 0.81, 0.79])).read_text())
    for key in ("alone_mean", "alone_std", "distilled_mean", "distilled_std", "gap_recovered"):
        assert merged[key] == pytest.approx(whole[key])
    assert merged["seeds"] == "0,1,2" and merged["wall_s"] == 10.0
    assert merged["gap_recovered_per_seed"] == pytest.approx(whole["gap_recovered_per_seed"])


def test_merge_refuses_other_runs_and_repeated_seeds(tmp_path: Path) -> None:
    a = _part(tmp_path, "a", "0", [0.70], [0.80])
    other = _part(tmp_path, "o", "1", [0.70], [0.80], distilled_epochs=8)
    with pytest.raises(SystemExit, match="differs .* in distilled_epochs"):
        few_labels.merge([a, other])
    with pytest.raises(SystemExit, match="seeds 0,0 repeat"):
        few_labels.merge([a, _part(tmp_path, "again", "0", [0.71], [0.81])])


def test_merge_names_a_missing_results_file(tmp_path: Path) -> None:
    a = _part(tmp_path, "a", "0", [0.70], [0.80])
    with pytest.raises(SystemExit, match="error: no such results file: .*nowhere.json"):
        few_labels.merge([a, str(tmp_path / "nowhere.json")])
