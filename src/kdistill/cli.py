"""The ``kdistill`` command line: parsing only; the work is done by ``kdistill.api``.

Bad input ends with one line on stderr (``error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from kdistill.config import RunConfig, load_config
from kdistill.console import cli_console
from kdistill.errors import KdistillError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Distil a large teacher into a small, fast student, and measure both side by side.",
)
console = cli_console()

# Flag -> config key. Every flag has a key; every key can also be set with --set key=value.
FLAG_KEYS = {
    "name": "name",
    "output_dir": "output_dir",
    "seed": "seed",
    "data": "data.name",
    "data_root": "data.root",
    "student": "student.name",
    "student_weights": "student.weights",
    "teacher": "teacher.name",
    "teacher_weights": "teacher.weights",
    "epochs": "trainer.epochs",
    "batch_size": "trainer.batch_size",
    "lr": "optim.lr",
    "optimizer": "optim.name",
    "precision": "trainer.precision",
    "accelerator": "trainer.accelerator",
    "devices": "trainer.devices",
    "temperature": "distill.temperature",
    "alpha": "distill.alpha",
    "workers": "trainer.num_workers",
}

ConfigArg = Annotated[Path | None, typer.Argument(help="YAML config (optional; flags and --set override it)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override any key: trainer.epochs=5")]


def _config_from(config_path: Path | None, flags: dict, sets: list[str] | None) -> RunConfig:
    overrides = [f"{FLAG_KEYS[k]}={v}" for k, v in flags.items() if v is not None and k in FLAG_KEYS]
    if flags.get("no_progress"):
        overrides.append("trainer.progress=false")
    if flags.get("student_kwargs"):
        overrides.append(f"student.kwargs={flags['student_kwargs']}")
    if flags.get("teacher_kwargs"):
        overrides.append(f"teacher.kwargs={flags['teacher_kwargs']}")
    if flags.get("method"):
        weights = dict(item.split("=", 1) if "=" in item else (item, "1.0") for item in flags["method"])
        overrides.append("distill.methods={" + ", ".join(f"{k}: {v}" for k, v in weights.items()) + "}")
    return load_config(config_path, overrides + list(sets or []))


def _print_summary(result) -> None:
    m = result.metrics
    if "test_cosine_to_teacher" in m:  # task embedding: no accuracy, closeness to the teacher's embeddings
        parts = [f"test cosine to teacher {m['test_cosine_to_teacher']:.4f}",
                 f"top-10 neighbour overlap {m['test_top10_overlap']:.4f}"]
    else:
        parts = [f"test accuracy {100 * m['test_accuracy']:.2f}%"]
    if "test_agreement" in m:
        parts.append(f"agreement with teacher {100 * m['test_agreement']:.2f}%")
    parts.append(f"best val epoch {m['best_epoch'] + 1}")
    console.print(f"[bold]{result.run_dir}[/bold]: " + ", ".join(parts))
    console.print(f"weights: {result.run_dir / 'student.safetensors'}")


def _run_command(
    kind: str, config: Path | None, flags: dict, sets: list[str] | None, overwrite: bool, resume: bool
) -> None:
    from kdistill import api

    run_config = _config_from(config, flags, sets)
    result = (api.distill if kind == "distill" else api.train)(run_config, overwrite=overwrite, resume=resume)
    _print_summary(result)


Opt = typer.Option


@app.command()
def train(
    config: ConfigArg = None,
    name: Annotated[str | None, Opt(help="run name (folder under --output-dir)")] = None,
    output_dir: Annotated[str | None, Opt(help="parent folder of runs")] = None,
    data: Annotated[str | None, Opt(help="digits | fashion-mnist | imagefolder:<path> | csv:<path>")] = None,
    data_root: Annotated[str | None, Opt(help="folder with data files")] = None,
    student: Annotated[str | None, Opt(help="model: mlp | cnn | resnet | timm:<n> | torchvision:<n> | file:..")] = None,
    student_kwargs: Annotated[str | None, Opt(help="model kwargs as YAML, e.g. '{width: 16}'")] = None,
    student_weights: Annotated[str | None, Opt(help="initial weights")] = None,
    epochs: Annotated[int | None, Opt()] = None,
    batch_size: Annotated[int | None, Opt()] = None,
    lr: Annotated[float | None, Opt()] = None,
    optimizer: Annotated[str | None, Opt(help="sgd | adamw | adam")] = None,
    seed: Annotated[int | None, Opt()] = None,
    precision: Annotated[str | None, Opt(help="32-true | bf16-mixed | 16-mixed")] = None,
    accelerator: Annotated[str | None, Opt(help="cpu | cuda | mps | auto")] = None,
    devices: Annotated[str | None, Opt(help="number of devices or 'auto'")] = None,
    workers: Annotated[int | None, Opt(help="DataLoader workers")] = None,
    no_progress: Annotated[bool, Opt("--no-progress", help="hide progress bars")] = False,
    set_: SetOpt = None,
    overwrite: Annotated[bool, Opt(help="replace an existing run folder")] = False,
    resume: Annotated[bool, Opt(help="continue an interrupted run from its last checkpoint")] = False,
) -> None:
    """Plain supervised training (a teacher, or a baseline student)."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "set_", "overwrite", "resume")}
    _run_command("train", config, flags, set_, overwrite, resume)


@app.command()
def distill(
    config: ConfigArg = None,
    teacher: Annotated[str | None, Opt(help="teacher model name (as for --student)")] = None,
    teacher_kwargs: Annotated[str | None, Opt(help="teacher kwargs as YAML")] = None,
    teacher_weights: Annotated[str | None, Opt(help="teacher weights (.safetensors or torch checkpoint)")] = None,
    temperature: Annotated[float | None, Opt("--temperature", "-T", help="softmax temperature T > 0")] = None,
    alpha: Annotated[float | None, Opt(help="weight of the hard-label loss, in [0, 1]")] = None,
    method: Annotated[list[str] | None, Opt(help="method[=weight], repeatable; default kd=1")] = None,
    name: Annotated[str | None, Opt()] = None,
    output_dir: Annotated[str | None, Opt()] = None,
    data: Annotated[str | None, Opt()] = None,
    data_root: Annotated[str | None, Opt()] = None,
    student: Annotated[str | None, Opt()] = None,
    student_kwargs: Annotated[str | None, Opt()] = None,
    student_weights: Annotated[str | None, Opt()] = None,
    epochs: Annotated[int | None, Opt()] = None,
    batch_size: Annotated[int | None, Opt()] = None,
    lr: Annotated[float | None, Opt()] = None,
    optimizer: Annotated[str | None, Opt()] = None,
    seed: Annotated[int | None, Opt()] = None,
    precision: Annotated[str | None, Opt()] = None,
    accelerator: Annotated[str | None, Opt()] = None,
    devices: Annotated[str | None, Opt()] = None,
    workers: Annotated[int | None, Opt()] = None,
    no_progress: Annotated[bool, Opt("--no-progress")] = False,
    set_: SetOpt = None,
    overwrite: Annotated[bool, Opt()] = False,
    resume: Annotated[bool, Opt()] = False,
) -> None:
    """Distil a teacher into a student: alpha * CE + (1 - alpha) * sum of method terms (T^2 * KL for kd)."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "set_", "overwrite", "resume")}
    _run_command("distill", config, flags, set_, overwrite, resume)


@app.command("eval")
def eval_(
    runs: Annotated[list[Path] | None, typer.Argument(help="finished run folders")] = None,
    model: Annotated[str | None, Opt(help="evaluate one checkpoint: its model name")] = None,
    model_kwargs: Annotated[str | None, Opt(help="its kwargs as YAML")] = None,
    weights: Annotated[str | None, Opt(help="its weights")] = None,
    teacher_run: Annotated[Path | None, Opt("--teacher", help="run folder of the teacher (for agreement)")] = None,
    task: Annotated[str | None, Opt(help="classification | causal-lm (default: the runs' task)")] = None,
    data: Annotated[str | None, Opt(help="data set (default: the first run's)")] = None,
    data_root: Annotated[str | None, Opt()] = None,
    latency_runs: Annotated[int, Opt(help="timed batch-1 runs")] = 100,
    threads: Annotated[int | None, Opt(help="torch threads for latency")] = None,
    output: Annotated[Path | None, Opt(help="also save the table here (folder)")] = None,
) -> None:
    """Accuracy, agreement with the teacher, calibration (ECE), latency and size of checkpoints on a data set.

    Language-model runs (task causal-lm): loss per token, perplexity, next-token accuracy, top-1 agreement with the
    teacher, latency of one max_length sequence and tokens/s."""
    from kdistill import api
    from kdistill.config import DataConfig, EvalConfig, ModelConfig
    from kdistill.results import print_table, save_table

    entries, data_config = [], None
    for run in runs or []:
        entry, run_config = api.entry_from_run(run)
        entries.append(entry)
        data_config = data_config or run_config.data
    if model:
        import yaml

        kwargs = yaml.safe_load(model_kwargs) if model_kwargs else {}
        entries.append(
            api.EvalEntry(Path(weights or model).stem, ModelConfig(name=model, kwargs=kwargs, weights=weights))
        )
    if not entries:
        raise KdistillError("nothing to evaluate: give run folders, or --model NAME --weights PATH")
    teacher, teacher_config = api.entry_from_run(teacher_run) if teacher_run else (None, None)
    data_config = data_config or (teacher_config.data if teacher_config else None) or DataConfig()
    if data or data_root:
        data_config = data_config.model_copy(update={k: v for k, v in {"name": data, "root": data_root}.items() if v})
    rows = api.evaluate(entries, data_config, teacher, EvalConfig(latency_runs=latency_runs, threads=threads), task)
    title = f"kdistill eval: {data_config.name} (test split)"
    print_table(rows, title, console=console)
    if output:
        output.mkdir(parents=True, exist_ok=True)
        save_table(rows, output, title)


@app.command()
def demo(
    data: Annotated[str, Opt(help="digits | fashion-mnist")] = "digits",
    output_dir: Annotated[str, Opt()] = "runs",
    name: Annotated[str | None, Opt(help="run folder name (default demo-<data>)")] = None,
    seed: Annotated[int, Opt()] = 0,
    overwrite: Annotated[bool, Opt(help="replace an existing demo folder")] = False,
) -> None:
    """Teacher, student alone and student distilled, trained and measured side by side."""
    from kdistill.demo import run_demo
    from kdistill.results import print_table

    result = run_demo(data=data, output_dir=output_dir, name=name, overwrite=overwrite, seed=seed)
    print_table(result.rows, result.title, result.caption, console=console)
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
    console.print(f"wrote {written} ({written.stat().st_size:,} bytes)")


@app.command("config")
def show_config(config: ConfigArg = None, set_: SetOpt = None) -> None:
    """Print the resolved config (defaults + file + overrides) as YAML."""
    import yaml

    resolved = load_config(config, set_)
    console.print(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False), end="", markup=False)


def _mount_commands() -> None:
    """Commands that live in their own modules (kdistill.commands.*), imported when the CLI starts."""
    from kdistill.commands import cache, compare, embed, layers

    app.command("layers")(layers.layers)
    app.command("compare")(compare.compare)
    app.command("distill-embeddings")(embed.distill_embeddings)
    app.add_typer(cache.app, name="cache")
    from kdistill.commands import deploy  # export, bench, deploy: kdistill.deploy

    for command in (deploy.export, deploy.bench, deploy.deploy):
        app.command(command.__name__)(command)


_mount_commands()


def main() -> None:
    try:
        app(standalone_mode=False)
    except KdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(3)
    except KeyboardInterrupt:
        print("interrupted; resume with the same command and --resume", file=sys.stderr)
        sys.exit(130)
    except (typer.Exit, typer.Abort) as exc:
        sys.exit(getattr(exc, "exit_code", 1))
    except Exception as exc:  # noqa: BLE001  click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
