"""``kdistill compare`` end to end on digits with tiny models: the table files, mean/std recomputed from the runs'
summaries, one shared teacher cache for the logit-only methods, the combination syntax, and bad input."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import shutil
import statistics
import sys
from pathlib import Path

import pytest
import yaml

from kdistill import api, cli
from kdistill import compare as compare_module
from kdistill.config import load_config
from kdistill.errors import RunFolderError

SEEDS = [0, 1]
METHODS = "kd,dkd,rkd,kd=0.5+fitnet"
LABELS = ["kd", "dkd", "rkd", "kd=0.5+fitnet"]


def run_cli(*args: str) -> tuple[int, str, str]:
    """The real entry point ``kdistill.cli.main`` in-process; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.setattr(sys, "argv", ["kdistill", *args])
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code
    return int(code or 0), out.getvalue(), err.getvalue()


def write_config(folder: Path, teacher_weights: str | None) -> Path:
    teacher = {"name": "cnn", "kwargs": {"width": 8}}
    if teacher_weights:
        teacher["weights"] = teacher_weights
    config = {
        "name": "digits-methods",
        "output_dir": str(folder / "runs"),
        "data": {"name": "digits"},
        "student": {"name": "mlp", "kwargs": {"width": 8, "depth": 1}},
        "teacher": teacher,
        # Weights for entries that name none; options of methods not in a run must be left out of it.
        "distill": {"methods": {"kd": 1.0, "fitnet": 10.0, "rkd": 2.0},
                    "method_options": {"rkd": {"distance_weight": 20.0}}},
        "trainer": {"epochs": 2, "progress": False, "accelerator": "cpu"},
    }
    path = folder / ("config.yaml" if teacher_weights else "no_weights.yaml")
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("compare")
    teacher_config = load_config(None, ["data.name=digits", "student.name=cnn", "student.kwargs={width: 8}",
                                        "trainer.epochs=2", "trainer.progress=false", "trainer.accelerator=cpu",
                                        f"output_dir={folder}", "name=teacher"])
    teacher = api.train(teacher_config)
    weights = str(teacher.run_dir / "student.safetensors")
    return {"folder": folder, "config": write_config(folder, weights), "no_weights": write_config(folder, None),
            "teacher_accuracy": teacher.metrics["test_accuracy"]}


@pytest.fixture(scope="module")
def compared(setup) -> dict:
    builds = []

    def counting_build_cache(*args, **kwargs):
        builds.append(args[1])
        return real_build_cache(*args, **kwargs)

    real_build_cache = compare_module.build_cache
    args = ["compare", str(setup["config"]), "--methods", METHODS, "--seeds", "0,1", "--name", "cmp"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare_module, "build_cache", counting_build_cache)
        code, out, err = run_cli(*args)
    assert code == 0, err
    folder = setup["folder"] / "runs" / "cmp"
    return {"folder": folder, "builds": builds, "out": out, "args": args,
            "results": json.loads((folder / "results.json").read_text())}


def method_rows(results: dict) -> list[dict]:
    """The ranked rows of results.json (the teacher and the student alone come first, unranked)."""
    return [row for row in results["rows"] if row["role"] == "method"]


def summary(folder: Path, run: str) -> dict:
    return json.loads((folder / run / "summary.json").read_text())


def run_config(folder: Path, run: str) -> dict:
    return yaml.safe_load((folder / run / "config.yaml").read_text())


def test_table_files_and_command_line(compared) -> None:
    folder, results = compared["folder"], compared["results"]
    markdown = (folder / "results.md").read_text()
    command = shlex.join(["kdistill", *compared["args"]])
    assert command in markdown and results["command"] == command  # the exact command, one copy-paste away
    assert "Ranked by the mean test accuracy of the LAST epoch" in markdown
    for label in LABELS:
        assert f"| {label} |" in markdown
    assert sorted(row["name"] for row in method_rows(results)) == sorted(LABELS)
    assert "compare folder:" in compared["out"]


def test_means_stds_and_gap_recomputed_from_the_run_summaries(compared, setup) -> None:
    folder, results = compared["folder"], compared["results"]
    alone = [summary(folder, f"student-alone-seed{seed}") for seed in SEEDS]
    alone_last = statistics.mean(s["test_accuracy"] for s in alone)
    alone_time = statistics.mean(s["epoch_time_s"] for s in alone)
    teacher = setup["teacher_accuracy"]
    assert results["details"]["teacher_test_accuracy"] == pytest.approx(teacher)
    rows = {row["name"]: row for row in results["rows"]}
    assert rows["Teacher"]["test_accuracy"] == pytest.approx(teacher)
    assert rows["student-alone"]["test_accuracy"] == pytest.approx(alone_last)
    for row in method_rows(results):
        runs = [summary(folder, f"{row['name']}-seed{seed}") for seed in SEEDS]
        for key in ("test_accuracy", "test_accuracy_best"):
            values = [s[key] for s in runs]
            assert row[key] == pytest.approx(statistics.mean(values))
            assert row[f"{key}_std"] == pytest.approx(statistics.stdev(values))
            assert [s[key] for s in row["per_seed"]] == pytest.approx(values)
        assert [s["seed"] for s in row["per_seed"]] == SEEDS
        last = statistics.mean(s["test_accuracy"] for s in runs)
        if teacher > alone_last:
            assert row["gap_recovered"] == pytest.approx((last - alone_last) / (teacher - alone_last))
        mean_time = statistics.mean(s["epoch_time_s"] for s in runs)
        assert row["epoch_time_s"] == pytest.approx(mean_time)
        assert row["epoch_time_vs_alone"] == pytest.approx(mean_time / alone_time)
    means = [row["test_accuracy"] for row in method_rows(results)]
    assert means == sorted(means, reverse=True)  # ranked by the last-epoch mean
    assert [row["rank"] for row in method_rows(results)] == list(range(1, len(LABELS) + 1))


def test_one_cache_for_the_logit_only_runs_and_live_teacher_for_feature_methods(compared) -> None:
    folder = compared["folder"]
    assert compared["builds"] == [folder / "teacher-cache"]
    assert len(list(folder.rglob("manifest.json"))) == 1
    for seed in SEEDS:
        for label in ("kd", "dkd"):
            teacher = run_config(folder, f"{label}-seed{seed}")["teacher"]
            assert teacher["kind"] == "cache" and teacher["dir"] == str(folder / "teacher-cache")
            assert teacher["weights"]  # kept, so the cache's teacher fingerprint is checked
        for label in ("rkd", "kd=0.5+fitnet"):
            assert run_config(folder, f"{label}-seed{seed}")["teacher"]["name"] == "cnn"
        assert run_config(folder, f"student-alone-seed{seed}")["teacher"] is None
    kinds = {row["name"]: row["teacher"] for row in method_rows(compared["results"])}
    assert kinds == {"kd": "cache", "dkd": "cache", "rkd": "live", "kd=0.5+fitnet": "live"}


def test_combinations_weights_options_and_extra_parameters(compared) -> None:
    folder = compared["folder"]
    combined = run_config(folder, "kd=0.5+fitnet-seed0")["distill"]
    assert combined["methods"] == {"kd": 0.5, "fitnet": 10.0}  # fitnet's weight from the config
    assert combined["method_options"] == {}
    relational = run_config(folder, "rkd-seed0")["distill"]
    assert relational["methods"] == {"rkd": 2.0}
    assert relational["method_options"] == {"rkd": {"distance_weight": 20.0}}
    assert run_config(folder, "kd-seed0")["distill"]["method_options"] == {}
    extra = {row["name"]: row["extra_parameters"] for row in method_rows(compared["results"])}
    # fitnet on the penultimate features: Linear(8 student units -> 32 teacher channels) = 8 * 32 + 32.
    assert extra == {"kd": 0, "dkd": 0, "rkd": 0, "kd=0.5+fitnet": 8 * 32 + 32}


def test_python_api_without_baseline_or_cache(setup, tmp_path) -> None:
    config = load_config(setup["config"])
    result = compare_module.compare(config, ["kd"], [3], output_dir=str(tmp_path), baseline=False, cache=False)
    assert result.folder == tmp_path / "compare-digits-methods"
    assert result.baseline is None and result.cache is None
    (row,) = result.rows
    assert row.teacher == "live" and row.gap_recovered is None and row.test_accuracy.std is None
    assert not (result.folder / "teacher-cache").exists()
    assert result.command in (result.folder / "results.md").read_text()
    assert "--no-baseline --no-cache --overwrite" in result.command


def assert_one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("methods", "seeds", "config", "fragment"),
    [
        ("kd,kdd", "0,1", "config", "known: "),
        ("", "0,1", "config", "no methods given"),
        (",", "0,1", "config", "no methods given"),
        ("kd=x", "0,1", "config", "must be a number"),
        ("kd=0", "0,1", "config", "positive"),
        ("kd,kd", "0,1", "config", "repeats"),
        ("kd", "0,a", "config", "integers"),
        ("kd", "", "config", "no seeds"),
        ("kd", "0,1.5", "config", "integers"),
        ("kd", "0,1", "no_weights", "teacher has weights"),
    ],
)
def test_bad_input_is_one_error_line_before_any_training(setup, methods, seeds, config, fragment) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("a run started before the input was checked")

    out_dir = setup["folder"] / "bad"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api, "train", no_training)
        patch.setattr(api, "distill", no_training)
        code, _, err = run_cli("compare", str(setup[config]), "--methods", methods, "--seeds", seeds,
                               "--output-dir", str(out_dir), "--name", "x")
    assert_one_line_error(code, err)
    assert fragment in err
    assert not out_dir.exists()


def test_unknown_method_error_lists_the_known_ones(setup) -> None:
    code, _, err = run_cli("compare", str(setup["config"]), "--methods", "kd,at,kdd", "--output-dir",
                           str(setup["folder"] / "bad"))
    assert_one_line_error(code, err)
    assert "'kdd'" in err and all(name in err for name in ("kd", "dkd", "fitnet", "rkd", "crd"))


def test_existing_compare_folder_is_refused(compared, setup) -> None:
    code, _, err = run_cli("compare", str(setup["config"]), "--methods", "kd", "--seeds", "0", "--name", "cmp")
    assert_one_line_error(code, err)
    assert "--overwrite" in err
    assert (compared["folder"] / "results.json").is_file()


def test_resume_reuses_finished_runs_and_continues_the_rest(setup, tmp_path) -> None:
    base = load_config(setup["config"], ["trainer.epochs=1"])
    first = compare_module.compare(base, ["kd"], [0, 1], output_dir=str(tmp_path), cache=False)
    shutil.rmtree(first.folder / "student-alone-seed1")  # never started
    calls: list[tuple[str, bool]] = []

    def spy(real):
        def wrapped(config, overwrite=False, resume=False):
            calls.append((config.name, resume))
            return real(config, overwrite=overwrite, resume=resume)
        return wrapped

    longer = load_config(setup["config"], ["trainer.epochs=2"])  # only the epoch count may grow
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api, "train", spy(api.train))
        patch.setattr(api, "distill", spy(api.distill))
        second = compare_module.compare(longer, ["kd"], [0, 1], output_dir=str(tmp_path), cache=False, resume=True)
    assert sorted(calls) == [("kd-seed0", True), ("kd-seed1", True), ("student-alone-seed0", True),
                             ("student-alone-seed1", False)]
    for run in ("kd-seed0", "student-alone-seed1"):
        assert [r["epoch"] for r in map(json.loads, (second.folder / run / "metrics.jsonl").read_text().splitlines())] \
            == [1, 2]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api, "train", no_training)
        patch.setattr(api, "distill", no_training)
        third = compare_module.compare(longer, ["kd"], [0, 1], output_dir=str(tmp_path), cache=False, resume=True)
    assert third.rows[0].per_seed == second.rows[0].per_seed
    assert third.baseline.test_accuracy == second.baseline.test_accuracy


def test_resume_refuses_another_config_or_overwrite(setup, tmp_path) -> None:
    config = load_config(setup["config"], ["trainer.epochs=1"])
    compare_module.compare(config, ["kd"], [0], output_dir=str(tmp_path), cache=False, baseline=False)
    hotter = load_config(setup["config"], ["trainer.epochs=1", "distill.temperature=8"])
    with pytest.raises(RunFolderError, match="distill.temperature"):
        compare_module.compare(hotter, ["kd"], [0], output_dir=str(tmp_path), cache=False, baseline=False,
                               resume=True)
    with pytest.raises(RunFolderError, match="not both"):
        compare_module.compare(config, ["kd"], [0], output_dir=str(tmp_path), cache=False, baseline=False,
                               resume=True, overwrite=True)
    code, _, err = run_cli("compare", str(setup["config"]), "--methods", "kd", "--seeds", "0", "--resume",
                           "--output-dir", str(tmp_path / "nothing"))
    assert_one_line_error(code, err)
    assert "start it without --resume" in err


def test_shared_cache_dir_is_built_once_and_reused(setup, tmp_path) -> None:
    config = load_config(setup["config"], ["trainer.epochs=1"])
    store = tmp_path / "shared-cache"
    first = compare_module.compare(config, ["kd"], [0], output_dir=str(tmp_path), name="a", baseline=False,
                                   cache_dir=store)
    shards = {path.name: path.stat().st_mtime_ns for path in store.glob("shard-*")}
    second = compare_module.compare(config, ["kd"], [0], output_dir=str(tmp_path), name="b", baseline=False,
                                    cache_dir=store)
    assert shards and {path.name: path.stat().st_mtime_ns for path in store.glob("shard-*")} == shards
    assert not (first.folder / "teacher-cache").exists() and not (second.folder / "teacher-cache").exists()
    assert run_config(second.folder, "kd-seed0")["teacher"]["dir"] == str(store)
    assert "an existing store" in second.caption and "built in" in first.caption
    assert first.rows[0].per_seed[0]["test_accuracy"] == second.rows[0].per_seed[0]["test_accuracy"]
    assert f"--cache-dir {store}" in second.command
