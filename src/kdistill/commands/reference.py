"""The CLI reference of docs/cli.md, generated from the Typer app and the built-in models' signatures.

Regenerate after changing a command or a flag: ``python -m kdistill.commands.reference docs/cli.md`` rewrites the
part of the file between the two markers below (a test fails while it is out of date).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import typer

BEGIN = "<!-- begin generated: python -m kdistill.commands.reference docs/cli.md -->"
END = "<!-- end generated -->"


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _default(param) -> str:
    if param.is_flag or param.default is None or param.default == []:
        return ""
    return f"`{param.default}`"


def _command_section(path: str, command) -> list[str]:
    ctx = typer.Context(command)
    lines = [f"### `{path}`", "", _cell((command.help or "").strip().split("\n\n")[0]), ""]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    options = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
    if arguments:
        lines.append("Arguments: " + "; ".join(
            f"`{p.name.upper()}`{'' if p.required else ' (optional)'}: {_cell(getattr(p, 'help', '') or '')}"
            for p in arguments))
        lines.append("")
    if options:
        lines += ["| flag | type | default | help |", "|---|---|---|---|"]
        for p in options:
            names = ", ".join(f"`{name}`" for name in [*p.opts, *p.secondary_opts])
            kind = "flag" if p.is_flag else p.display_type(ctx).strip("<>")
            lines.append(f"| {names} | {kind} | {_default(p)} | {_cell(p.help or '')} |")
        lines.append("")
    return lines


def cli_reference() -> str:
    from kdistill.cli import app

    root = typer.main.get_command(app)
    lines: list[str] = ["## Commands", ""]

    def walk(command, path: str) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            lines.extend(_command_section(path, command))
            return
        for name, sub in subcommands.items():
            walk(sub, f"{path} {name}")

    walk(root, "kdistill")
    return "\n".join(lines + models_reference())


def _arg_docs(doc: str) -> dict[str, str]:
    """``name: text`` lines of a Google-style ``Args:`` block."""
    block = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+): (.+)$", block, re.MULTILINE)}


def models_reference() -> list[str]:
    from kdistill.models.builtin import BUILTIN_MODELS, builtin_kwargs

    lines = ["## Built-in models and their kwargs", "",
             "Set them with `--student-kwargs '{width: 16}'` (or `student.kwargs`); a kwarg a model does not take is "
             "an error that lists the valid ones.", "",
             "| model | kwarg | default | meaning |", "|---|---|---|---|"]
    for name, model_class in BUILTIN_MODELS.items():
        docs = _arg_docs(model_class.__doc__ or "")
        for kwarg, default in builtin_kwargs(name).items():
            lines.append(f"| `{name}` | `{kwarg}` | `{default!r}` | {_cell(docs.get(kwarg, ''))} |")
    return lines + [""]


def write_reference(path: Path) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} lacks the markers {BEGIN!r} ... {END!r}")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{BEGIN}\n\n{cli_reference()}\n{END}{tail}")


if __name__ == "__main__":
    write_reference(Path(sys.argv[1]))
