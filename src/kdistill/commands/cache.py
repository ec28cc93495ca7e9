"""``kdistill cache``: build a teacher-output cache for offline distillation, and describe one."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress
from rich.table import Table

from kdistill.console import cli_console

app = typer.Typer(
    help="Offline distillation: run the teacher once, store its outputs, then train with teacher.name: cache:<dir>.",
    no_args_is_help=True,
)
console = cli_console()


@app.command()
def build(
    config: Path = typer.Argument(..., help="run config YAML (teacher.weights required)"),
    cache_dir: Path | None = typer.Option(None, "--dir", help="cache folder (default: <output_dir>/cache/<name>)"),
    mode: str = typer.Option("full", "--mode", help="full (every class) | topk (k classes + rest mass)"),
    k: int | None = typer.Option(None, "--k", help="classes kept with --mode topk"),
    views: int | None = typer.Option(None, "--views", help="augmented views per sample (default 4; 1 without "
                                     "augmentation)"),
    shard_size: int = typer.Option(1024, "--shard-size", help="samples per shard file"),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader workers (default trainer.num_workers)"),
    overrides: list[str] = typer.Option([], "--set", help="config override key.path=value (repeatable)"),
) -> None:
    """Run the teacher over the training split and store its outputs; run again to resume an interrupted build."""
    from kdistill.cache import build_cache, default_cache_dir
    from kdistill.config import load_config

    run_config = load_config(config, overrides)
    folder = cache_dir or default_cache_dir(run_config)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("teacher cache", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        info = build_cache(run_config, folder, views=views, mode=mode, k=k, shard_size=shard_size,
                           num_workers=workers, progress=advance)
    console.print(_table(info))
    console.print(f"train from it with: --set teacher.name=cache:{folder}")


@app.command()
def info(cache_dir: Path = typer.Argument(..., metavar="DIR", help="cache folder")) -> None:
    """Describe a cache: teacher, data, mode, views, size on disk and coverage."""
    from kdistill.cache import cache_info

    console.print(_table(cache_info(cache_dir)))


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
