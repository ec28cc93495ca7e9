"""``kdistill cache``: build a teacher-output cache for offline distillation, and describe one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from kdistill.commands.options import SetFlag, config_from, flag
from kdistill.console import cli_console

app = typer.Typer(
    help="Offline distillation: run the teacher once, store its outputs, then train with teacher.name: cache:<dir>.",
    no_args_is_help=True,
)


@app.command()
def build(
    config: Annotated[Path | None, typer.Argument(help="run config YAML; or give the flags of distill")] = None,
    cache_dir: Path | None = typer.Option(None, "--dir", help="cache folder (default: <output_dir>/cache/<name>)"),
    mode: str = typer.Option("full", "--mode", help="full (every class) | topk (k classes + rest mass)"),
    k: int | None = typer.Option(None, "--k", help="classes kept with --mode topk"),
    views: int | None = typer.Option(None, "--views", help="augmented views per sample (default 4; 1 without "
                                     "augmentation)"),
    shard_size: int = typer.Option(1024, "--shard-size", help="samples per shard file"),
    # The flags of `kdistill distill` (kdistill.commands.options): a distill command line works with `cache build`.
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
    workers: Annotated[int | None, flag("workers")] = None,
    no_progress: Annotated[bool, flag("no_progress", "--no-progress")] = False,
    set_: SetFlag = None,
) -> None:
    """Run the teacher over the training split and store its outputs; run again to resume an interrupted build."""
    cache_options = ("config", "cache_dir", "mode", "k", "views", "shard_size", "set_")
    flags = {key: value for key, value in locals().items() if key not in cache_options}
    from kdistill.cache import build_cache, default_cache_dir
    from kdistill.data.compat import adopt_teacher_data
    from kdistill.models.run_folder import resolve_run_models

    # --teacher runs/t: its model, weights and (without --data) its data, as distill resolves them
    run_config = adopt_teacher_data(resolve_run_models(config_from(config, flags, set_)), cli_console().print)
    folder = cache_dir or default_cache_dir(run_config)
    with Progress(console=cli_console(), transient=True) as bar:
        task = bar.add_task("teacher cache", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        info = build_cache(run_config, folder, views=views, mode=mode, k=k, shard_size=shard_size,
                           progress=advance)
    cli_console().print(_table(info))
    cli_console().print(f"train from it with: --set teacher.name=cache:{folder}")


@app.command()
def info(cache_dir: Path = typer.Argument(..., metavar="DIR", help="cache folder")) -> None:
    """Describe a cache: teacher, data, mode, views, size on disk and coverage."""
    from kdistill.cache import cache_info

    cli_console().print(_table(cache_info(cache_dir)))


def _table(info: dict) -> Table:
    manifest = info["manifest"]
    table = Table(title=f"teacher cache {info['path']}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    mode = manifest["mode"] if manifest["k"] is None else f"{manifest['mode']} (k={manifest['k']})"
    rows = {
        "teacher": f"{manifest['teacher']['name']} {manifest['teacher']['weights_sha256'][:19]}...",
        "data": f"{manifest['data']['name']}, splits {manifest['data']['split_sizes']}",
        "transform": ", ".join(f"{key}={value}" for key, value in manifest["transform"].items()),
        "mode": f"{mode}, {manifest['precision']}",
        "samples x views": f"{manifest['num_samples']} x {manifest['views']}",
        **_per_item_row(info),
        "size on disk": f"{info['size_on_disk'] / 1e6:.2f} MB",
        "coverage": f"{info['complete_shards']}/{info['num_shards']} shards ({info['coverage']:.0%})",
    }
    if info.get("damaged_shards"):  # checked against their sha256: not counted in coverage
        rows["damaged shards"] = "; ".join(info["damaged_shards"].values()) + " (run `kdistill cache build` again)"
    if info.get("rebuilt_shards"):
        rows["rebuilt shards"] = ", ".join(map(str, info["rebuilt_shards"])) + " (damaged; built again)"
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def _per_item_row(info: dict) -> dict[str, str]:
    """Language-model stores: bytes per token; classifier stores: bytes per sample (measured on disk, and the
    record size of the stored outputs)."""
    if info["manifest"].get("positions"):
        if "disk_bytes_per_token" not in info:
            return {"bytes per token": f"no complete shard yet ({info['bytes_per_token']:g} of outputs)"}
        text = f"{info['disk_bytes_per_token']:,.2f} on disk ({info['bytes_per_token']:g} of outputs"
        if "disk_bytes_per_target_token" in info:
            text += f"; {info['disk_bytes_per_target_token']:,.2f} per target token, padding included"
        return {"bytes per token": text + ")"}
    if "disk_bytes_per_sample" not in info:
        return {"bytes per sample": f"no complete shard yet ({info['bytes_per_sample']} of outputs)"}
    return {"bytes per sample": f"{info['disk_bytes_per_sample']:,.2f} on disk ({info['bytes_per_sample']} of outputs)"}
