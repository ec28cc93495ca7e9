"""How every failure of a ``kdistill`` command becomes one ``error: ...`` line on stderr and an exit status.

0 success; 2 bad input (usage errors, KdistillError, a truncated file); 3 a diverged run (FloatingPointError);
130 Ctrl-C; 143 SIGTERM; a KdistillError's own ``exit_code`` wins (e.g. an interrupted run that checkpointed).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import typer

from kdistill.errors import KdistillError, TrainingInterrupted


class Terminated(KdistillError):
    """SIGTERM outside a training loop (the loop itself checkpoints first and raises its own error)."""

    exit_code = 143


def raise_terminated(signum: int, frame: object) -> None:
    raise Terminated("terminated (SIGTERM)")


def run_cli(app: typer.Typer, args: list[str]) -> int:
    """Run the command line ``args``; return the exit status. Every failure is one ``error: ...`` line on stderr.

    Click's own ``main`` is bypassed on purpose: it turns EOFError into a blank line and exit 1 and, in
    non-standalone mode, returns Ctrl-C's 130 instead of raising it. Typer 0.29 (pinned) bundles its own click
    (``typer._click``): its exceptions are caught through their public base, ``typer.TyperException``.
    """
    command = typer.main.get_command(app)
    try:
        with command.make_context("kdistill", list(args)) as ctx:
            command.invoke(ctx)
        return 0
    except typer.Exit as exc:  # --help, or a command's own typer.Exit(code)
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors: unknown option or command, missing or bad argument
        return _usage_error(exc, _command_path(command, args))
    except TrainingInterrupted as exc:  # SIGTERM/SIGINT during training: checkpoint written, says how to resume
        print(f"interrupted: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except KdistillError as exc:
        return _fail(str(exc), getattr(exc, "exit_code", 2))
    except FloatingPointError as exc:
        return _fail(str(exc), 3)
    except KeyboardInterrupt:
        return _fail("interrupted (Ctrl-C); a training run continues from its last checkpoint with the same command "
                     "and --resume", 130)
    except (EOFError, pickle.UnpicklingError) as exc:
        return _fail(_truncated_file_message(exc), 2)
    except typer.Abort:
        return _fail("aborted", 1)


def _fail(message: str, code: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)  # one line, whatever the message holds
    return code


def _usage_error(exc: typer.TyperException, command_path: str) -> int:
    if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `kdistill` or `kdistill cache`: the help is the answer
        text = exc.format_message()  # empty when rich has already printed the help
        if text.strip():
            print(text, file=sys.stderr)
        return 2
    ctx = getattr(exc, "ctx", None)  # None for some parser errors, e.g. an option without its value
    return _fail(f"{exc.format_message()} (see: {ctx.command_path if ctx else command_path} --help)", 2)


def _command_path(command, args: list[str]) -> str:
    """``kdistill cache build`` for ``["cache", "build", "x.yaml"]``: the (sub)commands named at the front."""
    path = ["kdistill"]
    for arg in args:
        command = getattr(command, "commands", {}).get(arg)
        if command is None:
            break
        path.append(arg)
    return " ".join(path)


def _truncated_file_message(exc: BaseException) -> str:
    path = _file_in_traceback(exc)
    where = f"{path} is truncated or corrupt" if path else "a file is truncated or corrupt"
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"{where} ({detail}); replace or delete it and run again"


def _file_in_traceback(exc: BaseException) -> str | None:
    """The file being read when ``exc`` was raised: the innermost frame with a path-like or open-file local.

    torch.load(f), numpy.load(file), pickle.load(file) and the config loaders keep the file in such a local; the
    readers themselves raise a bare EOFError that does not say which file ended early.
    """
    frames, tb = [], exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name in ("f", "file", "path", "filename", "fp"):
            value = frame.f_locals.get(name)
            if isinstance(value, str | Path):
                return str(value)
            if isinstance(getattr(value, "name", None), str):  # an open file object
                return value.name
    return None
