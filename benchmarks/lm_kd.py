"""Language-model distillation benchmark (issue 5), one command on a 2-core CPU, about 13 minutes:

    .venv/bin/python benchmarks/lm_kd.py                         # full run
    .venv/bin/python benchmarks/lm_kd.py --max-chars 40000 --teacher-epochs 1 --student-epochs 1   # smoke run

1. Corpus: kdistill's stdlib corpus (``kdistill.lm.corpus.code_documents``) cut into windows that fit
   ``--max-length`` byte tokens, so nothing is truncated away; byte tokenizer (vocabulary 259).
2. A tiny GPT-2 teacher (hidden 128, 4 layers) trained for ``--teacher-epochs``.
3. A smaller student (hidden 64, 2 layers), all runs for the same ``--student-epochs`` over the same tokens:
   trained alone; distilled from the live teacher with token_fkl, token_rkl, token_jsd (alpha 0.5, T = 1);
   distilled with token_fkl from the teacher-output cache at top-k 8, top-k 32 and full (float16 log-probs).
4. Every student: validation and test perplexity (per byte token), next-token accuracy, top-1 agreement with the
   teacher on the test split; every cache: bytes per token and size on disk.
Results: <output-dir>/results.json (and printed).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import time
from pathlib import Path

import torch

from kdistill import api
from kdistill.cache import build_cache
from kdistill.config import DataConfig, DistillConfig, ModelConfig, OptimConfig, RunConfig, TrainerConfig
from kdistill.data import load_data
from kdistill.evaluate import task_metrics
from kdistill.lm.corpus import code_documents, write_jsonl
from kdistill.lm.task import CausalLMTask
from kdistill.models import build_model
from kdistill.runs import STUDENT_WEIGHTS

TEACHER = ModelConfig(name="tiny-gpt2", kwargs={"hidden": 128, "n_layer": 4, "heads": 4})
STUDENT = ModelConfig(name="tiny-gpt2", kwargs={"hidden": 64, "n_layer": 2, "heads": 2})
OPTIM = OptimConfig(name="adamw", lr=2e-3, weight_decay=0.01)
LIVE_METHODS = ("token_fkl", "token_rkl", "token_jsd")
CACHE_MODES = {"top8": ("topk", 8), "top32": ("topk", 32), "full": ("full", None)}


def write_windows(path: Path, max_chars: int, max_length: int) -> dict:
    """Stdlib source cut into windows of ``max_length - 2`` characters (room for bos and eos)."""
    width = max_length - 2
    documents = code_documents(max_chars=max_chars, chunk_chars=512)
    windows = [doc[i : i + width] for doc in documents for i in range(0, len(doc), width)]
    windows = [w for w in windows if w.strip()]
    write_jsonl([{"text": w} for w in windows], path)
    return {"documents": len(documents), "chars": sum(len(d) for d in documents), "records": len(windows),
            "bytes": sum(len(w.encode("utf-8")) for w in windows)}


def run_config(name: str, out: Path, data: DataConfig, model: ModelConfig, epochs: int,
               teacher: ModelConfig | None = None, method: str | None = None) -> RunConfig:
    distill = DistillConfig(temperature=1.0, alpha=0.5, methods={method: 1.0}) if method else DistillConfig()
    return RunConfig(name=name, task="causal-lm", output_dir=str(out), data=data, student=model, teacher=teacher,
                     distill=distill, optim=OPTIM,
                     trainer=TrainerConfig(epochs=epochs, batch_size=16, eval_batch_size=64, accelerator="cpu",
                                           progress=False))


def student_row(result, splits, teacher: torch.nn.Module, seconds: float) -> dict:
    """The same metrics for every run, computed here (cached runs have no teacher model inside the API)."""
    task = CausalLMTask()
    val = task_metrics(result.student, splits.val, task, None, batch_size=64)
    test = task_metrics(result.student, splits.test, task, teacher, batch_size=64)
    return {
        "val_perplexity": math.exp(val["test_loss"]),
        "test_perplexity": math.exp(test["test_loss"]),
        "test_accuracy": test["test_accuracy"],
        "test_agreement": test["test_agreement"],
        "train_seconds": seconds,
        "epoch_time_s": result.metrics["epoch_time_s"],
    }


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-chars", type=int, default=400_000, help="stdlib source characters in the corpus")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    parser.add_argument("--output-dir", default="runs/bench-lm")
    parser.add_argument("--keep-caches", action="store_true", help="keep the cache folders (the full one is ~200 MB)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    corpus = write_windows(out / "corpus.jsonl", args.max_chars, args.max_length)
    data = DataConfig(name=f"jsonl:{out / 'corpus.jsonl'}", max_length=args.max_length, val_fraction=0.05,
                      test_fraction=0.05)
    splits = load_data(data)
    tokens = {name: int((part.labels[:, 1:] != -100).sum()) for name, part in
              (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    corpus.update(tokens=tokens, sequences=[len(splits.train), len(splits.val), len(splits.test)])
    print(f"corpus: {corpus}", flush=True)

    teacher_result, teacher_seconds = timed(api.train, run_config("teacher", out, data, TEACHER,
                                                                  args.teacher_epochs), overwrite=True)
    weights = str(teacher_result.run_dir / STUDENT_WEIGHTS)
    teacher_config = TEACHER.model_copy(update={"weights": weights})
    teacher = build_model(teacher_config, splits.input_shape, splits.num_classes, role="teacher").eval()
    task = CausalLMTask()
    teacher_val = task_metrics(teacher, splits.val, task, None, batch_size=64)
    teacher_test = task_metrics(teacher, splits.test, task, None, batch_size=64)
    teacher_row = {"parameters": sum(p.numel() for p in teacher.parameters()),
                   "val_perplexity": math.exp(teacher_val["test_loss"]),
                   "test_perplexity": math.exp(teacher_test["test_loss"]),
                   "test_accuracy": teacher_test["test_accuracy"], "train_seconds": teacher_seconds,
                   "epochs": args.teacher_epochs, "train_tokens": tokens["train"] * args.teacher_epochs}
    print(f"teacher: {teacher_row}", flush=True)

    students: dict[str, dict] = {}
    result, seconds = timed(api.train, run_config("student-alone", out, data, STUDENT, args.student_epochs),
                            overwrite=True)
    students["alone"] = student_row(result, splits, teacher, seconds)
    print(f"alone: {students['alone']}", flush=True)
    for method in LIVE_METHODS:
        config = run_config(f"student-{method}", out, data, STUDENT, args.student_epochs, teacher_config, method)
        result, seconds = timed(api.distill, config, overwrite=True)
        students[method] = student_row(result, splits, teacher, seconds)
        print(f"{method}: {students[method]}", flush=True)

    caches: dict[str, dict] = {}
    build_config = run_config("cache-build", out, data, STUDENT, 1, teacher_config)
    for name, (mode, k) in CACHE_MODES.items():
        folder = out / f"cache-{name}"
        shutil.rmtree(folder, ignore_errors=True)  # a fresh build, so its time is measured
        info, build_seconds = timed(build_cache, build_config, folder, mode=mode, k=k, shard_size=512,
                                    device="cpu")
        spec = ModelConfig(name=f"cache:{folder}")
        config = run_config(f"student-token_fkl-cache-{name}", out, data, STUDENT, args.student_epochs, spec,
                            "token_fkl")
        result, seconds = timed(api.distill, config, overwrite=True)
        caches[name] = {"mode": mode, "k": k, "bytes_per_token": info["bytes_per_token"],
                        "bytes_per_target_token": info["bytes_per_target_token"],
                        "size_on_disk_mb": info["size_on_disk"] / 1e6, "build_seconds": build_seconds,
                        "student": student_row(result, splits, teacher, seconds)}
        print(f"cache {name}: {caches[name]}", flush=True)
        if not args.keep_caches:
            shutil.rmtree(folder)

    results = {
        "benchmark": "lm_kd",
        "setup": {"teacher": TEACHER.model_dump(), "student": STUDENT.model_dump(),
                  "student_parameters": sum(p.numel() for p in result.student.parameters()),
                  "optim": OPTIM.model_dump(), "batch_size": 16, "max_length": args.max_length,
                  "student_epochs": args.student_epochs, "student_train_tokens": tokens["train"] * args.student_epochs,
                  "distill": {"alpha": 0.5, "temperature": 1.0}, "tokenizer": "byte (vocab 259)",
                  "torch_threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
                  "perplexity": "per byte token, exp of the mean next-token cross-entropy"},
        "corpus": corpus,
        "teacher": teacher_row,
        "students": students,
        "caches": caches,
        "total_seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
