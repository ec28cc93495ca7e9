"""Where a cached epoch's time goes (issue 16, "a cheap student epoch"): cProfile of one epoch of the student alone
and one epoch distilled from a full fp16 teacher cache (4 augmented views), same data, seed and student.

    .venv/bin/python benchmarks/cache_profile.py --train-fraction 0.25 --output-dir runs/bench-cache-profile

The teacher is a randomly initialised ResNet (the cache's cost does not depend on what the teacher learnt); the
cache is built once into ``<output-dir>/cache``. Prints epoch times (interleaved rounds) and a breakdown of one
profiled ``Trainer.fit`` each (one epoch + validation); the top functions by own time go to ``profile-*.txt``.

    .venv/bin/python benchmarks/cache_profile.py --lookup runs/bench-cache-timing3/teacher-cache

times only the store lookups (``CachedTeacher.outputs``) of one epoch of random batches of 128 on a given store,
read into memory and memory-mapped shard by shard (a store with more shards than the bound on open maps).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import time
from pathlib import Path

import torch

from kdistill import api
from kdistill.cache import build_cache
from kdistill.config import load_config
from kdistill.data import load_data
from kdistill.models import build_model, save_weights
from kdistill.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-fraction", type=float, default=0.25)
    parser.add_argument("--output-dir", default="runs/bench-cache-profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lookup", metavar="STORE", help="only time the store lookups of one epoch on STORE")
    args = parser.parse_args()
    if args.lookup:
        print(json.dumps(lookup_seconds(Path(args.lookup)), indent=2))
        return
    out = Path(args.output_dir)
    base = [f"output_dir={out}", "data.name=fashion-mnist", "data.val_fraction=0.0833333",
            f"data.train_fraction={args.train_fraction}", "data.augment_crop_padding=2", "data.augment_hflip=true",
            "student.name=cnn", "student.kwargs={width: 16, depth: 1}", "trainer.epochs=1", "trainer.progress=false",
            "distill.alpha=0.1"]
    weights = out / "teacher.safetensors"
    teacher = ["teacher.name=resnet", "teacher.kwargs={width: 16, blocks: [2, 2, 2]}", f"teacher.weights={weights}"]
    if not (out / "cache" / "manifest.json").is_file():
        config = load_config(None, [*base, *teacher])
        splits = load_data(config.data)
        out.mkdir(parents=True, exist_ok=True)
        save_weights(build_model(config.teacher.model_copy(update={"weights": None}), splits.input_shape,
                                 splits.num_classes), weights)
        build_cache(config, out / "cache", views=4)
    report: dict = {"torch_threads": torch.get_num_threads(), "train_fraction": args.train_fraction,
                    "rounds": args.rounds}
    runs = {"alone": ([], api.train), "cached": ([f"teacher.name=cache:{out / 'cache'}"], api.distill)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):  # interleaved, so a busy machine slows both alike; the minimum is reported
        for name, (extra, run) in runs.items():
            result = run(load_config(None, [*base, f"name={name}", *extra]), overwrite=True)
            times[name].append(result.history[0]["epoch_time_s"])
    for name, (extra, run) in runs.items():
        profiler = cProfile.Profile()
        with profile_fit_only(profiler):  # the epoch and its validation, not set-up or the final test passes
            run(load_config(None, [*base, f"name={name}", *extra]), overwrite=True)
        stats = pstats.Stats(profiler)
        report[f"{name}_breakdown_s"] = breakdown(stats)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.top)
        (out / f"profile-{name}.txt").write_text(text.getvalue())
    report["epoch_s"] = times
    report["cache_over_alone"] = min(times["cached"]) / min(times["alone"])
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def lookup_seconds(folder: Path, batch_size: int = 128) -> dict:
    """Seconds of one epoch of ``CachedTeacher.outputs`` calls (random samples and views), per way of reading."""
    import kdistill.cache.store as store_module
    from kdistill.cache import CachedTeacher, CacheStore

    store = CacheStore.open(folder)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(store.num_samples, generator=generator)
    batches = [{"index": index, "view": torch.randint(store.views, (len(index),), generator=generator)}
               for index in order.split(batch_size)]
    found = {"shards": store.num_shards, "batches": len(batches)}
    # IN_MEMORY_BYTES per way; a kdistill from before that limit only memory-maps.
    ways = {"in_memory": None, "memory_mapped": 0} if hasattr(store_module, "IN_MEMORY_BYTES") else \
        {"memory_mapped": None}
    for way, limit in ways.items():
        if limit is not None:
            store_module.IN_MEMORY_BYTES = limit
        teacher = CachedTeacher(CacheStore.open(folder))
        started = time.perf_counter()
        for batch in batches:
            teacher.outputs(batch)
        found[f"{way}_s"] = round(time.perf_counter() - started, 3)
        teacher.close()
    return found


@contextlib.contextmanager
def profile_fit_only(profiler: cProfile.Profile):
    """Profile inside ``Trainer.fit`` only."""
    original = Trainer.fit

    def fit(self, *args, **kwargs):
        return profiler.runcall(original, self, *args, **kwargs)

    Trainer.fit = fit
    try:
        yield
    finally:
        Trainer.fit = original


# Parts of one training epoch, by the function whose cumulative time measures it (file suffix, function name).
PARTS = {
    "epoch (Trainer._run_epoch)": ("kdistill/training/loop.py", "_run_epoch"),
    "data loading (DataLoader next)": ("torch/utils/data/dataloader.py", "_next_data"),
    "  of which item __getitem__ (TensorDataset)": ("kdistill/data/base.py", "__getitem__"),
    "  of which replayed view __getitem__ (ReplayViews, item by item)": ("kdistill/cache/teacher.py", "__getitem__"),
    "  of which replayed batch __getitems__ (ReplayViews, per batch)": ("kdistill/cache/teacher.py", "__getitems__"),
    "teacher outputs (store lookup)": ("kdistill/cache/teacher.py", "outputs"),
    "student forward + loss terms (DistillationModule)": ("kdistill/training/parts.py", "forward"),
    "  of which kd term": ("kdistill/methods/logit_kd.py", "forward"),
    "backward": ("torch/_tensor.py", "backward"),
    "optimiser step": ("torch/optim/adam.py", "step"),
    "validation (Trainer.validate)": ("kdistill/training/loop.py", "validate"),
    "checkpoint (Trainer._checkpoint)": ("kdistill/training/loop.py", "_checkpoint"),
}


def breakdown(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each part (profiler overhead included, so compare parts, not absolute times)."""
    found = {}
    for label, (suffix, function) in PARTS.items():
        total = sum(value[3] for (path, _, name), value in stats.stats.items()
                    if path.endswith(suffix) and name == function)
        found[label] = round(total, 3)
    return found


if __name__ == "__main__":
    main()
