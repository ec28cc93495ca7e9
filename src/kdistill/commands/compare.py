"""``kdistill compare``: every method x seed from one distill config, ranked in one table (kdistill.compare)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from kdistill.console import cli_console

Opt = typer.Option


def compare(
    config: Annotated[Path, typer.Argument(help="distill config YAML: teacher with weights, student, data, schedule")],
    methods: Annotated[str, Opt(help="comma-separated entries; join methods with + and weigh them with =: "
                                     "kd,dkd,at=1000,kd+at,kd=1+at=1000 (a missing weight: the config's, else 1)")],
    seeds: Annotated[str, Opt(help="comma-separated integer training seeds")] = "0,1,2",
    set_: Annotated[list[str] | None, Opt("--set", "-s", help="override any config key: trainer.epochs=5")] = None,
    output_dir: Annotated[str | None, Opt(help="parent folder (default: the config's output_dir)")] = None,
    name: Annotated[str | None, Opt(help="compare folder name (default: compare-<config name>)")] = None,
    baseline: Annotated[bool, Opt("--baseline/--no-baseline", help="also train the student alone per seed")] = True,
    cache: Annotated[bool, Opt("--cache/--no-cache", help="logit-only methods read one teacher-output cache "
                                                          "built once (--no-cache: live teacher for all)")] = True,
    cache_dir: Annotated[str | None, Opt(help="keep the teacher cache here (default: inside the compare folder); "
                                               "an existing one is checked and reused")] = None,
    overwrite: Annotated[bool, Opt(help="replace an existing compare folder")] = False,
    resume: Annotated[bool, Opt(help="continue an interrupted compare: reuse finished runs, resume the rest")] = False,
) -> None:
    """Train the student with each method and seed (and alone), then rank them: mean +- std, gap recovered, time."""
    from kdistill.compare import compare as run_compare
    from kdistill.compare import parse_methods, parse_seeds, split_methods
    from kdistill.config import load_config
    from kdistill.render import print_result
    from kdistill.results import ResultTable

    # Cheap checks first, so a typo fails before the config, the data or the teacher are loaded.
    seed_list = parse_seeds(seeds)
    entries = split_methods(methods)
    parse_methods(entries, {})
    run_config = load_config(config, list(set_ or []))
    command = shlex.join(["kdistill", *sys.argv[1:]])
    console = cli_console()  # made per call: this invocation's width (COLUMNS) and streams
    result = run_compare(run_config, entries, seed_list, output_dir=output_dir, name=name, baseline=baseline,
                         cache=cache, cache_dir=cache_dir, overwrite=overwrite, resume=resume, command=command,
                         log=lambda line: console.print(line, markup=False, highlight=False))
    print_result(ResultTable.from_json(result.folder / "results.json"), console)  # exactly what was saved
    console.print(f"compare folder: {result.folder} (results.md, results.json, one run folder per method and seed)")
