"""The table of ``kdistill compare`` as a ResultTable: the teacher, the student alone, then the methods ranked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdistill import render
from kdistill.results import Column, Environment, ResultTable, Row

if TYPE_CHECKING:
    from kdistill.compare import CompareResult, CompareRow
    from kdistill.config import RunConfig

COLUMNS = [
    Column("rank", "#", "int", description="by the mean test accuracy of the last epoch"),
    Column("teacher", "Teacher", "text", description="cache: stored teacher outputs; live: the teacher ran every step"),
    Column("test_accuracy", "Test acc, last epoch (%)", "points", unit="fraction", spread="test_accuracy_std"),
    Column("test_accuracy_best", "Test acc, best-val (%)", "points", unit="fraction", spread="test_accuracy_best_std"),
    Column("gap_recovered", "Gap recovered", "signed_percent", unit="fraction",
           description="(method - alone) / (teacher - alone), last-epoch means"),
    Column("epoch_time_s", "s/epoch", "float", 2, unit="s"),
    Column("epoch_time_vs_alone", "vs alone", "ratio"),
    Column("extra_parameters", "Extra params", "int", unit="count", description="the methods' adapters and heads"),
]


def _row(row: CompareRow, rank: int | None, role: str) -> Row:
    values = {"rank": rank, "teacher": row.teacher, "test_accuracy": row.test_accuracy.mean,
              "test_accuracy_std": row.test_accuracy.std, "test_accuracy_best": row.test_accuracy_best.mean,
              "test_accuracy_best_std": row.test_accuracy_best.std, "gap_recovered": row.gap_recovered,
              "epoch_time_s": row.epoch_time_s, "epoch_time_vs_alone": row.epoch_time_vs_alone,
              "extra_parameters": row.extra_parameters}
    return Row(row.method, values, {"role": role, "weights": row.weights, "gap_recovered_best": row.gap_recovered_best,
                                    "per_seed": row.per_seed})


def to_result(result: CompareResult, environment: Environment | None = None) -> ResultTable:
    """The comparison as a result table: the teacher, the student alone, then the methods ranked, best first."""
    teacher = Row("Teacher", {"teacher": "-", "test_accuracy": result.teacher_test_accuracy, "gap_recovered": 1.0},
                  {"role": "teacher"})
    rows = [teacher] + ([_row(result.baseline, None, "baseline")] if result.baseline else [])
    rows += [_row(row, rank, "method") for rank, row in enumerate(result.rows, start=1)]
    details = {"ranked_by": "test_accuracy (mean over seeds, last epoch)", "folder": str(result.folder),
               "teacher_test_accuracy": result.teacher_test_accuracy, "cache": result.cache}
    return ResultTable(result.title, "classification", list(COLUMNS), rows, environment or Environment.capture(),
                     caption=result.caption + f" Per-seed numbers: results.json; one run folder per method and seed "
                                              f"in {result.folder}.",
                     command=result.command, name_label="Method", details=details)


def caption(config: RunConfig, seeds: list[int], cache_info: dict | None) -> str:
    seeds_text = ",".join(map(str, seeds))
    text = (f"Ranked by the mean test accuracy of the LAST epoch over seeds {seeds_text} (mean ± sample std, n-1). "
            "Best-val: the checkpoint with the best validation accuracy (a selection on the validation split), shown "
            "for reference. Gap recovered = (method - alone) / (teacher - alone), last-epoch means. "
            f"s/epoch: mean training time per epoch; vs alone: relative to the student alone. "
            f"{config.trainer.epochs} epochs, T={config.distill.temperature}, alpha={config.distill.alpha}.")
    if cache_info is not None:
        text += (f" Teacher 'cache': the run read the teacher outputs stored once ({cache_info['views']} view(s) per "
                 f"sample, {_cache_origin(cache_info)}, not counted in s/epoch); 'live': the teacher ran "
                 "every step.")
    return text


def _cache_origin(cache_info: dict) -> str:
    if cache_info.get("reused"):
        return f"an existing store, {cache_info['dir']}, checked and completed in {cache_info['build_s']:.1f} s"
    return f"built in {cache_info['build_s']:.1f} s"


def save(result: CompareResult, device: str = "cpu") -> None:
    """results.md and results.json of the comparison (``device``: where the runs trained)."""
    render.save(to_result(result, Environment.capture(device)), result.folder)
