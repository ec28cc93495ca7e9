"""The ``kdistill`` command line: parsing only; the work is done by ``kdistill.api``.

Bad input ends with one line on stderr (``error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from kdistill.commands.options import SetFlag, config_from, flag
from kdistill.config import load_config
from kdistill.console import cli_console
from kdistill.errors import KdistillError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Distil a large teacher into a small, fast student, and measure both side by side.",
)

ConfigArg = Annotated[Path | None, typer.Argument(help="YAML config (optional; flags and --set override it)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override any key: trainer.epochs=5")]

def _print_summary(result) -> None:
    m = result.metrics
    if "test_cosine_to_teacher" in m:  # task embedding: no accuracy, closeness to the teacher's embeddings
        parts = [f"test cosine to teacher {m['test_cosine_to_teacher']:.4f}",
                 f"top-10 neighbour overlap {m['test_top10_overlap']:.4f}"]
    else:
        parts = [f"test accuracy {100 * m['test_accuracy']:.2f}%"]
    if "test_agreement" in m:
        parts.append(f"agreement with teacher {100 * m['test_agreement']:.2f}%")
    parts.append(f"best val epoch {m['best_epoch']}")  # 1-based in summary.json too
    console = cli_console()  # made per call, as every command's: this invocation's width (COLUMNS) and streams
    # soft_wrap: a result line names a path; broken over lines it could not be copied or grepped from a log
    console.print(f"[bold]{result.run_dir}[/bold]: " + ", ".join(parts), soft_wrap=True)
    console.print(f"weights: {result.run_dir / 'student.safetensors'}", soft_wrap=True)
    if (result.run_dir / "hf").is_dir():  # a transformers student, also as save_pretrained
        console.print(f"Hugging Face format: {result.run_dir / 'hf'} (AutoModelForCausalLM.from_pretrained)",
                      soft_wrap=True)


def _run_command(
    kind: str, config: Path | None, flags: dict, sets: list[str] | None, overwrite: bool, resume: bool
) -> None:
    from kdistill import api

    run_config = config_from(config, flags, sets)
    result = (api.distill if kind == "distill" else api.train)(run_config, overwrite=overwrite, resume=resume)
    if result.metrics:  # the other processes of a multi-process run leave the results to rank 0
        _print_summary(result)


Opt = typer.Option


@app.command()
def train(
    config: ConfigArg = None,
    name: Annotated[str | None, flag("name")] = None,
    output_dir: Annotated[str | None, flag("output_dir")] = None,
    data: Annotated[str | None, flag("data")] = None,
    data_root: Annotated[str | None, flag("data_root")] = None,
    student: Annotated[str | None, flag("student")] = None,
    student_kwargs: Annotated[str | None, flag("student_kwargs")] = None,
    student_weights: Annotated[str | None, flag("student_weights")] = None,
    epochs: Annotated[int | None, flag("epochs")] = None,
    batch_size: Annotated[int | None, flag("batch_size")] = None,
    lr: Annotated[float | None, flag("lr")] = None,
    optimizer: Annotated[str | None, flag("optimizer")] = None,
    seed: Annotated[int | None, flag("seed")] = None,
    precision: Annotated[str | None, flag("precision")] = None,
    accelerator: Annotated[str | None, flag("accelerator")] = None,
    devices: Annotated[str | None, flag("devices")] = None,
    num_nodes: Annotated[int | None, flag("num_nodes")] = None,
    strategy: Annotated[str | None, flag("strategy")] = None,
    workers: Annotated[int | None, flag("workers")] = None,
    no_progress: Annotated[bool, flag("no_progress", "--no-progress")] = False,
    set_: SetFlag = None,
    overwrite: Annotated[bool, flag("overwrite")] = False,
    resume: Annotated[bool, flag("resume")] = False,
) -> None:
    """Plain supervised training (a teacher, or a baseline student)."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "set_", "overwrite", "resume")}
    _run_command("train", config, flags, set_, overwrite, resume)


@app.command()
def distill(
    config: ConfigArg = None,
    teacher: Annotated[str | None, flag("teacher")] = None,
    teacher_kwargs: Annotated[str | None, flag("teacher_kwargs")] = None,
    teacher_weights: Annotated[str | None, flag("teacher_weights")] = None,
    temperature: Annotated[float | None, flag("temperature", "--temperature", "-T")] = None,
    alpha: Annotated[float | None, flag("alpha")] = None,
    method: Annotated[list[str] | None, flag("method")] = None,
    name: Annotated[str | None, flag("name")] = None,
    output_dir: Annotated[str | None, flag("output_dir")] = None,
    data: Annotated[str | None, flag("data")] = None,
    data_root: Annotated[str | None, flag("data_root")] = None,
    student: Annotated[str | None, flag("student")] = None,
    student_kwargs: Annotated[str | None, flag("student_kwargs")] = None,
    student_weights: Annotated[str | None, flag("student_weights")] = None,
    epochs: Annotated[int | None, flag("epochs")] = None,
    batch_size: Annotated[int | None, flag("batch_size")] = None,
    lr: Annotated[float | None, flag("lr")] = None,
    optimizer: Annotated[str | None, flag("optimizer")] = None,
    seed: Annotated[int | None, flag("seed")] = None,
    precision: Annotated[str | None, flag("precision")] = None,
    accelerator: Annotated[str | None, flag("accelerator")] = None,
    devices: Annotated[str | None, flag("devices")] = None,
    num_nodes: Annotated[int | None, flag("num_nodes")] = None,
    strategy: Annotated[str | None, flag("strategy")] = None,
    workers: Annotated[int | None, flag("workers")] = None,
    no_progress: Annotated[bool, flag("no_progress", "--no-progress")] = False,
    set_: SetFlag = None,
    overwrite: Annotated[bool, flag("overwrite")] = False,
    resume: Annotated[bool, flag("resume")] = False,
) -> None:
    """Distil a teacher into a student: alpha * CE + (1 - alpha) * sum of method terms (T^2 * KL for kd)."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "set_", "overwrite", "resume")}
    _run_command("distill", config, flags, set_, overwrite, resume)


@app.command("eval")
def eval_(
    runs: Annotated[list[Path] | None, typer.Argument(help="finished run folders")] = None,
    model: Annotated[str | None, Opt(help="evaluate one checkpoint: its model name, or a run folder")] = None,
    model_kwargs: Annotated[str | None, Opt(help="its kwargs as YAML")] = None,
    weights: Annotated[str | None, Opt(help="its weights")] = None,
    teacher_run: Annotated[Path | None, Opt("--teacher", help="run folder of the teacher (for agreement)")] = None,
    task: Annotated[str | None, Opt(help="classification | causal-lm (default: the runs' task)")] = None,
    data: Annotated[str | None, Opt(help="data set (default: the first run's)")] = None,
    data_root: Annotated[str | None, flag("data_root")] = None,
    latency_runs: Annotated[int, Opt(help="timed batch-1 runs")] = 100,
    threads: Annotated[int | None, Opt(help="torch threads for latency")] = None,
    output: Annotated[Path | None, Opt(help="also save the table here (folder)")] = None,
    trust_code: Annotated[bool, Opt(help="import file: model code named by run folders not created here")] = False,
    no_progress: Annotated[bool, flag("no_progress", "--no-progress")] = False,
) -> None:
    """Accuracy, agreement with the teacher, calibration (ECE), latency and size of checkpoints on a data set.

    Language-model runs (task causal-lm): loss per token, perplexity, next-token accuracy, top-1 agreement with the
    teacher, latency of one max_length sequence and tokens/s."""
    from dataclasses import replace

    from kdistill import api
    from kdistill.config import DataConfig, EvalConfig, ModelConfig
    from kdistill.models.run_folder import is_run_folder
    from kdistill.render import print_result, save

    entries, data_config = [], None
    for run in runs or []:
        entry, run_config = api.entry_from_run(run, trust_code)
        entries.append(entry)
        data_config = data_config or run_config.data
    if model and is_run_folder(model):  # --model runs/x: that run's model, its weights (or --weights) and task
        entry, run_config = api.entry_from_run(model)
        entries.append(entry if weights is None else replace(entry, model=entry.model.model_copy(
            update={"weights": weights})))
        data_config = data_config or run_config.data
    elif model:
        from kdistill.safe_yaml import load_yaml

        kwargs = load_yaml(model_kwargs, "--model-kwargs") if model_kwargs else {}
        entries.append(
            api.EvalEntry(Path(weights or model).stem, ModelConfig(name=model, kwargs=kwargs, weights=weights))
        )
    if not entries:
        raise KdistillError("nothing to evaluate: give run folders, or --model NAME --weights PATH")
    teacher, teacher_config = api.entry_from_run(teacher_run, trust_code) if teacher_run else (None, None)
    data_config = data_config or (teacher_config.data if teacher_config else None) or DataConfig()
    if data or data_root:
        data_config = data_config.model_copy(update={k: v for k, v in {"name": data, "root": data_root}.items() if v})
    result = api.evaluate(entries, data_config, teacher, EvalConfig(latency_runs=latency_runs, threads=threads), task,
                          progress=not no_progress)
    result.command = shlex.join(["kdistill", *sys.argv[1:]])
    print_result(result, cli_console())
    if output:
        save(result, output)


@app.command()
def demo(
    data: Annotated[str, Opt(help="digits | fashion-mnist")] = "digits",
    output_dir: Annotated[str, flag("output_dir")] = "runs",
    name: Annotated[str | None, Opt(help="run folder name (default demo-<data>)")] = None,
    seed: Annotated[int, flag("seed")] = 0,
    overwrite: Annotated[bool, Opt(help="replace an existing demo folder")] = False,
) -> None:
    """Teacher, student alone and student distilled, trained and measured side by side."""
    from kdistill.demo import run_demo
    from kdistill.render import print_result

    result = run_demo(data=data, output_dir=output_dir, name=name, overwrite=overwrite, seed=seed)
    console = cli_console()
    print_result(result.table, console)
    console.print(f"run folder: {result.run_dir} (results.md, results.json, one sub-folder per model)")


@app.command()
def corpus(
    path: Annotated[Path, typer.Argument(help='output .jsonl file (one {"text": ...} object per line)')],
    max_chars: Annotated[int, Opt(help="characters of text to write")] = 300_000,
    sentences: Annotated[int | None, Opt(help="write this many docstring sentences instead (task embedding)")
                         ] = None,
) -> None:
    """Write a text corpus for language-model runs from Python's standard-library sources (offline)."""
    from kdistill.lm.corpus import docstring_sentences, write_corpus, write_jsonl

    if sentences is not None:
        written = write_jsonl([{"text": text} for text in docstring_sentences(sentences)], path)
    else:
        written = write_corpus(path, max_chars=max_chars)
    cli_console().print(f"wrote {written} ({written.stat().st_size:,} bytes)")


@app.command("config")
def show_config(
    config: ConfigArg = None,
    set_: SetOpt = None,
    explain: Annotated[bool, Opt("--explain", help="add every field's description as a YAML comment")] = False,
) -> None:
    """Print the resolved config (defaults + file + overrides) as YAML."""
    import yaml

    from kdistill.commands.explain import explained_yaml

    resolved = load_config(config, set_)
    text = explained_yaml(resolved) if explain else yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False)
    # soft_wrap: a wrapped line would break the YAML
    cli_console().print(text, end="", markup=False, highlight=False, emoji=False, soft_wrap=True)


def _mount_commands() -> None:
    """Commands that live in their own modules (kdistill.commands.*), imported when the CLI starts."""
    from kdistill.commands import cache, check, compare, embed, layers

    app.command("layers")(layers.layers)
    app.command("check")(check.check)
    app.command("compare")(compare.compare)
    app.command("distill-embeddings")(embed.distill_embeddings)
    app.add_typer(cache.app, name="cache")
    from kdistill.commands import deploy  # export, bench, deploy: kdistill.deploy

    for command in (deploy.export, deploy.bench, deploy.deploy):
        app.command(command.__name__)(command)


_mount_commands()


def main(argv: list[str] | None = None) -> None:
    """The ``kdistill`` entry point: runs one command and exits with its status (kdistill.cli_exit.run_cli)."""
    import signal

    from kdistill.cli_exit import raise_terminated, run_cli

    signal.signal(signal.SIGTERM, raise_terminated)  # a training loop installs its own while it trains
    sys.exit(run_cli(app, sys.argv[1:] if argv is None else argv))
