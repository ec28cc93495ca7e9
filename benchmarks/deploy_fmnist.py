"""Deploy benchmark (issue 17), one command on a 2-core CPU:

    .venv/bin/python benchmarks/deploy_fmnist.py                  # teacher, KD student, prune + KD, int8, bench
    .venv/bin/python benchmarks/deploy_fmnist.py --reuse          # keep trained runs, redo deploy + bench
    .venv/bin/python benchmarks/deploy_fmnist.py --teacher-run runs/bench-fmnist/teacher \
        --student-run runs/student-kd                              # runs trained elsewhere: deploy + bench only

teacher (configs/fashion_mnist_teacher.yaml) -> distilled student (configs/fashion_mnist_kd.yaml) -> 50% of the
parameters pruned structurally + KD -> int8 (static PTQ and QAT + KD), each in PyTorch eager, ONNX Runtime fp32 /
int8 and ExecuTorch (XNNPACK), every runtime pinned to --threads threads. Epochs and the training share
(--train-fraction, default a quarter of the 55,000 images) are small to fit a shared 2-core CPU; test: all 10,000.
--teacher-run (a finished teacher run folder) or --teacher-weights (its student.safetensors, for the
architecture of configs/fashion_mnist_teacher.yaml) skips training the teacher; --student-run (a finished
distilled student run folder) skips training the student, whose deploy/ folder then receives the artefacts.
Results: <student run>/deploy/bench.{json,md} and <output-dir>/deploy_fmnist.json (rows + environment).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from kdistill import api
from kdistill.config import DeployConfig, PruneConfig, load_config
from kdistill.deploy import report
from kdistill.deploy.bench import BenchTable, bench_model, make_artefacts, ptq_artefact
from kdistill.deploy.chain import deploy_run
from kdistill.deploy.errors import ParityError, QuantizeError
from kdistill.deploy.export import ExportJob
from kdistill.deploy.formats import executorch_available
from kdistill.deploy.quantize import CALIBRATION_METHODS, StaticRecipe
from kdistill.deploy.source import LoadedRun, build_teacher_of, load_run

# PruneConfig / DeployConfig field -> the flag that sets it, for error lines
FLAG_OF_FIELD = {"amount": "--prune", "epochs": "--prune-epochs", "steps": "--prune-steps",
                 "qat_epochs": "--qat-epochs", "threads": "--threads", "int8_min_agreement": "--int8-min-agreement"}


def fail(message: str) -> NoReturn:
    """Bad input: one ``error:`` line and exit status 2, like the kdistill CLI."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def finished_run(path: str | None, flag: str) -> Path | None:
    """A run folder given on the command line, refused in one line unless it holds a finished run."""
    if path is None:
        return None
    if not (Path(path) / "summary.json").is_file() or not (Path(path) / "student.safetensors").is_file():
        fail(f"{flag} {path}: not a finished run folder (no summary.json/student.safetensors)")
    return Path(path)


def teacher_overrides(out: Path, args, common: list[str]) -> tuple[Path | None, list[str]]:
    """(teacher run folder if there is one, the distillation config's teacher overrides): given or trained now."""
    given_run = finished_run(args.teacher_run, "--teacher-run")
    if given_run is not None:  # a run folder stands for the model it trained (its own architecture)
        return given_run, [f"teacher.name={given_run}", "teacher.kwargs={}", f"teacher.weights={given_run}"]
    if args.teacher_weights is not None:
        if not Path(args.teacher_weights).is_file():
            fail(f"--teacher-weights {args.teacher_weights}: no such file")
        return None, [f"teacher.weights={args.teacher_weights}"]
    teacher_dir = out / "teacher"
    if not (args.reuse and (teacher_dir / "summary.json").is_file()):
        api.train(load_config("configs/fashion_mnist_teacher.yaml",
                              [*common, f"trainer.epochs={args.teacher_epochs}"]), overwrite=True)
    return teacher_dir, [f"teacher.weights={teacher_dir / 'student.safetensors'}"]


def train_runs(out: Path, args) -> tuple[Path | None, Path]:
    """(teacher run folder or None, distilled student run folder); only what was not given is trained."""
    common = [f"output_dir={out}", "trainer.progress=false", "trainer.accelerator=cpu",
              f"data.train_fraction={args.train_fraction}"]
    given_student = finished_run(args.student_run, "--student-run")
    if given_student is not None:
        return finished_run(args.teacher_run, "--teacher-run"), given_student
    teacher_dir, teacher = teacher_overrides(out, args, common)
    student_dir = out / "student-kd"
    if not (args.reuse and (student_dir / "summary.json").is_file()):
        api.distill(load_config("configs/fashion_mnist_kd.yaml",
                                [*common, f"trainer.epochs={args.student_epochs}", *teacher]), overwrite=True)
    return teacher_dir, student_dir


def teacher_job(teacher_dir: Path | None, student: LoadedRun) -> ExportJob:
    """The teacher as an export job: its own run folder, or the teacher named in the student's config."""
    if teacher_dir is not None:
        return ExportJob.of_run(load_run(teacher_dir))
    return ExportJob.of_model(build_teacher_of(student.config, student.splits), student)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs/bench-deploy")
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--train-fraction", type=float, default=0.25, help="share of the training split used")
    parser.add_argument("--prune", type=float, default=0.5)
    parser.add_argument("--prune-epochs", type=int, default=1, help="KD epochs after each pruning step")
    parser.add_argument("--prune-steps", type=int, default=1, help="iterative pruning: this many prune + KD steps")
    parser.add_argument("--prune-allocation", default="uniform", choices=["uniform", "global"],
                        help="channels: the same share of every layer, or ranked across layers")
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--int8-min-agreement", type=float, default=DeployConfig().int8_min_agreement,
                        help="parity floor of int8 artefacts (top-1 agreement)")
    parser.add_argument("--calibration", default="minmax", choices=CALIBRATION_METHODS,
                        help="static PTQ: how activation ranges are calibrated")
    parser.add_argument("--keep-float", default="", help="static PTQ: first,last: those layers stay fp32")
    parser.add_argument("--reuse", action="store_true", help="keep the trained teacher and student runs")
    parser.add_argument("--teacher-run", help="a finished teacher run folder: no teacher training")
    parser.add_argument("--teacher-weights", help="teacher weights (.safetensors, the teacher config's model)")
    parser.add_argument("--student-run", help="a finished distilled student run folder: no training at all")
    args = parser.parse_args()
    try:  # checked before any training
        recipe = StaticRecipe(args.calibration, tuple(w for w in args.keep_float.split(",") if w))
        prune = PruneConfig(amount=args.prune, epochs=args.prune_epochs, steps=args.prune_steps,
                            allocation=args.prune_allocation)
        options = DeployConfig(prune=prune, quantize="int8", quantize_method="qat", qat_epochs=args.qat_epochs,
                               format="onnx", threads=args.threads, int8_min_agreement=args.int8_min_agreement)
    except QuantizeError as exc:
        fail(str(exc))
    except ValidationError as exc:
        problem = exc.errors()[0]
        flag = FLAG_OF_FIELD.get(str(problem["loc"][-1]), str(problem["loc"][-1]))
        fail(f"{flag}: {problem['msg'].lower()} (got {problem['input']!r})")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    teacher_dir, student_dir = train_runs(out, args)
    trained = time.perf_counter()

    # teacher, student, pruned: eager + onnx; the pruned student also as QAT int8 onnx
    chain = deploy_run(student_dir, options, teacher_dir)
    rows = list(chain.table.rows)
    qat = chain.artefacts[-1].parity
    notes = [f"int8 of the pruned student: QAT, {args.qat_epochs} epoch(s) of KD on the fake-quantized model "
             "(torchao pt2e, X86 quantizer), exported as QDQ ONNX; vs its converted PyTorch int8 graph: top-1 "
             f"agreement {100 * qat.top1_agreement:.2f}%, max |diff| {qat.max_abs_diff:.3g}."]

    # Static PTQ (ONNX Runtime QDQ per-channel) of the same pruned student: published only if it passes parity.
    pruned = load_run(chain.pruned_run)
    job = ExportJob.of_run(pruned)
    try:
        ptq = ptq_artefact(job, chain.artefacts[0].path, chain.folder / "pruned.ptq-int8.onnx", "static", options,
                           recipe)
        notes.append(f"static PTQ int8 ({recipe.calibration} calibration, fp32 layers: "
                     f"{', '.join(recipe.keep_float) or 'none'}) vs the float pruned student: top-1 agreement "
                     f"{100 * ptq.parity.top1_agreement:.2f}%, max |diff| {ptq.parity.max_abs_diff:.3g}.")
        rows += [dict(r, model=f"{r['model']} PTQ") for r in
                 bench_model(f"{student_dir.name} (pruned)", job, [ptq], options, eager=False)]
    except ParityError as exc:
        notes.append(f"static PTQ int8 was refused by the parity check: {exc}")
    if executorch_available():
        pte = make_artefacts(job, ["pte"], chain.folder / "bench-artefacts", "pruned", options)
        rows += bench_model(f"{student_dir.name} (pruned)", job, pte, options, eager=False)
        student = load_run(student_dir)
        jobs = (("teacher", teacher_job(teacher_dir, student)), (student_dir.name, ExportJob.of_run(student)))
        for name, job in jobs:
            rows += bench_model(name, job, make_artefacts(job, ["pte"], chain.folder / "bench-artefacts", name,
                                                          options), options, eager=False)
    else:
        notes.append("ExecuTorch is not installed: no .pte rows.")
    table = BenchTable(rows, chain.table.environment, notes)
    timing = {"train_s": trained - started, "deploy_s": time.perf_counter() - trained}
    summary = {**table.as_dict(), "args": vars(args), "time": timing,
               "summaries": {p.name: json.loads((p / "summary.json").read_text())
                             for p in (teacher_dir, student_dir, chain.pruned_run) if p is not None}}
    (out / "deploy_fmnist.json").write_text(json.dumps(summary, indent=2))
    (out / "deploy_fmnist.md").write_text(report.markdown(table, "Fashion-MNIST deploy chain"))
    print(report.markdown(table, "Fashion-MNIST deploy chain"))
    print(json.dumps(timing))


if __name__ == "__main__":
    main()
