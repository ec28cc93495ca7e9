"""Every method x seed from one distill config, in one table: the reproducibility harness behind ``kdistill compare``.

One config names the teacher (with weights), the student, the data and the schedule. ``compare`` trains the student
once per (method entry, seed), and alone once per seed (the baseline), all in one folder::

    <output_dir>/<name>/
      config.yaml              the base config (rerun: kdistill compare <this file> --methods ... --seeds ...)
      teacher-cache/           teacher outputs, built once, read by every logit-only run
      student-alone-seed0/     the baseline, one run folder per seed
      kd-seed0/ ...            one run folder per (entry, seed): config.yaml, metrics.jsonl, summary.json
      results.md results.json  the table, the command that made it, and every per-seed number

Method entries (``--methods``, comma-separated) are a method name, or several joined by ``+``, each with an optional
``=weight``: ``kd``, ``at=1000``, ``kd+at``, ``kd=1+at=1000``. A weight left out is the config's
``distill.methods`` weight of that name, else 1.0. ``distill.method_options`` of the entry's methods are passed on
(options of other methods are left out of that run). ``distill.methods`` is otherwise replaced by the entry.

The table ranks by the mean test accuracy of the last epoch; the best-validation checkpoint's accuracy is shown too
(picking it is a selection on the validation split). Gap recovered = (method - alone) / (teacher - alone).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kdistill import api
from kdistill.adapters import extra_parameters
from kdistill.cache import CachedTeacher, build_cache
from kdistill.compare_table import caption, save
from kdistill.config import CacheTeacherConfig, RunConfig, typed_teacher
from kdistill.data.base import DataSplits, load_data
from kdistill.errors import ConfigError, RegistryError, RunFolderError
from kdistill.evaluate import accuracy, predict
from kdistill.methods import METHODS
from kdistill.models.base import build_model
from kdistill.runs import CONFIG_FILE, check_same_config, find_checkpoint, prepare_run_dir, read_json
from kdistill.teachers import LiveTeacher

CACHE_DIR = "teacher-cache"
BASELINE = "student-alone"


@dataclass(frozen=True)
class MethodEntry:
    """One row of the comparison: a method, or a weighted combination of methods."""

    label: str  # as written on the command line, e.g. "kd=1+at=1000"; also the run folders' prefix
    weights: dict[str, float]  # method name -> weight, resolved

    @property
    def logit_only(self) -> bool:
        """True when every method needs only the teacher's logits, so the runs can read the teacher cache."""
        return all(METHODS.get(name).needs <= CachedTeacher.provides for name in self.weights)


@dataclass
class Stat:
    mean: float
    std: float | None  # sample standard deviation (n - 1); None with one seed


@dataclass
class CompareRow:
    method: str
    weights: dict[str, float]
    teacher: str  # "cache", "live", or "-" for the student alone
    test_accuracy: Stat  # last epoch
    test_accuracy_best: Stat  # best-validation checkpoint
    gap_recovered: float | None  # from the last-epoch means; None without baseline or when teacher <= alone
    gap_recovered_best: float | None
    epoch_time_s: float  # mean over seeds of each run's mean epoch time
    epoch_time_vs_alone: float | None
    extra_parameters: int | None  # the methods' trainable parts (adapters, heads); 0 for logit methods
    per_seed: list[dict] = field(default_factory=list)  # seed, run_dir, and the run's summary numbers


@dataclass
class CompareResult:
    folder: Path
    title: str
    caption: str
    command: str
    teacher_test_accuracy: float
    rows: list[CompareRow]  # ranked, best first
    baseline: CompareRow | None
    cache: dict | None = None  # folder, views, size, build time; None when no run used a cache


# ----- input -----


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """``"0,1,2"`` (or a list of ints) -> [0, 1, 2]; refuses non-integers, an empty list and repeats."""
    if isinstance(text, str):
        parts = [part.strip() for part in text.split(",") if part.strip()]
        try:
            seeds = [int(part) for part in parts]
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    else:
        seeds = list(text)
        if not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds):
            raise ConfigError(f"seeds must be integers, got {seeds!r}")
    if not seeds:
        raise ConfigError("no seeds given; pass --seeds 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds repeats a seed: {seeds}")
    return seeds


def split_methods(text: str) -> list[str]:
    """``"kd,dkd,kd+at=1000"`` -> ["kd", "dkd", "kd+at=1000"]."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_entry(text: str, default_weights: dict[str, float]) -> MethodEntry:
    """``kd=1+at=1000`` -> MethodEntry; an omitted weight is ``default_weights[name]``, else 1.0."""
    label = text.replace(" ", "")
    weights: dict[str, float] = {}
    for part in label.split("+"):
        name, has_weight, raw = part.partition("=")
        if not name:
            raise ConfigError(f"method entry {text!r} has an empty method name; write e.g. kd or kd=1+at=1000")
        if name in weights:
            raise ConfigError(f"method entry {text!r} names {name!r} twice")
        if has_weight:
            try:
                weight = float(raw)
            except ValueError:
                raise ConfigError(f"method entry {text!r}: weight of {name!r} must be a number, got {raw!r}") from None
        else:
            weight = float(default_weights.get(name, 1.0))
        if not weight > 0 or not math.isfinite(weight):
            raise ConfigError(f"method entry {text!r}: weight of {name!r} must be a positive number, got {weight}")
        weights[name] = weight
    return MethodEntry(label, weights)


def parse_methods(entries: Sequence[str], default_weights: dict[str, float]) -> list[MethodEntry]:
    """Parse and check every entry (names, weights, repeats) before anything is trained."""
    if isinstance(entries, str):
        entries = split_methods(entries)
    if not entries:
        raise ConfigError("no methods given; pass e.g. --methods kd,dkd,at (known: " + ", ".join(METHODS.names()) + ")")
    parsed = [parse_entry(entry, default_weights) for entry in entries]
    unknown = sorted({name for entry in parsed for name in entry.weights if name not in METHODS})
    if unknown:
        raise RegistryError(f"unknown method(s) {', '.join(map(repr, unknown))} in --methods"
                            f"{METHODS.suggest(unknown[0])}")
    labels = [entry.label for entry in parsed]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"--methods repeats {', '.join(repeated)}")
    return parsed


def check_config(config: RunConfig) -> None:
    teacher = typed_teacher(config.teacher)
    if teacher is not None and teacher.kind != "model":
        raise ConfigError(f"compare needs the live teacher model, not a teacher of kind {teacher.kind!r}: it measures "
                          "the teacher and builds its own cache for the logit-only methods")
    if teacher is None or not teacher.weights:
        raise ConfigError("compare needs a distill config whose teacher has weights (teacher.name and "
                          "teacher.weights); train one with `kdistill train`, then pass its student.safetensors")
    if not Path(teacher.weights).is_file():
        raise ConfigError(f"teacher.weights {teacher.weights!r} not found")
    if config.task != "classification":
        raise ConfigError(f"compare reports test accuracy, so it needs task 'classification', not {config.task!r}")
    if config.distill.stages:
        raise ConfigError("compare runs one loss mix per row; remove distill.stages from the config")


# ----- runs -----


def entry_config(config: RunConfig, entry: MethodEntry, folder: Path, seed: int, cache_dir: Path | None) -> RunConfig:
    options = {name: opts for name, opts in config.distill.method_options.items() if name in entry.weights}
    distill = config.distill.model_copy(update={"methods": dict(entry.weights), "method_options": options})
    teacher = config.teacher
    assert teacher is not None
    if cache_dir is not None:  # teacher.weights stays, so the cache's fingerprint is checked against it
        teacher = CacheTeacherConfig(kind="cache", dir=str(cache_dir), weights=teacher.weights)
    return config.model_copy(update={"name": f"{entry.label}-seed{seed}", "output_dir": str(folder), "seed": seed,
                                      "distill": distill, "teacher": teacher})


def baseline_config(config: RunConfig, folder: Path, seed: int) -> RunConfig:
    return config.model_copy(update={"name": f"{BASELINE}-seed{seed}", "output_dir": str(folder), "seed": seed,
                                     "teacher": None})


def _device(config: RunConfig) -> torch.device:
    if config.trainer.accelerator in ("auto", "cuda", "gpu") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def teacher_accuracy(config: RunConfig, teacher: torch.nn.Module, splits: DataSplits) -> float:
    logits, targets = predict(teacher, splits.test, config.trainer.eval_batch_size, device=_device(config))
    teacher.to("cpu")
    return accuracy(logits, targets)


def method_parameters(config: RunConfig, entry: MethodEntry, teacher: torch.nn.Module, splits: DataSplits) -> int:
    """Build and prepare the entry's methods on a fresh student (this also checks names, options and layer pairs)."""
    run = entry_config(config, entry, Path(config.output_dir), 0, None)
    student = build_model(run.student, splits.input_shape, splits.num_classes, role="student")
    methods = api.build_methods(run, splits)
    live = LiveTeacher(teacher)
    try:
        api.prepare_methods(methods, student, live, splits)
    finally:
        live.close()
    return sum(extra_parameters(method) for method in methods.values())


def _stat(values: list[float]) -> Stat:
    return Stat(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None)


def _gap(method: float, alone: float, teacher: float) -> float | None:
    return (method - alone) / (teacher - alone) if teacher > alone else None


def summarise(label: str, weights: dict[str, float], teacher_kind: str, results: list[api.RunResult],
              seeds: list[int], extra: int | None) -> CompareRow:
    per_seed = [{"seed": seed, "run_dir": str(r.run_dir),
                 **{key: r.metrics[key] for key in ("test_accuracy", "test_accuracy_best", "best_epoch",
                                                    "best_val_accuracy", "epoch_time_s")}}
                for seed, r in zip(seeds, results, strict=True)]
    return CompareRow(
        method=label, weights=weights, teacher=teacher_kind,
        test_accuracy=_stat([s["test_accuracy"] for s in per_seed]),
        test_accuracy_best=_stat([s["test_accuracy_best"] for s in per_seed]),
        gap_recovered=None, gap_recovered_best=None,
        epoch_time_s=statistics.mean(s["epoch_time_s"] for s in per_seed), epoch_time_vs_alone=None,
        extra_parameters=extra, per_seed=per_seed,
    )


def compare(
    config: RunConfig,
    methods: Sequence[str] | str,
    seeds: Sequence[int] | str = (0, 1, 2),
    *,
    output_dir: str | None = None,
    name: str | None = None,
    baseline: bool = True,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> CompareResult:
    """Train ``config.student`` with every method entry and seed (and alone per seed); rank them in one table.

    Args:
        config: A distill config: teacher with weights, student, data, optimiser and trainer settings.
        methods: Entries such as ``["kd", "dkd", "kd=1+at=1000"]`` (or one comma-separated string).
        seeds: Training seeds (``config.seed`` of each run); the data split stays ``data.split_seed``.
        output_dir: Parent of the compare folder (default ``config.output_dir``).
        name: Compare folder name (default ``compare-<config.name>``).
        baseline: Also train the student alone per seed (needed for gap recovered and relative epoch time).
        cache: Logit-only entries read one teacher-output cache built under the folder (False: live teacher).
        cache_dir: Keep the cache here instead (shared between compares of one teacher and data): an existing
            store is checked against the teacher, data and transform, then reused or resumed.
        overwrite: Replace an existing compare folder.
        resume: Continue an interrupted compare in its folder: finished runs are reused, interrupted ones resume
            from their last checkpoint, the cache build resumes. The config must be the one the folder was made
            with (only trainer.epochs may grow).
        command: The command line to quote in results.md (default: an equivalent ``kdistill compare`` call).
        log: Called with one line per run started.

    Returns:
        The table rows, ranked by last-epoch mean test accuracy, and where they were saved.
    """
    log = log or (lambda line: None)
    seeds = parse_seeds(seeds)
    check_config(config)
    entries = parse_methods(methods, config.distill.methods)
    config = config.model_copy(update={"name": name or f"compare-{config.name}",
                                       "output_dir": output_dir or config.output_dir})
    # Every check, and the teacher's test accuracy, before the folder is touched or a step is taken.
    splits = load_data(config.data)
    teacher = config.teacher
    assert teacher is not None
    teacher_model = build_model(teacher, splits.input_shape, splits.num_classes, role="teacher")
    extras = {entry.label: method_parameters(config, entry, teacher_model, splits) for entry in entries}
    teacher_acc = teacher_accuracy(config, teacher_model, splits)
    del teacher_model

    folder = reopen_folder(config, overwrite) if resume else prepare_run_dir(config, overwrite=overwrite)
    cache_info = None
    if cache and any(entry.logit_only for entry in entries):
        store = Path(cache_dir) if cache_dir is not None else folder / CACHE_DIR
        log(f"teacher cache: {store}")
        reused = (store / "manifest.json").is_file()  # complete or partly built before this compare
        started = time.perf_counter()
        info = build_cache(config, store)
        cache_info = {"dir": str(store), "views": info["manifest"]["views"],
                      "mode": info["manifest"]["mode"], "size_bytes": info["size_on_disk"],
                      "build_s": time.perf_counter() - started, "reused": reused}
    total, done = len(seeds) * (len(entries) + int(baseline)), 0

    def run(kind: str, run_config: RunConfig) -> api.RunResult:
        nonlocal done
        done += 1
        finished = finished_run(run_config) if resume else None
        if finished is not None:
            log(f"[{done}/{total}] {run_config.name} (finished earlier, reused)")
            return finished
        continuing = resume and find_checkpoint(run_config.run_dir) is not None
        log(f"[{done}/{total}] {run_config.name}" + (" (resumed)" if continuing else ""))
        train = api.train if kind == "train" else api.distill
        return train(run_config, overwrite=resume and not continuing, resume=continuing)

    alone = None
    if baseline:
        results = [run("train", baseline_config(config, folder, seed)) for seed in seeds]
        alone = summarise(BASELINE, {}, "-", results, seeds, 0)
    rows = []
    for entry in entries:
        store = Path(cache_info["dir"]) if cache_info is not None and entry.logit_only else None
        results = [run("distill", entry_config(config, entry, folder, seed, store)) for seed in seeds]
        rows.append(summarise(entry.label, entry.weights, "cache" if store else "live", results, seeds,
                              extras[entry.label]))
    if alone is not None:
        for row in rows:
            row.gap_recovered = _gap(row.test_accuracy.mean, alone.test_accuracy.mean, teacher_acc)
            row.gap_recovered_best = _gap(row.test_accuracy_best.mean, alone.test_accuracy_best.mean, teacher_acc)
            row.epoch_time_vs_alone = row.epoch_time_s / alone.epoch_time_s
        alone.gap_recovered, alone.gap_recovered_best, alone.epoch_time_vs_alone = 0.0, 0.0, 1.0
    rows.sort(key=lambda row: row.test_accuracy.mean, reverse=True)

    command = command or _equivalent_command(folder, entries, seeds, baseline, cache, cache_dir)
    title = f"kdistill compare: {config.data.name}, {len(entries)} methods x {len(seeds)} seeds"
    result = CompareResult(folder, title, caption(config, seeds, cache_info), command, teacher_acc, rows, alone,
                           cache_info)
    save(result, str(_device(config)))
    return result


def reopen_folder(config: RunConfig, overwrite: bool) -> Path:
    """The folder of an interrupted compare, checked to belong to the same config."""
    folder = config.run_dir
    if overwrite:
        raise RunFolderError("choose --overwrite or --resume, not both")
    if not (folder / CONFIG_FILE).is_file():
        raise RunFolderError(f"cannot resume {folder}: it is not a compare folder (no {CONFIG_FILE}); "
                             "start it without --resume")
    check_same_config(config, folder)
    return folder


def finished_run(config: RunConfig) -> api.RunResult | None:
    """A run of this config that already wrote its summary for this many epochs, else None."""
    summary_path = config.run_dir / "summary.json"
    if not summary_path.is_file():
        return None
    check_same_config(config, config.run_dir)
    metrics = read_json(summary_path)
    if metrics.get("epochs") != config.trainer.epochs:
        return None  # trained for fewer epochs: resume it from its checkpoint
    return api.RunResult(config.run_dir, config, None, metrics)


def _equivalent_command(folder: Path, entries: list[MethodEntry], seeds: list[int], baseline: bool,
                        cache: bool, cache_dir: str | Path | None = None) -> str:
    import shlex

    args = ["kdistill", "compare", str(folder / "config.yaml"), "--methods", ",".join(e.label for e in entries),
            "--seeds", ",".join(map(str, seeds)), "--output-dir", str(folder.parent), "--name", folder.name]
    args += ([] if baseline else ["--no-baseline"]) + ([] if cache else ["--no-cache"])
    args += (["--cache-dir", str(cache_dir)] if cache and cache_dir is not None else []) + ["--overwrite"]
    return shlex.join(args)
