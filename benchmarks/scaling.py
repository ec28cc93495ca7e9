"""Where the time of a distillation step goes, on 1 and 2 CPU processes (the figures of docs/scaling.md).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/scaling.py runs/scaling

Four runs of the same teacher/student pair on digits (teacher: MLP 2x1024, 1.1M parameters, random weights -- the
time does not depend on what it learnt; student: MLP 1x256, 19k parameters), 4 epochs each, the first dropped as
warm-up:
  alone-64    student alone, 1 process, batch 64              -> student step (forward, backward, AdamW)
  kd-64       distilled, 1 process, batch 64                   -> + teacher forward
  kd-32       distilled, 1 process, batch 32                   -> one process's share of the 2-process run
  kd-2x32     distilled, 2 processes (DDP, gloo), batch 32 each (global 64) -> + gradient all-reduce
A loop callback (the public event API; no patching) times every step (``on_train_batch_start`` ->
``on_train_batch_end``) and the wait for the next batch (``on_train_batch_end`` -> ``on_train_batch_start``: data
loading and collation). The 2-process run also times, after training, an all-reduce of the student's gradient size
and of one number (the loop's per-step flags: non-finite, signal). Separately, in one process and interleaved (so
that the machine's load drifts equally over both), ``components`` times the teacher's forward pass and the student's
forward + backward + AdamW step at batch 64 and 32. Results: ``OUT/scaling.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from kdistill import api, load_config
from kdistill.models import build_model, save_weights

WARMUP_EPOCHS = 1
RUNS = {  # name: (distil?, batch size per process, processes)
    "alone-64": (False, 64, 1),
    "kd-64": (True, 64, 1),
    "kd-32": (True, 32, 1),
    "kd-2x32": (True, 32, 2),
}


class StepTimer:
    """Per-step compute time and the wait for data between steps (this process), after the warm-up epochs."""

    def __init__(self) -> None:
        self.step_s: list[float] = []
        self.data_s: list[float] = []
        self._started = self._ended = None

    def on_train_epoch_start(self, epoch: int) -> None:
        self._ended = time.perf_counter()  # the epoch's first wait includes the loader start

    def on_train_batch_start(self, epoch: int) -> None:
        self._started = time.perf_counter()
        if epoch > WARMUP_EPOCHS and self._ended is not None:
            self.data_s.append(self._started - self._ended)

    def on_train_batch_end(self, epoch: int) -> None:
        self._ended = time.perf_counter()
        if epoch > WARMUP_EPOCHS:
            self.step_s.append(self._ended - self._started)

    def on_fit_end(self, trainer) -> None:
        fabric = trainer.fabric
        if fabric.world_size == 1:
            return
        grads = torch.zeros(sum(p.numel() for p in trainer.student.parameters()))
        flag = torch.zeros(())
        self.allreduce_ms = {"gradients": _median_ms(lambda: fabric.all_reduce(grads, reduce_op="sum")),
                             "one_number": _median_ms(lambda: fabric.all_reduce(flag, reduce_op="sum"))}


def _median_ms(function, repeats: int = 200) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def components(out: Path) -> dict[str, float]:
    """Teacher forward and student step (forward, backward, AdamW) in this process, interleaved, median ms."""
    from torch import nn

    config = run_config(out, "x", out / "teacher.safetensors", True, 64, 1)
    teacher = build_model(config.teacher, (1, 8, 8), 10).eval()
    student = build_model(config.student, (1, 8, 8), 10)
    optimizer = torch.optim.AdamW(student.parameters())
    loss_fn = nn.CrossEntropyLoss()
    parts = ("teacher_forward", "student_step")
    times: dict[str, list[float]] = {f"{part}_{b}": [] for part in parts for b in (64, 32)}
    for _ in range(300):
        for b in (64, 32):
            x, y = torch.randn(b, 1, 8, 8), torch.randint(0, 10, (b,))
            started = time.perf_counter()
            with torch.no_grad():
                teacher(x)
            middle = time.perf_counter()
            optimizer.zero_grad()
            loss_fn(student(x), y).backward()
            optimizer.step()
            ended = time.perf_counter()
            times[f"teacher_forward_{b}"].append(middle - started)
            times[f"student_step_{b}"].append(ended - middle)
    return {f"{k}_ms": 1000 * statistics.median(v) for k, v in times.items()}


def run_config(out: Path, name: str, teacher: Path, distil: bool, batch: int, processes: int):
    overrides = [f"output_dir={out}", f"name={name}", "data.name=digits", "student={name: mlp, kwargs: {width: 64}}",
                 "trainer.epochs=4", f"trainer.batch_size={batch}", "trainer.progress=false",
                 "trainer.accelerator=cpu", f"trainer.devices={processes}"]
    if processes > 1:
        overrides.append("trainer.strategy=ddp")
    if distil:
        overrides.append(f"teacher={{name: mlp, kwargs: {{width: 1024, depth: 2}}, weights: {teacher}}}")
    return load_config(overrides=overrides)


def one_run(out: Path, name: str) -> None:
    """Runs in its own process (Fabric re-runs this command for the second rank)."""
    distil, batch, processes = RUNS[name]
    timer = StepTimer()
    config = run_config(out, name, out / "teacher.safetensors", distil, batch, processes)
    result = (api.distill if distil else api.train)(config, overwrite=True, callbacks=[timer])
    if result.metrics:  # rank 0
        figures = {"step_ms": 1000 * statistics.median(timer.step_s), "data_ms": 1000 * statistics.median(timer.data_s),
                   "steps_per_epoch": len(timer.step_s) // (config.trainer.epochs - WARMUP_EPOCHS),
                   "epoch_time_s": statistics.median(r["epoch_time_s"] for r in result.history[WARMUP_EPOCHS:])}
        if hasattr(timer, "allreduce_ms"):
            figures["allreduce_ms"] = timer.allreduce_ms
        (out / f"{name}.json").write_text(json.dumps(figures))
        print(name, json.dumps(figures))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_weights(build_model(load_config(overrides=["student={name: mlp, kwargs: {width: 1024, depth: 2}}"]).student,
                             (1, 8, 8), 10), out / "teacher.safetensors")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in RUNS:
        subprocess.run([sys.executable, __file__, str(out), name], env=env, check=True)
    figures = {name: json.loads((out / f"{name}.json").read_text()) for name in RUNS}
    torch.set_num_threads(1)
    figures["components"] = components(out)
    figures["load_average_1min"] = os.getloadavg()[0]
    figures["cpu_count"] = os.cpu_count()
    (out / "scaling.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 3:
        one_run(Path(sys.argv[1]), sys.argv[2])
    else:
        main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/scaling"))
