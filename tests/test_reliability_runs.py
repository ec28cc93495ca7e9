"""Issue 19, points 1, 6 (checkpoints), 8 and 9: run names, --overwrite, damaged checkpoints, the run lock and
code named by run folders. Each fault is injected for real: the issue's commands, truncated and flipped files,
two real processes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from cli_helpers import run_main
from kdistill.config import load_config
from kdistill.errors import RunLockedError
from kdistill.runs import LOCK_FILE, MARKER_FILE, lock_run_dir, release_run_dir
from reliability_helpers import TINY, assert_one_error_line, cli_args, cli_env, flip_byte, snapshot, truncate


@pytest.fixture(autouse=True)
def _own_trust_store(tmp_path, monkeypatch):
    monkeypatch.setenv("KDISTILL_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One tiny finished run (2 epochs); tests work on copies of it."""
    from kdistill import api

    out = tmp_path_factory.mktemp("runs")
    config = load_config(overrides=["data.name=digits", "student.kwargs={width: 8, depth: 1}", "trainer.epochs=2",
                                    "trainer.progress=false", "trainer.accelerator=cpu", f"output_dir={out}",
                                    "name=done"])
    api.train(config)
    return out / "done"


def _copy(run: Path, tmp_path: Path) -> Path:
    """A copy of the run under tmp_path/runs, its saved output_dir pointing there (so --resume accepts it)."""
    target = tmp_path / "runs" / run.name
    shutil.copytree(run, target)
    saved = yaml.safe_load((target / "config.yaml").read_text())
    (target / "config.yaml").write_text(yaml.safe_dump({**saved, "output_dir": str(target.parent)}, sort_keys=False))
    return target


@pytest.fixture
def user_folder(tmp_path, monkeypatch) -> Path:
    """The issue's set-up: a folder with the user's own config.yaml and notes, and an empty runs/ inside."""
    folder = tmp_path / "p"
    (folder / "runs").mkdir(parents=True)
    (folder / "config.yaml").write_text("my: cfg\n")
    (folder / "notes.txt").write_text("precious\n")
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.parametrize("name", ["..", "<cwd>", "../../x", "a/b", ".", "", " "])
@pytest.mark.parametrize("overwrite", [True, False])
def test_issue_commands_with_path_names_touch_nothing(user_folder, monkeypatch, capsys, name, overwrite) -> None:
    name = str(user_folder) if name == "<cwd>" else name
    before = snapshot(user_folder.parent)
    args = ["train", "--name", name, *TINY, *(["--overwrite"] if overwrite else [])]
    code, _, err = run_main(monkeypatch, capsys, *args)
    line = assert_one_error_line(code, err)
    assert ("name: Input should be a valid string" if not name.strip() else "plain folder name") in line  # blank: None
    assert snapshot(user_folder.parent) == before  # notes.txt and the user's config.yaml are untouched


def test_overwrite_replaces_only_a_folder_kdistill_marked(user_folder, monkeypatch, capsys) -> None:
    code, _, err = run_main(monkeypatch, capsys, "train", "--name", "r", *TINY)
    assert code == 0, err
    run = user_folder / "runs" / "r"
    first_id = json.loads((run / MARKER_FILE).read_text())["run_id"]
    code, _, err = run_main(monkeypatch, capsys, "train", "--name", "r", *TINY, "--overwrite")
    assert code == 0, err
    assert json.loads((run / MARKER_FILE).read_text())["run_id"] != first_id  # a new run replaced the old one

    mine = user_folder / "runs" / "mine"  # looks like a run (a config.yaml) but kdistill did not create it
    mine.mkdir()
    (mine / "config.yaml").write_text("name: mine\n")
    (mine / "results.csv").write_text("1,2\n")
    code, _, err = run_main(monkeypatch, capsys, "train", "--name", "mine", *TINY, "--overwrite")
    assert "not a kdistill run folder" in assert_one_error_line(code, err)
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "results.csv"]
    assert (user_folder / "notes.txt").read_text() == "precious\n"


def test_resume_with_a_truncated_config_names_the_file(finished_run, tmp_path, monkeypatch, capsys) -> None:
    run = _copy(finished_run, tmp_path)
    truncate(run / "config.yaml", keep=0.4)
    code, _, err = run_main(monkeypatch, capsys, "train", *TINY, "--epochs", "2", "--output-dir", str(run.parent),
                            "--name", run.name, "--resume")
    line = assert_one_error_line(code, err)
    assert "config.yaml" in line and "damaged or invalid" in line


@pytest.mark.parametrize("damage", ["truncate state.pt", "flip student weights", "empty state.pt",
                                    "delete student weights", "garble checksums"])
def test_resume_from_a_damaged_checkpoint_names_the_file(finished_run, tmp_path, monkeypatch, capsys, damage):
    run = _copy(finished_run, tmp_path)
    last = run / "checkpoints/last"
    action, target = damage.split(" ", 1)
    file = {"state.pt": last / "state.pt", "student weights": last / "student.safetensors",
            "checksums": last / "checksums.json"}[target]
    {"truncate": truncate, "flip": flip_byte, "empty": lambda p: p.write_bytes(b""), "delete": Path.unlink,
     "garble": lambda p: p.write_text("{not json")}[action](file)
    code, _, err = run_main(monkeypatch, capsys, "train", *TINY, "--epochs", "3", "--output-dir", str(run.parent),
                            "--name", run.name, "--resume")
    line = assert_one_error_line(code, err)
    assert file.name in line and "damaged" in line
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # nothing was trained on the bad checkpoint


def test_flipped_bytes_in_final_weights_are_refused_by_eval(finished_run, tmp_path, monkeypatch, capsys) -> None:
    run = _copy(finished_run, tmp_path)
    code, out, err = run_main(monkeypatch, capsys, "eval", str(run), "--latency-runs", "1")
    assert code == 0, err
    flip_byte(run / "student.safetensors")
    code, _, err = run_main(monkeypatch, capsys, "eval", str(run), "--latency-runs", "1")
    line = assert_one_error_line(code, err)
    assert "student.safetensors" in line and "damaged" in line


def _wait_for(condition, process: subprocess.Popen, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_second_process_on_a_running_run_is_refused_naming_the_holder(tmp_path, monkeypatch, capsys) -> None:
    """A real training process holds the folder; a second real process (--resume) and this one (--overwrite) are
    refused with the holder named; after kill -9 the kernel has freed the lock."""
    args = ["train", *TINY, "--epochs", "400", "--batch-size", "8", "--output-dir", str(tmp_path), "--name", "busy"]
    run = tmp_path / "busy"
    first = subprocess.Popen(cli_args(*args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        _wait_for(lambda: (run / "checkpoints/last/state.pt").exists(), first, "checkpoint")
        second = subprocess.run(cli_args(*args, "--resume"), env=cli_env(), capture_output=True, text=True,
                                timeout=120)
        line = assert_one_error_line(second.returncode, second.stderr)
        assert f"in use by process {first.pid} on " in line and "started 20" in line
        code, _, err = run_main(monkeypatch, capsys, *args, "--overwrite")
        assert f"in use by process {first.pid} on " in assert_one_error_line(code, err)
        assert first.poll() is None  # the first run was not disturbed
        epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert epochs == list(range(1, len(epochs) + 1))  # no duplicated epochs (numbered from 1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    lock_run_dir(run)  # the kernel freed the dead process's lock: the folder can be taken again
    assert json.loads((run / LOCK_FILE).read_text())["pid"] != first.pid
    release_run_dir(run)
    with pytest.raises(RunLockedError, match="in use by"):  # and a holder is detected through the API as well
        _locked_elsewhere(run)


def _locked_elsewhere(run: Path) -> None:
    """Take the lock in a forked child (another process), then try it here."""
    import os

    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: hold the lock until the parent is done
        try:
            lock_run_dir(run)
            os.write(write, b"1")
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        os.read(read, 1)
        lock_run_dir(run)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


MODEL_CODE = """
from pathlib import Path
import torch
Path({sentinel!r}).write_text("imported")
def tiny(num_classes, input_shape, **unused):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(torch.tensor(input_shape).prod()), num_classes))
"""


def test_eval_imports_run_folder_code_only_when_trusted(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code_file = tmp_path / "mymodels.py"
    sentinel = tmp_path / "imported.txt"
    code_file.write_text(MODEL_CODE.format(sentinel=str(sentinel)))
    args = ["train", *TINY, "--student", f"file:{code_file}:tiny", "--output-dir", str(tmp_path / "runs")]
    code, _, err = run_main(monkeypatch, capsys, *args, "--name", "mine")
    assert code == 0, err
    sentinel.unlink()
    code, _, err = run_main(monkeypatch, capsys, "eval", "runs/mine", "--latency-runs", "1")
    assert code == 0 and sentinel.is_file(), err  # created here: its hash was recorded, so it is trusted
    sentinel.unlink()

    code_file.write_text(code_file.read_text() + "\n# changed after the run\n")  # e.g. a run folder from elsewhere
    code, _, err = run_main(monkeypatch, capsys, "eval", "runs/mine", "--latency-runs", "1")
    line = assert_one_error_line(code, err)
    assert "--trust-code" in line and "mymodels.py" in line
    assert not sentinel.exists()  # the file was not imported
    code, _, err = run_main(monkeypatch, capsys, "eval", "runs/mine", "--latency-runs", "1", "--trust-code")
    assert code == 0 and sentinel.is_file(), err
