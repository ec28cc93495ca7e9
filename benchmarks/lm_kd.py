"""Language-model distillation benchmark (issue 5), one command on a 2-core CPU, about 16 minutes:

    .venv/bin/python benchmarks/lm_kd.py                         # full run
    .venv/bin/python benchmarks/lm_kd.py --max-chars 40000 --teacher-epochs 1 --student-epochs 1   # smoke run
    .venv/bin/python benchmarks/lm_kd.py --reuse-teacher --only seq-kd,gkd   # two rows, the finished run's teacher

1. Corpus: kdistill's stdlib corpus (``kdistill.lm.corpus.code_documents``) cut into windows that fit
   ``--max-length`` byte tokens, so nothing is truncated away; byte tokenizer (vocabulary 259).
2. A tiny GPT-2 teacher (hidden 128, 4 layers) trained for ``--teacher-epochs``.
3. A smaller student (hidden 64, 2 layers), all runs for the same ``--student-epochs`` over the same tokens:
   trained alone; distilled from the live teacher with token_fkl, token_rkl, token_jsd (alpha 0.5, T = 1);
   distilled with token_fkl from the teacher-output cache at top-k 8, top-k 32 and full (float16 log-probs);
   sequence-level KD (``seq-kd``: the teacher greedily completes the first 16 byte tokens of every training window
   up to the window length, ``distill.sequence_kd``; the student trains on those completions with plain CE);
   on-policy GKD (``gkd``: token_jsd, beta 0.5, alpha 0, ``distill.on_policy`` with lam 0.5: half of the batches
   are the student's own samples from bos, up to the window length, scored by the teacher).
4. Every student: validation and test perplexity (per byte token), next-token accuracy, top-1 agreement with the
   teacher on the test split; every cache: bytes per token and size on disk.
Results: <output-dir>/results.json (and printed).

Rows: ``--only alone,token_fkl,...`` runs just the named rows (names in ``ROWS``). ``--reuse-teacher`` keeps
``<output-dir>/teacher`` when its saved config is the one this invocation would train (else the teacher is trained
again); with a reused teacher, the rows of an earlier results.json of the same setup are kept and the new rows are
merged into it (each invocation is listed under ``invocations``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

from kdistill import api
from kdistill.cache import build_cache
from kdistill.config import DataConfig, DistillConfig, ModelConfig, OptimConfig, RunConfig, TrainerConfig
from kdistill.data import load_data
from kdistill.evaluate import task_metrics
from kdistill.lm.corpus import code_documents, write_jsonl
from kdistill.models import build_model
from kdistill.runs import STUDENT_WEIGHTS
from kdistill.tasks import CausalLMTask

TEACHER = ModelConfig(name="tiny-gpt2", kwargs={"hidden": 128, "n_layer": 4, "heads": 4})
STUDENT = ModelConfig(name="tiny-gpt2", kwargs={"hidden": 64, "n_layer": 2, "heads": 2})
OPTIM = OptimConfig(name="adamw", lr=2e-3, weight_decay=0.01)
LIVE_METHODS = ("token_fkl", "token_rkl", "token_jsd")
CACHE_MODES = {"top8": ("topk", 8), "top32": ("topk", 32), "full": ("full", None)}
ROWS = ("alone", *LIVE_METHODS, *(f"cache-{name}" for name in CACHE_MODES), "seq-kd", "gkd")
SEQ_KD_PROMPT_TOKENS = 16  # prompt: the first 16 byte tokens of each training window
SEQ_KD_BATCH = 64  # prompts per teacher generate call
GKD_LAM = 0.5  # share of batches replaced by the student's own samples


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
               teacher: ModelConfig | None = None, method: str | None = None,
               distill: DistillConfig | None = None) -> RunConfig:
    if distill is None:
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


def target_tokens(labels: torch.Tensor) -> int:
    return int((labels[:, 1:] != -100).sum())


@contextmanager
def patched(name: str, wrap):
    """Replace ``kdistill.api.<name>`` by ``wrap(original)`` for one run (timing / counting, no behaviour change)."""
    original = getattr(api, name)
    setattr(api, name, wrap(original))
    try:
        yield
    finally:
        setattr(api, name, original)


class TokenCounter:
    """A loop callback: counts the target tokens the student trained on, and the on-policy micro-batches (those
    GKD's batch transform replaced by the student's own samples)."""

    def __init__(self) -> None:
        self.tokens = self.on_policy_tokens = self.batches = self.on_policy_batches = 0

    def on_train_batch_start(self, micro_batches, raw_batches) -> None:
        for out, batch in zip(micro_batches, raw_batches, strict=True):
            tokens = target_tokens(out["labels"])
            self.tokens += tokens
            self.batches += 1
            if out is not batch:
                self.on_policy_tokens += tokens
                self.on_policy_batches += 1


def sequence_kd_row(out: Path, data: DataConfig, teacher_config: ModelConfig, epochs: int, splits, teacher,
                    max_length: int) -> dict:
    """Sequence-level KD: greedy teacher completions of each training window's first tokens; CE on them."""
    new_tokens = max_length - 2 - SEQ_KD_PROMPT_TOKENS  # bos + prompt + completion + eos = max_length
    distill = DistillConfig(temperature=1.0, alpha=1.0, methods={}, sequence_kd={
        "max_new_tokens": new_tokens, "greedy": True, "prompt_tokens": SEQ_KD_PROMPT_TOKENS,
        "batch_size": SEQ_KD_BATCH})
    config = run_config("student-seq-kd", out, data, STUDENT, epochs, teacher_config, distill=distill)
    generation: dict = {}

    def wrap(original):
        def timed_generation(*args, **kwargs):
            dataset, seconds = timed(original, *args, **kwargs)
            generation.update(seconds=seconds, sequences=len(dataset), target_tokens=target_tokens(dataset.labels))
            return dataset
        return timed_generation

    with patched("sequence_kd_train_set", wrap):
        result, seconds = timed(api.distill, config, overwrite=True)
    row = student_row(result, splits, teacher, seconds)
    row.update(generation_seconds=generation["seconds"], train_sequences=generation["sequences"],
               train_tokens=generation["target_tokens"] * epochs,
               sequence_kd=config.distill.sequence_kd.model_dump())
    return row


def gkd_row(out: Path, data: DataConfig, teacher_config: ModelConfig, epochs: int, splits, teacher,
            max_length: int) -> dict:
    """On-policy GKD: token_jsd (beta 0.5) only (alpha 0: CE on the student's own samples would reinforce them)."""
    distill = DistillConfig(temperature=1.0, alpha=0.0, methods={"token_jsd": 1.0}, on_policy={
        "lam": GKD_LAM, "max_new_tokens": max_length - 1, "temperature": 1.0})
    config = run_config("student-gkd", out, data, STUDENT, epochs, teacher_config, distill=distill)
    counter = TokenCounter()
    result, seconds = timed(api.distill, config, overwrite=True, callbacks=[counter])
    row = student_row(result, splits, teacher, seconds)
    row.update(train_tokens=counter.tokens, on_policy_tokens=counter.on_policy_tokens,
               on_policy_batches=counter.on_policy_batches, batches=counter.batches,
               on_policy=config.distill.on_policy.model_dump(), alpha=0.0)
    return row


def reusable_teacher(config: RunConfig) -> bool:
    """The teacher folder holds finished weights trained with exactly this config."""
    run_dir = config.run_dir
    if not (run_dir / STUDENT_WEIGHTS).is_file() or not (run_dir / "config.yaml").is_file():
        return False
    saved = RunConfig.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
    return saved.model_dump(mode="json") == config.model_dump(mode="json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-chars", type=int, default=400_000, help="stdlib source characters in the corpus")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    parser.add_argument("--output-dir", default="runs/bench-lm")
    parser.add_argument("--keep-caches", action="store_true", help="keep the cache folders (the full one is ~200 MB)")
    parser.add_argument("--only", default=",".join(ROWS), help=f"comma-separated rows to run (default all: {ROWS})")
    parser.add_argument("--reuse-teacher", action="store_true",
                        help="keep <output-dir>/teacher if its config matches, and merge into its results.json")
    args = parser.parse_args()
    rows = [row.strip() for row in args.only.split(",") if row.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"--only: unknown rows {unknown}; choose from {list(ROWS)}")
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

    teacher_run = run_config("teacher", out, data, TEACHER, args.teacher_epochs)
    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else None
    reused = args.reuse_teacher and reusable_teacher(teacher_run)
    if reused:
        teacher_seconds = (previous or {}).get("teacher", {}).get("train_seconds")
        print(f"teacher: reusing {teacher_run.run_dir} (same config)", flush=True)
    else:
        if args.reuse_teacher:
            print(f"teacher: {teacher_run.run_dir} missing or trained with another config; training it", flush=True)
        _, teacher_seconds = timed(api.train, teacher_run, overwrite=True)
    weights = str(teacher_run.run_dir / STUDENT_WEIGHTS)
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
    if "alone" in rows:
        result, seconds = timed(api.train, run_config("student-alone", out, data, STUDENT, args.student_epochs),
                                overwrite=True)
        students["alone"] = student_row(result, splits, teacher, seconds)
        print(f"alone: {students['alone']}", flush=True)
    for method in (m for m in LIVE_METHODS if m in rows):
        config = run_config(f"student-{method}", out, data, STUDENT, args.student_epochs, teacher_config, method)
        result, seconds = timed(api.distill, config, overwrite=True)
        students[method] = student_row(result, splits, teacher, seconds)
        print(f"{method}: {students[method]}", flush=True)

    caches: dict[str, dict] = {}
    build_config = run_config("cache-build", out, data, STUDENT, 1, teacher_config)
    for name, (mode, k) in ((n, spec) for n, spec in CACHE_MODES.items() if f"cache-{n}" in rows):
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
    for name, make_row in (("seq-kd", sequence_kd_row), ("gkd", gkd_row)):
        if name in rows:
            students[name] = make_row(out, data, teacher_config, args.student_epochs, splits, teacher,
                                      args.max_length)
            print(f"{name}: {students[name]}", flush=True)

    student_parameters = sum(p.numel() for p in build_model(STUDENT, splits.input_shape, splits.num_classes,
                                                            role="student").parameters())
    results = {
        "benchmark": "lm_kd",
        "setup": {"teacher": TEACHER.model_dump(), "student": STUDENT.model_dump(),
                  "student_parameters": student_parameters,
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
    invocation = {"argv": sys.argv[1:], "rows": rows, "teacher_reused": reused,
                  "seconds": results["total_seconds"]}
    results = merge_results(previous if reused else None, results, invocation)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


def same_setup(previous: dict, current: dict) -> bool:
    """Same corpus and training setup (library versions may differ), so rows of both can share one table. Model and
    optimiser configs are compared after validation, so fields added to them since (with defaults) do not count."""
    before, now = previous.get("setup", {}), current["setup"]
    for key, schema in (("teacher", ModelConfig), ("student", ModelConfig), ("optim", OptimConfig)):
        if key not in before or schema.model_validate(before[key]).model_dump() != now[key]:
            return False
    keys = ("batch_size", "max_length", "student_epochs", "student_train_tokens", "distill", "tokenizer")
    return previous.get("corpus") == current["corpus"] and all(before.get(k) == now.get(k) for k in keys)


def merge_results(previous: dict | None, results: dict, invocation: dict) -> dict:
    """Rows of an earlier results.json measured against the same teacher and setup are kept; the rows run now
    are added (or replace theirs). ``previous``: None when the teacher was trained again."""
    if previous is None or not same_setup(previous, results):
        if previous is not None:
            print("the earlier results.json has another corpus or setup: it is replaced, not merged", flush=True)
        return {**results, "invocations": [invocation]}
    merged = {**previous, "students": {**previous.get("students", {}), **results["students"]},
              "caches": {**previous.get("caches", {}), **results["caches"]}, "teacher": results["teacher"]}
    merged["setup"] = {**previous["setup"], **{k: v for k, v in results["setup"].items() if k not in previous["setup"]}}
    first = previous.get("invocations") or [{"argv": [], "rows": list(ROWS[:7]), "teacher_reused": False,
                                             "seconds": previous.get("total_seconds")}]
    merged["invocations"] = [*first, invocation]
    return merged


if __name__ == "__main__":
    main()
