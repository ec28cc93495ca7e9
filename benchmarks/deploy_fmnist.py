"""Deploy benchmark (issue 17), one command on a 2-core CPU:

    .venv/bin/python benchmarks/deploy_fmnist.py                  # teacher, KD student, prune + KD, int8, bench
    .venv/bin/python benchmarks/deploy_fmnist.py --reuse          # keep trained runs, redo deploy + bench

teacher (configs/fashion_mnist_teacher.yaml) -> distilled student (configs/fashion_mnist_kd.yaml) -> 50% of the
parameters pruned structurally + KD -> int8 (static PTQ and QAT + KD), each in PyTorch eager, ONNX Runtime fp32 /
int8 and ExecuTorch (XNNPACK), every runtime pinned to --threads threads. Epochs and the training share
(--train-fraction, default a quarter of the 55,000 images) are small to fit a shared 2-core CPU; test: all 10,000.
Results: <output-dir>/student-kd/deploy/bench.{json,md} and <output-dir>/deploy_fmnist.json (rows + environment).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from kdistill import api
from kdistill.config import DeployConfig, PruneConfig, load_config
from kdistill.deploy import report
from kdistill.deploy.bench import BenchTable, bench_model, make_artefacts, ptq_artefact
from kdistill.deploy.chain import deploy_run
from kdistill.deploy.errors import ParityError
from kdistill.deploy.export import ExportJob
from kdistill.deploy.formats import executorch_available
from kdistill.deploy.source import load_run


def train_runs(out: Path, args) -> tuple[Path, Path]:
    common = [f"output_dir={out}", "trainer.progress=false", "trainer.accelerator=cpu",
              f"data.train_fraction={args.train_fraction}"]
    teacher_dir, student_dir = out / "teacher", out / "student-kd"
    if not (args.reuse and (teacher_dir / "summary.json").is_file()):
        api.train(load_config("configs/fashion_mnist_teacher.yaml",
                              [*common, f"trainer.epochs={args.teacher_epochs}"]), overwrite=True)
    if not (args.reuse and (student_dir / "summary.json").is_file()):
        api.distill(load_config("configs/fashion_mnist_kd.yaml", [
            *common, f"trainer.epochs={args.student_epochs}",
            f"teacher.weights={teacher_dir / 'student.safetensors'}"]), overwrite=True)
    return teacher_dir, student_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs/bench-deploy")
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--train-fraction", type=float, default=0.25, help="share of the training split used")
    parser.add_argument("--prune", type=float, default=0.5)
    parser.add_argument("--prune-epochs", type=int, default=1)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--int8-min-agreement", type=float, default=0.85,
                        help="parity floor of int8 artefacts (the default 0.9 refused both int8 files of this run)")
    parser.add_argument("--reuse", action="store_true", help="keep the trained teacher and student runs")
    args = parser.parse_args()
    out = Path(args.output_dir)
    started = time.perf_counter()
    teacher_dir, student_dir = train_runs(out, args)
    trained = time.perf_counter()

    options = DeployConfig(prune=PruneConfig(amount=args.prune, epochs=args.prune_epochs), quantize="int8",
                           quantize_method="qat", qat_epochs=args.qat_epochs, format="onnx", threads=args.threads,
                           int8_min_agreement=args.int8_min_agreement)
    chain = deploy_run(student_dir, options)  # teacher, student, pruned: eager + onnx, pruned + QAT int8 onnx
    rows = list(chain.table.rows)
    notes = [f"int8 of the pruned student: QAT, {args.qat_epochs} epoch(s) of KD on the fake-quantized model "
             "(torchao pt2e, X86 quantizer), exported as QDQ ONNX."]

    # Static PTQ (ONNX Runtime QDQ per-channel) of the same pruned student: published only if it passes parity.
    pruned = load_run(chain.pruned_run)
    job = ExportJob.of_run(pruned)
    try:
        ptq = ptq_artefact(job, chain.artefacts[0].path, chain.folder / "pruned.ptq-int8.onnx", "static", options)
        rows += [dict(r, model=f"{r['model']} PTQ") for r in
                 bench_model(f"{student_dir.name} (pruned)", job, [ptq], options, eager=False)]
    except ParityError as exc:
        notes.append(f"static PTQ int8 was refused by the parity check: {exc}")
    if executorch_available():
        pte = make_artefacts(job, ["pte"], chain.folder / "bench-artefacts", "pruned", options)
        rows += bench_model(f"{student_dir.name} (pruned)", job, pte, options, eager=False)
        for name, run_dir in (("teacher", teacher_dir), (student_dir.name, student_dir)):
            job = ExportJob.of_run(load_run(run_dir))
            rows += bench_model(name, job, make_artefacts(job, ["pte"], chain.folder / "bench-artefacts", name,
                                                          options), options, eager=False)
    else:
        notes.append("ExecuTorch is not installed: no .pte rows.")
    table = BenchTable(rows, chain.table.environment, notes)
    timing = {"train_s": trained - started, "deploy_s": time.perf_counter() - trained}
    summary = {**table.as_dict(), "args": vars(args), "time": timing,
               "summaries": {p.name: json.loads((p / "summary.json").read_text())
                             for p in (teacher_dir, student_dir, chain.pruned_run)}}
    (out / "deploy_fmnist.json").write_text(json.dumps(summary, indent=2))
    (out / "deploy_fmnist.md").write_text(report.markdown(table, "Fashion-MNIST deploy chain"))
    print(report.markdown(table, "Fashion-MNIST deploy chain"))
    print(json.dumps(timing))


if __name__ == "__main__":
    main()
