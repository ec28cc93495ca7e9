"""``kdistill export`` / ``bench`` / ``deploy``: a run's student as a verified, measured artefact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdistill.console import cli_console

Opt = typer.Option
RunArg = Annotated[Path, typer.Argument(help="finished run folder")]
TeacherOpt = Annotated[Path | None, Opt("--teacher", help="the teacher's run folder (default: the run's teacher)")]
ThreadsOpt = Annotated[int | None, Opt(help="CPU threads of every runtime (default: deploy.threads, 1)")]


def _options(run: Path, sets: list[str] | None, **fields):
    """The run's deploy config, with --set deploy.<key>=... and the command's flags on top."""
    from kdistill.config import DeployConfig, load_config

    overrides = [f"deploy.{s.removeprefix('deploy.')}" for s in sets or []]
    base = load_config(run / "config.yaml", overrides).deploy if (run / "config.yaml").is_file() else DeployConfig()
    return validated(DeployConfig, base.model_dump() | {k: v for k, v in fields.items() if v is not None}, "flags")


def validated(section, values: dict, source: str):
    """``section`` built from ``values`` (flags on top of the run's config), bad values a ConfigError naming them:
    a plain model_copy would let ``--prune-steps 0`` through unchecked."""
    from pydantic import ValidationError

    from kdistill.config.base import format_validation_error
    from kdistill.errors import ConfigError

    try:
        return section.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def export(
    run: RunArg,
    format: Annotated[str, Opt(help="onnx | pt2 | pte")] = "onnx",
    output: Annotated[Path | None, Opt(help="folder of the artefact (default RUN/deploy)")] = None,
    atol: Annotated[float | None, Opt(help="largest allowed |logit difference| vs PyTorch")] = None,
    set_: Annotated[list[str] | None, Opt("--set", "-s", help="deploy.<key>=value")] = None,
) -> None:
    """Export the run's student (dynamic batch axis) and check parity on validation data before publishing it."""
    from kdistill.deploy.export import export_run

    options = _options(run, set_, parity_atol=atol)
    artefact = export_run(run, format, output, options)
    p = artefact.parity
    cli_console().print(f"[bold]{artefact.path}[/bold] ({artefact.path.stat().st_size:,} bytes): parity on {p.samples} "
                  f"validation samples: max |logit diff| {p.max_abs_diff:.3g}, top-1 agreement "
                  f"{100 * p.top1_agreement:.2f}%", soft_wrap=True)


def bench(
    runs: Annotated[list[Path], typer.Argument(help="finished run folders")],
    formats: Annotated[str, Opt(help="comma-separated: pytorch, onnx, onnx-int8 (static), onnx-int8-dynamic, pt2, "
                                     "pte")] = "pytorch,onnx",
    teacher: TeacherOpt = None,
    no_teacher: Annotated[bool, Opt("--no-teacher", help="skip the teacher rows")] = False,
    threads: ThreadsOpt = None,
    latency_runs: Annotated[int | None, Opt(help="timed batch-1 runs")] = None,
    throughput_batch: Annotated[int | None, Opt(help="batch size of the throughput figure")] = None,
    output: Annotated[Path | None, Opt(help="also save bench.json and bench.md in this folder")] = None,
) -> None:
    """Parameters, FLOPs, size, peak memory, latency and throughput of each model in each runtime."""
    from kdistill.deploy import report
    from kdistill.deploy.bench import bench_runs

    options = _options(runs[0], None, threads=threads, latency_runs=latency_runs, throughput_batch=throughput_batch)
    table = bench_runs(runs, [f.strip() for f in formats.split(",") if f.strip()], teacher, options,
                       with_teacher=not no_teacher)
    cli_console().print(report.render(table))
    if output:
        report.save(table, output)


def deploy(
    run: RunArg,
    prune: Annotated[float | None, Opt(help="share of parameters to remove by structured pruning (then KD)")] = None,
    prune_steps: Annotated[int | None, Opt(help="iterative pruning steps")] = None,
    prune_epochs: Annotated[int | None, Opt(help="distillation epochs after each pruning step")] = None,
    prune_allocation: Annotated[str | None, Opt(help="uniform (each layer loses the same share) | global (channels "
                                                     "ranked across layers)")] = None,
    quantize: Annotated[str | None, Opt(help="none | int8")] = None,
    method: Annotated[str | None, Opt(help="int8: static | dynamic (also embedding students) | qat")] = None,
    format: Annotated[str | None, Opt(help="onnx | pt2 | pte")] = None,
    teacher: TeacherOpt = None,
    threads: ThreadsOpt = None,
    set_: Annotated[list[str] | None, Opt("--set", "-s", help="deploy.<key>=value")] = None,
) -> None:
    """Prune + KD -> int8 (PTQ or QAT + KD) -> export -> parity -> bench, written to RUN/deploy/."""
    from kdistill.config import PruneConfig
    from kdistill.deploy import report
    from kdistill.deploy.chain import deploy_run

    options = _options(run, set_, quantize=quantize, quantize_method=method, format=format, threads=threads)
    given = {"amount": prune, "steps": prune_steps, "epochs": prune_epochs, "allocation": prune_allocation}
    given = {k: v for k, v in given.items() if v is not None}  # `--prune-steps 0` is given too (and refused)
    if given:
        current = options.prune.model_dump() if options.prune else {}
        options.prune = validated(PruneConfig, current | given, "flags")
    result = deploy_run(run, options, teacher)
    cli_console().print(report.render(result.table, f"kdistill deploy: {run.name}"))
    for artefact in result.artefacts:
        cli_console().print(f"{artefact.path} (parity: max |diff| {artefact.parity.max_abs_diff:.3g}, top-1 agreement "
                      f"{100 * artefact.parity.top1_agreement:.2f}%)", soft_wrap=True)
    if result.pruned_run:
        cli_console().print(f"pruned run folder: {result.pruned_run} (kdistill eval {result.pruned_run})",
                            soft_wrap=True)
    cli_console().print(f"table: {result.folder / 'bench.md'}", soft_wrap=True)
