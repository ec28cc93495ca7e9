"""Few labels + an unlabelled transfer set (issue 16): teacher, student alone, student distilled, gap recovered.

    .venv/bin/python benchmarks/few_labels.py configs/digits_few_labels.yaml --seeds 0,1,2
    .venv/bin/python benchmarks/few_labels.py configs/fmnist_few_labels.yaml --seeds 0,1,2 --teacher-epochs 14

From one distill config with ``data.labeled_fraction`` (and/or ``data.unlabeled``): the teacher (``config.teacher``'s
model) is trained once on all labels (``--teacher-epochs``, seed 0) unless ``--teacher-weights`` is given; per seed
the student is trained alone on the labelled items (as many optimiser steps as the distilled run, unless
``--alone-epochs``) and distilled on the whole transfer set. Reported: last-epoch test accuracy (validation picks
nothing), mean +- std over the seeds, and gap recovered = (distilled - alone) / (teacher - alone).

Seeds can run as separate processes (one torch thread each on a small machine) and be combined afterwards:

    .venv/bin/python benchmarks/few_labels.py --merge runs/a/results.json runs/b/results.json --output-dir runs/ab

``--merge`` refuses files whose config, overrides, teacher or epochs differ, or that repeat a seed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from kdistill import api
from kdistill.config import load_config
from kdistill.data import load_data
from kdistill.data.transfer import label_counts


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(rows: dict[str, list[float]], teacher_accuracy: float, run: dict) -> dict:
    """The published summary: per-seed accuracies, mean +- std, gap recovered (of the means and per seed)."""
    alone_mean, alone_std = _mean_std(rows["alone"])
    distilled_mean, distilled_std = _mean_std(rows["distilled"])
    gaps = [(d - a) / (teacher_accuracy - a) for a, d in zip(rows["alone"], rows["distilled"], strict=True)]
    return {**run, "teacher_accuracy": teacher_accuracy, "alone": rows["alone"], "distilled": rows["distilled"],
            "alone_mean": alone_mean, "alone_std": alone_std,
            "distilled_mean": distilled_mean, "distilled_std": distilled_std,
            "gap_recovered": (distilled_mean - alone_mean) / (teacher_accuracy - alone_mean),
            "gap_recovered_per_seed": gaps}


# What must agree between result files before their seeds are pooled.
_SAME_RUN = ("config", "overrides", "teacher_accuracy", "train_labeled", "train_unlabeled", "alone_epochs",
             "distilled_epochs", "teacher_epochs")


def merge(paths: list[str]) -> dict:
    """One summary from several results.json of the same benchmark run on different seeds."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"error: no such results file: {', '.join(missing)} (give each seed's results.json)")
    parts = [json.loads(Path(p).read_text()) for p in paths]
    for path, part in zip(paths[1:], parts[1:], strict=True):
        differ = [key for key in _SAME_RUN if part.get(key) != parts[0].get(key)]
        if differ:
            raise SystemExit(f"error: {path} differs from {paths[0]} in {', '.join(differ)}: not the same run")
    seeds = [seed for part in parts for seed in str(part["seeds"]).split(",")]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: seeds {','.join(seeds)} repeat across {' '.join(paths)}")
    rows = {key: [value for part in parts for value in part[key]] for key in ("alone", "distilled")}
    run = {key: parts[0][key] for key in _SAME_RUN if key != "teacher_accuracy"}
    return summarize(rows, parts[0]["teacher_accuracy"], {
        **run, "seeds": ",".join(seeds), "merged_from": paths,
        "wall_s": sum(part["wall_s"] for part in parts), "wall_s_per_part": [part["wall_s"] for part in parts]})


def matched_alone_epochs(config) -> int:
    """Epochs of the labelled-only run that give it as many optimiser steps as the distilled run."""
    labeled, unlabeled = label_counts(load_data(config.data).train)
    batch = config.trainer.batch_size
    return config.trainer.epochs * math.ceil((labeled + unlabeled) / batch) // math.ceil(labeled / batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?")
    parser.add_argument("--merge", nargs="+", metavar="RESULTS_JSON", help="combine finished runs' seeds")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--teacher-weights", default=None, help="skip teacher training")
    parser.add_argument("--alone-epochs", type=int, default=None, help="default: as many steps as distilled")
    parser.add_argument("--output-dir", default="runs/bench-few-labels")
    parser.add_argument("--set", action="append", default=[], help="config overrides, key.path=value")
    args = parser.parse_args()
    out = Path(args.output_dir)
    if args.merge:
        try:
            summary = merge(args.merge)
        except SystemExit as refused:  # one error: line, exit status 2, as the kdistill CLI
            print(refused, file=sys.stderr)
            raise SystemExit(2) from None
        write(out, summary)
        return
    if args.config is None:
        parser.error("a config is required unless --merge is given")
    base = load_config(args.config, [*args.set, f"output_dir={out}", "trainer.progress=false"])
    started = time.perf_counter()
    weights = args.teacher_weights
    if weights is None:
        teacher_run = base.model_copy(update={
            "name": "teacher", "teacher": None, "seed": 0, "student": base.teacher.model_copy(update={"weights": None}),
            "data": base.data.model_copy(update={"labeled_fraction": 1.0, "unlabeled": None}),
            "trainer": base.trainer.model_copy(update={"epochs": args.teacher_epochs})})
        weights = str(api.train(teacher_run, overwrite=True).run_dir / "student.safetensors")
    teacher = base.teacher.model_copy(update={"weights": weights})
    distill_config = base.model_copy(update={"teacher": teacher})
    alone_epochs = args.alone_epochs or matched_alone_epochs(base)
    rows: dict[str, list[float]] = {"alone": [], "distilled": []}
    teacher_accuracy = float("nan")
    for seed in [int(s) for s in args.seeds.split(",")]:
        alone = base.model_copy(update={"name": f"alone-s{seed}", "seed": seed, "teacher": None,
                                        "trainer": base.trainer.model_copy(update={"epochs": alone_epochs})})
        rows["alone"].append(api.train(alone, overwrite=True).metrics["test_accuracy"])
        result = api.distill(distill_config.model_copy(update={"name": f"distilled-s{seed}", "seed": seed}),
                             overwrite=True)
        rows["distilled"].append(result.metrics["test_accuracy"])
        teacher_accuracy = result.metrics["teacher_test_accuracy"]
        labeled, unlabeled = result.metrics["train_labeled"], result.metrics["train_unlabeled"]
    summary = summarize(rows, teacher_accuracy, {
        "config": args.config, "overrides": args.set, "seeds": args.seeds, "train_labeled": labeled,
        "train_unlabeled": unlabeled, "alone_epochs": alone_epochs, "distilled_epochs": base.trainer.epochs,
        "teacher_epochs": None if args.teacher_weights else args.teacher_epochs,
        "wall_s": time.perf_counter() - started})
    write(out, summary)


def write(out: Path, summary: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
