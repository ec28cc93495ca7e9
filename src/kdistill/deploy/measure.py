"""Measurements of one model in one runtime: FLOPs, peak memory, latency (median, p95) and throughput.

Everything runs on the CPU with the thread count pinned by the caller; the figures are labelled with it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdistill.deploy.formats import Runner
from kdistill.evaluate import p95, time_calls

_STATUS = Path("/proc/self/status")


def flops_per_sample(module: nn.Module, one: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one batch-1 forward, counted by ``torch.utils.flop_counter`` (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*one)
    return int(counter.get_total_flops())


def _status_kb(field: str) -> int | None:
    if not _STATUS.is_file():
        return None
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def peak_memory_during(work: Callable[[], object]) -> int | None:
    """Bytes by which the process's peak RSS rose above its RSS while ``work`` ran (Linux: VmHWM reset by
    writing 5 to /proc/self/clear_refs); None where the kernel offers no such counter."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    before = _status_kb("VmRSS")
    work()
    peak = _status_kb("VmHWM")
    return None if before is None or peak is None else max(peak - before, 0) * 1024


def time_runner(runner: Runner, one: tuple[torch.Tensor, ...], big: tuple[torch.Tensor, ...], runs: int,
                warmup: int) -> dict:
    """Batch-1 latency median and p95 (ms) after ``warmup`` runs, and samples/s at ``big``'s batch size."""
    batch = big[0].shape[0]
    timings, throughput = time_calls(lambda: runner(one), lambda: runner(big), batch, runs, warmup)
    return {"latency_ms": statistics.median(timings), "latency_p95_ms": p95(timings), "throughput": throughput,
            "throughput_batch": batch}


def runner_accuracy(runner: Runner, dataset: Dataset, input_names: tuple[str, ...], batch_size: int = 256) -> float:
    """Top-1 accuracy of a runner's logits on a classification split."""
    hits = count = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        logits = runner(tuple(batch[name] for name in input_names))
        hits += int((logits.argmax(-1) == batch["target"]).sum())
        count += len(batch["target"])
    return hits / max(count, 1)


def eager_runner(module: nn.Module) -> Runner:
    """``module`` as a runner; the caller puts it in eval mode (pt2e graphs refuse ``.eval()``)."""

    def run(tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
        with torch.no_grad():
            return module(*tensors)

    return run
