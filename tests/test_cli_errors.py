"""Every way a command line can go wrong ends in one ``error:`` line and a known exit status, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli_helpers import run_main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def assert_one_error_line(code: int, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["distill", "--epoch", "3"], "No such option: --epoch"),  # unknown option
        (["distil"], "No such command 'distil'"),  # unknown command
        (["corpus"], "Missing argument 'path'"),  # missing argument
        (["train", "--epochs", "abc"], "Invalid value for '--epochs'"),  # bad value of a typed option
        (["eval", "--latency-runs", "1.5"], "Invalid value for '--latency-runs'"),
        (["cache", "info"], "Missing argument 'DIR'"),  # in a sub-app (cache build: CONFIG optional, flags instead)
        (["cache", "nosuch"], "No such command 'nosuch'"),
        (["train", "--name"], "Option '--name' requires an argument"),  # option without its value
        (["compare", "x.yaml", "--baseline=3"], "--baseline"),  # a flag given a value
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, fragment, monkeypatch, capsys) -> None:
    code, out, err = run_main(monkeypatch, capsys, *args)
    line = assert_one_error_line(code, err)
    assert fragment in line
    assert "--help" in line  # where to look next, on the same line


def test_help_exits_0_and_a_bare_command_group_shows_its_help(monkeypatch, capsys) -> None:
    code, out, err = run_main(monkeypatch, capsys, "--help")
    assert code == 0 and "distill" in out and "compare" in out
    code, out, err = run_main(monkeypatch, capsys, "cache")
    assert code == 2 and "build" in out + err and "Traceback" not in err


def test_a_truncated_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys) -> None:
    weights = tmp_path / "teacher.pt"
    torch.save({"w": torch.zeros(3)}, weights)
    weights.write_bytes(weights.read_bytes()[:0])  # empty: torch.load raises EOFError
    code, _, err = run_main(monkeypatch, capsys, "eval", "--model", "mlp", "--weights", str(weights),
                            "--latency-runs", "1")
    line = assert_one_error_line(code, err)
    assert str(weights) in line and "truncated" in line


def test_a_raw_eof_error_names_the_file_being_read(tmp_path, monkeypatch, capsys) -> None:
    from kdistill import cli

    state = tmp_path / "state.pt"
    state.write_bytes(b"")  # what a kill during a non-atomic write leaves behind

    monkeypatch.setattr(cli.app, "registered_commands", list(cli.app.registered_commands))
    cli.app.command("load-state")(lambda: torch.load(state, weights_only=True))
    code, _, err = run_main(monkeypatch, capsys, "load-state")
    line = assert_one_error_line(code, err)
    assert str(state) in line and "EOFError" in line


def test_keyboard_interrupt_and_an_exit_code_of_the_error_are_honoured(monkeypatch, capsys) -> None:
    from kdistill import cli
    from kdistill.errors import KdistillError

    class Interrupted(KdistillError):  # the shape of the training loop's own interruption error
        exit_code = 143

    def raises(exc: BaseException):
        def command() -> None:
            raise exc
        return command

    monkeypatch.setattr(cli.app, "registered_commands", list(cli.app.registered_commands))
    cli.app.command("ctrl-c")(raises(KeyboardInterrupt()))
    cli.app.command("stopped")(raises(Interrupted("stopped at step 7; resume with --resume")))
    code, _, err = run_main(monkeypatch, capsys, "ctrl-c")
    assert "interrupted" in assert_one_error_line(code, err, 130)
    code, _, err = run_main(monkeypatch, capsys, "stopped")
    assert "resume with --resume" in assert_one_error_line(code, err, 143)


# A real process and a real signal: a command that waits, registered by the test (not shipped).
WAITING_COMMAND = """
import signal, sys, time
# A background job of a non-interactive shell (`make test &`, CI runners) inherits SIGINT ignored, and Python then
# installs no KeyboardInterrupt handler; Ctrl-C at a terminal always has it. Restore it, as a terminal would.
signal.signal(signal.SIGINT, signal.default_int_handler)
from kdistill import cli

@cli.app.command("wait-for-signal")
def wait() -> None:
    print("ready", flush=True)
    time.sleep(60)

cli.main(["wait-for-signal"])
"""


@pytest.mark.parametrize(("signum", "status", "fragment"), [(signal.SIGINT, 130, "interrupted"),
                                                            (signal.SIGTERM, 143, "terminated")])
def test_signals_exit_130_and_143_with_a_message(signum, status, fragment) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    process = subprocess.Popen([sys.executable, "-c", WAITING_COMMAND], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    line = assert_one_error_line(process.returncode, err, status)
    assert fragment in line


def test_help_and_usage_errors_do_not_import_torch_or_fabric() -> None:
    # Importing torch and Lightning Fabric takes seconds: `kdistill --help` and a typo must not pay for it.
    probe = ("import sys\nfrom kdistill import cli\ntry:\n    cli.main(['distill', '--epoch', '3'])\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torch', 'lightning', 'lightning_fabric') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": SRC})
    assert result.stdout.strip() == "[]", result.stderr
    assert "No such option: --epoch" in result.stderr


@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet"])
def test_a_wrong_builtin_model_kwarg_lists_the_valid_ones(model, tmp_path, monkeypatch, capsys) -> None:
    from kdistill.models.builtin import BUILTIN_MODELS, builtin_kwargs

    assert set(BUILTIN_MODELS) == {"mlp", "cnn", "resnet"}  # a new built-in model joins the parametrisation
    code, _, err = run_main(monkeypatch, capsys, "train", "--student", model, "--student-kwargs",
                            "{hidden: [256, 256]}", "--output-dir", str(tmp_path), "--no-progress")
    line = assert_one_error_line(code, err)
    assert "'hidden'" in line
    for kwarg in builtin_kwargs(model):
        assert f"{kwarg} (default " in line
    assert not any(tmp_path.iterdir())  # refused before the run folder exists


def test_a_misspelt_kwarg_gets_a_suggestion(tmp_path, monkeypatch, capsys) -> None:
    code, _, err = run_main(monkeypatch, capsys, "train", "--student-kwargs", "{widht: 8}",
                            "--output-dir", str(tmp_path), "--no-progress")
    line = assert_one_error_line(code, err)
    assert "did you mean 'width'?" in line and "width (default 128), depth (default 2), dropout (default 0.0)" in line
