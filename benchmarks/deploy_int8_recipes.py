"""Static int8 recipes on a small Fashion-MNIST CNN student: which one keeps the float student's predictions?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deploy_int8_recipes.py            # about 1 minute on 1 core
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deploy_int8_recipes.py --prune 0.5  # the pruned student (+ KD)
    ... deploy_int8_recipes.py --reuse --prune 0.5 --qat-epochs 1   # also QAT: its ONNX vs the converted graph

Trains the benchmark's student architecture (configs/fashion_mnist_kd.yaml's ``cnn`` width 16, depth 1) alone
on a slice of the training split (--train-fraction, --epochs), optionally prunes --prune of its parameters
(Torch-Pruning, then --prune-epochs of KD from the unpruned student, as ``kdistill deploy --prune``), exports
it, then quantizes it with ONNX Runtime static QDQ per-channel under each recipe: calibration samples,
calibration method (minmax, percentile, entropy) and which layers stay fp32. For each: top-1 agreement and mean
cosine with the float student on --parity-samples validation images, and test accuracy. With --qat-epochs, also
QAT + KD (``qat_distill``, teacher: the unpruned student) exported as QDQ ONNX (<output-dir>/qat.int8.onnx) and
compared with the converted PyTorch int8 graph, with ONNX Runtime's graph optimisations on and off.
Results: <output-dir>/int8_recipes.json (and printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from kdistill import api
from kdistill.config import DeployConfig, PruneConfig, load_config
from kdistill.deploy.export import ExportJob, export_job
from kdistill.deploy.formats import onnx_runner
from kdistill.deploy.measure import runner_accuracy
from kdistill.deploy.parity import compare_outputs
from kdistill.deploy.prune import prune_and_distill
from kdistill.deploy.quantize import StaticRecipe, quantize_onnx
from kdistill.deploy.source import eval_split, load_run

# (calibration samples, calibration method, layers kept in fp32): the current default first
RECIPES = [(256, "minmax", ()), (1024, "minmax", ()), (256, "percentile", ()), (1024, "percentile", ()),
           (256, "entropy", ()), (256, "minmax", ("first",)), (256, "minmax", ("last",)),
           (256, "minmax", ("first", "last")), (1024, "percentile", ("first", "last"))]


def train_student(out: Path, args) -> Path:
    run_dir = out / "student"
    if not (args.reuse and (run_dir / "summary.json").is_file()):
        api.train(load_config("configs/fashion_mnist_kd.yaml", [
            f"output_dir={out}", "name=student", "teacher=null", "distill.methods={}", "distill.alpha=1.0",
            f"trainer.epochs={args.epochs}", f"data.train_fraction={args.train_fraction}", "trainer.progress=false",
            "trainer.accelerator=cpu"]), overwrite=True)
    return run_dir


def pruned_student(student_dir: Path, args) -> Path:
    """The student with ``args.prune`` of its parameters removed, then distilled from its unpruned self."""
    run = load_run(student_dir)
    teacher = run.config.student.model_copy(update={"weights": str(student_dir / "student.safetensors")})
    distill = run.config.distill.model_copy(update={"methods": {"kd": 1.0}, "alpha": 0.1, "temperature": 4.0})
    run = dataclasses.replace(run, config=run.config.model_copy(update={"distill": distill}))
    return prune_and_distill(run, teacher, PruneConfig(amount=args.prune, epochs=args.prune_epochs),
                             student_dir.parent / "deploy")[-1].run_dir


def measure(job: ExportJob, float_onnx: Path, recipe: tuple, args) -> dict:
    samples, calibration, keep_float = recipe
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "int8.onnx"
        started = time.perf_counter()
        quantize_onnx(float_onnx, path, "static", job.splits.train, job.input_names, samples,
                      StaticRecipe(calibration, keep_float))
        seconds = time.perf_counter() - started
        runner = onnx_runner(path, 1)
        parity = compare_outputs(job.module, runner, eval_split(job.splits), job.input_names, args.parity_samples,
                                 path.name, int8=True)
        accuracy = runner_accuracy(runner, job.splits.test, job.input_names)
    return {"calibration_samples": samples, "calibration": calibration, "fp32_layers": list(keep_float),
            "top1_agreement": parity.top1_agreement, "mean_cosine": parity.mean_cosine,
            "max_abs_diff": parity.max_abs_diff, "test_accuracy": accuracy, "quantize_s": seconds}


def qat_parity(job: ExportJob, student_dir: Path, out: Path, args) -> dict:
    """QAT int8 ONNX vs the converted PyTorch graph it was exported from, ORT optimisations on and off."""
    import onnxruntime as ort
    import torch

    from kdistill.deploy.formats import FORMATS
    from kdistill.deploy.qat import qat_distill

    student = load_run(student_dir)
    options = DeployConfig(qat_epochs=args.qat_epochs)
    quantized = qat_distill(job.module, student.student, job.splits, student.config.distill, options, 128)
    path = out / "qat.int8.onnx"
    FORMATS.get("onnx")().export(quantized, job.example(), job.input_names, path)
    result = {}
    for level in ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL"):
        settings = ort.SessionOptions()
        settings.intra_op_num_threads = 1
        settings.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        session = ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])

        def runner(tensors, session=session):
            return torch.from_numpy(session.run(None, {"input": tensors[0].numpy()})[0])

        report = compare_outputs(quantized, runner, eval_split(job.splits), job.input_names, 512, path.name, True)
        result[level] = {"top1_agreement": report.top1_agreement, "max_abs_diff": report.max_abs_diff}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs/bench-int8-recipes")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-fraction", type=float, default=0.1)
    parser.add_argument("--parity-samples", type=int, default=2000)
    parser.add_argument("--prune", type=float, default=None, help="share of parameters to prune first")
    parser.add_argument("--prune-epochs", type=int, default=1)
    parser.add_argument("--qat-epochs", type=int, default=0, help="also QAT for this many epochs (0: no QAT)")
    parser.add_argument("--reuse", action="store_true", help="keep the trained student")
    args = parser.parse_args()
    out = Path(args.output_dir)
    student_dir = train_student(out, args)
    run = load_run(pruned_student(student_dir, args) if args.prune else student_dir)
    job = ExportJob.of_run(run)
    float_onnx = export_job(job, "onnx", out / "student.onnx", DeployConfig()).path
    float_accuracy = runner_accuracy(onnx_runner(float_onnx, 1), run.splits.test, job.input_names)
    rows = []
    for recipe in RECIPES:
        rows.append(measure(job, float_onnx, recipe, args))
        print(json.dumps(rows[-1]), flush=True)
    result = {"args": vars(args), "float_test_accuracy": float_accuracy, "rows": rows}
    if args.qat_epochs:
        result["qat_onnx_vs_converted_graph"] = qat_parity(job, student_dir, out, args)
        print(json.dumps(result["qat_onnx_vs_converted_graph"]))
    (out / "int8_recipes.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"float test accuracy {100 * float_accuracy:.2f}%")
    print("| calibration | samples | fp32 layers | top-1 agreement | mean cosine | test acc |")
    for r in rows:
        print(f"| {r['calibration']} | {r['calibration_samples']} | {', '.join(r['fp32_layers']) or '-'} | "
              f"{100 * r['top1_agreement']:.2f}% | {r['mean_cosine']:.4f} | {100 * r['test_accuracy']:.2f}% |")


if __name__ == "__main__":
    main()
