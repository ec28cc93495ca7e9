"""Accuracy, agreement with the teacher, calibration (ECE), per-token LM metrics, and the speed/size of a model."""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdistill.config import EvalConfig
from kdistill.models.base import count_parameters
from kdistill.models.weights import save_weights
from kdistill.tasks import ClassificationTask, Task


def evaluation_batches(dataset: Dataset, batch_size: int, label: str):
    """The batches of ``dataset`` in order; after training, a run's final evaluation shows them as one labelled
    bar and timing line (``kdistill.training.progress.evaluation_display``)."""
    # Imported here: deploy's timing imports this module and has no use for the training package (Fabric).
    from kdistill.training.progress import evaluation_pass

    return evaluation_pass(DataLoader(dataset, batch_size=batch_size, shuffle=False), label, len(dataset))


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 512, task: Task | None = None,
            device: str | torch.device = "cpu", label: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, C), targets (N,)) of a model over a data set, in order; ``label`` names the pass on screen."""
    task = task or ClassificationTask()
    model = model.to(device).eval()
    logits, targets = [], []
    for batch in evaluation_batches(dataset, batch_size, label):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits.append(task.logits(model, batch).float().cpu())
        targets.append(batch["target"].cpu())
    return torch.cat(logits), torch.cat(targets)


@torch.no_grad()
def task_metrics(model: nn.Module, dataset: Dataset, task: Task, teacher: nn.Module | None = None,
                 batch_size: int = 64, device: str | torch.device = "cpu", label: str = "test") -> dict[str, float]:
    """Loss, accuracy (and agreement with ``teacher``) for any task, e.g. next-token metrics of a language model.

    Sums are weighted by each batch's prediction count, so the figures do not depend on the batch size.
    """
    model = model.to(device).eval()
    teacher = teacher.to(device).eval() if teacher is not None else None
    sums = {"loss": 0.0, "correct": 0, "count": 0, "agree": 0}
    for batch in evaluation_batches(dataset, batch_size, label):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = task.logits(model, batch)
        hits, count = task.correct(logits, batch)
        sums["loss"] += float(task.loss(logits, batch)) * count
        sums["correct"] += int(hits)
        sums["count"] += count
        if teacher is not None:
            sums["agree"] += int(task.agreement(logits, task.logits(teacher, batch), batch)[0])
    count = max(sums["count"], 1)
    metrics = {"test_loss": sums["loss"] / count, "test_accuracy": sums["correct"] / count}
    if teacher is not None:
        metrics["test_agreement"] = sums["agree"] / count
    return metrics


@torch.no_grad()
def lm_test_metrics(model: nn.Module, dataset: Dataset, task: Task, teacher_top1: torch.Tensor | None = None,
                    batch_size: int = 32, device: str | torch.device = "cpu", label: str = "test"
                    ) -> tuple[dict[str, float], torch.Tensor]:
    """Per-token test loss, next-token accuracy (and top-1 agreement with a teacher) of a causal language model.

    ``teacher_top1`` is the (N, T) argmax of a teacher's logits over the same data set, as returned here; only
    those ids are kept, never the (N, T, V) logits. Returns (metrics, this model's (N, T) top-1 ids). The sums run
    over target tokens (the shifted, non-ignored labels), as in ``task_metrics``.
    """
    from kdistill.lm.task import target_mask

    model = model.to(device).eval()
    sums = {"loss": 0.0, "correct": 0, "count": 0, "agree": 0}
    top1, start = [], 0
    for batch in evaluation_batches(dataset, batch_size, label):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = task.logits(model, batch)  # (B, T, V)
        loss_sum, _ = task.loss_sum(logits, batch)
        hits, count = task.correct(logits, batch)
        sums["loss"] += float(loss_sum)
        sums["correct"] += int(hits)
        sums["count"] += count
        ids = logits.argmax(-1).cpu()  # (B, T)
        if teacher_top1 is not None:
            mask = target_mask(batch["labels"]).cpu()  # (B, T-1)
            teacher_ids = teacher_top1[start : start + len(ids)]
            sums["agree"] += int(((ids[:, :-1] == teacher_ids[:, :-1]) & mask).sum())
        top1.append(ids)
        start += len(ids)
    count = max(sums["count"], 1)
    metrics = {"test_loss": sums["loss"] / count, "test_accuracy": sums["correct"] / count}
    metrics["test_perplexity"] = perplexity(metrics["test_loss"])
    if teacher_top1 is not None:
        metrics["test_agreement"] = sums["agree"] / count
    return metrics, torch.cat(top1) if top1 else torch.empty(0, 0, dtype=torch.long)


def perplexity(loss_per_token: float) -> float:
    """exp of the mean per-token cross-entropy (capped at e^50 so a diverged model gives a number, not inf)."""
    return math.exp(min(loss_per_token, 50.0))


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float((logits.argmax(-1) == targets).float().mean())


def agreement(logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Share of samples where student and teacher predict the same class."""
    return float((logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean())


def expected_calibration_error(logits: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): sum over equal-width confidence bins of |accuracy - confidence| * bin share."""
    confidence, predicted = logits.softmax(-1).max(-1)
    hits = (predicted == targets).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.float().mean() * (hits[in_bin].mean() - confidence[in_bin].mean()).abs()
    return float(ece)


@dataclass
class SpeedReport:
    parameters: int
    size_bytes: int
    latency_ms: float  # batch 1, median of the timed runs
    latency_p95_ms: float
    throughput: float  # samples per second at the throughput batch size
    threads: int


def size_on_disk(model: nn.Module) -> int:
    """Bytes of the model's weights saved as safetensors (what a user would ship)."""
    with tempfile.TemporaryDirectory() as folder:
        path = save_weights(model, Path(folder) / "model.safetensors")
        return path.stat().st_size


LM_THROUGHPUT_TOKENS = 4096  # tokens per forward when timing a language model's throughput (bounds logit memory)


@torch.no_grad()
def measure_lm_speed(model: nn.Module, input_ids: torch.Tensor, runs: int = 100, warmup: int = 10,
                     throughput_batch: int = 256, threads: int | None = None) -> SpeedReport:
    """``measure_speed`` for token models: batch-1 latency of one full sequence (``input_ids`` (1, L), every position
    attended) and throughput in *tokens* per second, at min(throughput_batch, LM_THROUGHPUT_TOKENS // L) sequences."""
    one = {"input_ids": input_ids[:1].cpu().long()}
    one["attention_mask"] = torch.ones_like(one["input_ids"])
    length = one["input_ids"].shape[1]
    sequences = max(1, min(throughput_batch, LM_THROUGHPUT_TOKENS // max(length, 1)))
    big = {key: value.expand(sequences, length).contiguous() for key, value in one.items()}
    return _time_forward(model, lambda m: m(**one), lambda m: m(**big), sequences * length, runs, warmup, threads)


@torch.no_grad()
def measure_speed(model: nn.Module, sample: torch.Tensor, runs: int = 100, warmup: int = 10,
                  throughput_batch: int = 256, threads: int | None = None) -> SpeedReport:
    """Batch-1 latency (median and p95 after warm-up) and throughput, on the CPU, in eager PyTorch."""
    one = sample[:1].cpu()
    big = one.expand(throughput_batch, *one.shape[1:]).contiguous()
    return _time_forward(model, lambda m: m(one), lambda m: m(big), throughput_batch, runs, warmup, threads)


def time_calls(call_one, call_big, items_per_big: int, runs: int, warmup: int) -> tuple[list[float], float]:
    """(sorted latencies of ``call_one`` in ms after ``warmup`` calls, items per second of ``call_big``): the one
    timing loop of eval and bench (PyTorch eager or any other runtime)."""
    for _ in range(warmup):
        call_one()
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        call_one()
        timings.append((time.perf_counter() - start) * 1000)
    call_big()  # warm-up at the large batch (allocations, kernel choice)
    repeats, start = 3, time.perf_counter()
    for _ in range(repeats):
        call_big()
    return sorted(timings), repeats * items_per_big / (time.perf_counter() - start)


def p95(sorted_timings: list[float]) -> float:
    return sorted_timings[int(0.95 * (len(sorted_timings) - 1))]


def _time_forward(model: nn.Module, forward_one, forward_big, items_per_big: int, runs: int, warmup: int,
                  threads: int | None) -> SpeedReport:
    """Median/p95 latency of ``forward_one`` (ms) and items per second of ``forward_big``, on the CPU."""
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = model.cpu().eval()
        timings, throughput = time_calls(lambda: forward_one(model), lambda: forward_big(model), items_per_big,
                                         runs, warmup)
        return SpeedReport(
            parameters=count_parameters(model), size_bytes=size_on_disk(model),
            latency_ms=statistics.median(timings), latency_p95_ms=p95(timings),
            throughput=throughput, threads=torch.get_num_threads(),
        )
    finally:
        torch.set_num_threads(previous_threads)


def speed_with(eval_config: EvalConfig, model: nn.Module, sample: torch.Tensor, tokens: bool = False) -> SpeedReport:
    """``measure_speed`` (``measure_lm_speed`` for token models) with the eval config's runs, batch and threads."""
    measure = measure_lm_speed if tokens else measure_speed
    return measure(model, sample, runs=eval_config.latency_runs, warmup=eval_config.warmup_runs,
                   throughput_batch=eval_config.throughput_batch, threads=eval_config.threads)
