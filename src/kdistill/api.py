"""The Python API. The CLI calls only these functions.

from kdistill import api, load_config
result = api.distill(load_config("configs/fashion_mnist_kd.yaml"))
print(result.metrics["test_accuracy"])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch import nn

from kdistill import data as _data  # noqa: F401  (registers data sources)
from kdistill import methods as _methods  # noqa: F401  (registers methods)
from kdistill import models as _models  # noqa: F401  (registers model sources)
from kdistill.config import DataConfig, EvalConfig, ModelConfig, RunConfig
from kdistill.console import cli_console
from kdistill.data.base import DataSplits, load_data
from kdistill.data.mixing import function_matching_transform
from kdistill.data.transfer import data_line, run_data_summary, training_items
from kdistill.errors import ConfigError, ModelError
from kdistill.evaluate import (
    accuracy,
    agreement,
    expected_calibration_error,
    predict,
    speed_with,
    task_metrics,
)
from kdistill.lm.embedding_task import (
    check_embedding_config,
    check_embedding_methods,
    check_embedding_widths,
    embedding_final_metrics,
    prepare_embedding_run,
)
from kdistill.lm.pipeline import cross_tokenizer_teacher_metrics, on_policy_transform, sequence_kd_train_set, setup_lm
from kdistill.methods.base import Method, MethodContext, build_method
from kdistill.models.base import MODEL_SOURCES, build_model
from kdistill.models.weights import load_weights, save_weights
from kdistill.results import ModelRow
from kdistill.runs import CONFIG_FILE, STUDENT_WEIGHTS, prepare_run_dir, write_json
from kdistill.tasks import TASKS, Task
from kdistill.teacher import LiveTeacher, Teacher
from kdistill.trainer import Trainer, make_fabric


@dataclass
class RunResult:
    run_dir: Path
    config: RunConfig
    student: nn.Module | None  # None: a finished run read back from its folder (kdistill compare --resume)
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def train(config: RunConfig, overwrite: bool = False, resume: bool = False) -> RunResult:
    """Plain supervised training of ``config.student`` (a teacher, or a baseline student)."""
    return _run(config, distilling=False, overwrite=overwrite, resume=resume)


def distill(config: RunConfig, overwrite: bool = False, resume: bool = False) -> RunResult:
    """Train ``config.student`` from ``config.teacher`` with the configured methods."""
    if config.teacher is None:
        raise ConfigError(
            "distill needs a teacher: set teacher.name and teacher.weights (or --teacher/--teacher-weights)"
        )
    return _run(config, distilling=True, overwrite=overwrite, resume=resume)


def _run(config: RunConfig, distilling: bool, overwrite: bool, resume: bool) -> RunResult:
    # Every check happens before the run folder is touched or a step is taken.
    task = TASKS.get(config.task)()
    if task.name == "embedding":  # no labels: resolves data.tokenizer, refuses alpha > 0 and cache teachers
        config = check_embedding_config(config, distilling)
    splits = load_data(config.data)
    cached = distilling and config.teacher is not None and config.teacher.name.startswith("cache:")
    lm = setup_lm(config, splits, distilling, cached)  # LM options, teacher tokenizer (+ teacher tokens for uld)
    teacher_vocab = lm.teacher_num_classes if lm is not None else None  # another tokenizer: its own vocabulary size
    teacher_model = build_teacher(config, splits, teacher_vocab) if distilling and not cached else None
    L.seed_everything(config.seed, verbose=False)
    student = build_model(config.student, splits.input_shape, splits.num_classes, role="student")
    methods = build_methods(config, splits) if distilling else {}
    check_embedding_methods(config.task, methods)
    if distilling:
        prepare_methods(methods, student, teacher_model, splits)
    if task.name == "embedding":
        check_embedding_widths(student, teacher_model, splits)
    teacher = open_cache_teacher(config, splits, methods) if cached else None
    mixing = function_matching_transform(config, splits)  # mixup/cutmix/crops; checks a cache's record, else None

    run_dir = prepare_run_dir(config, overwrite=overwrite, resume=resume)
    if task.name == "embedding":  # the teacher embeds every split once; the batches carry its embeddings
        splits, teacher = prepare_embedding_run(config, splits, teacher_model)
    elif distilling and not cached and methods:  # sequence KD alone needs no teacher outputs during training
        teacher = make_teacher(teacher_model, methods, task)
    fabric = make_fabric(config, run_dir)
    train_set = training_items(splits, distilling)  # plain training on a transfer set: the labelled items only
    data_summary = run_data_summary(splits, train_set)
    cli_console().print(data_line(data_summary), markup=False, highlight=False)
    if lm is not None and config.distill.sequence_kd is not None:  # the teacher's completions, generated once
        train_set = sequence_kd_train_set(config, lm, teacher_model, splits.train, run_dir, fabric)
    transform = on_policy_transform(config, lm) if lm is not None else mixing
    trainer = Trainer(config, run_dir, task, fabric)
    try:
        fit = trainer.fit(student, train_set, splits.val, teacher=teacher, methods=methods, resume=resume,
                          batch_transform=transform)
    finally:
        if teacher is not None:
            teacher.close()
    save_weights(student, run_dir / STUDENT_WEIGHTS)

    if cached:  # the cache's teacher model, when its weights are still there: agreement and teacher metrics
        from kdistill.cache import teacher_model_for_metrics

        teacher_model = teacher_model_for_metrics(config, splits)
    metrics = run_metrics(config, run_dir, student, teacher_model, splits, task,
                          cross_tokenizer=lm is not None and lm.cross_tokenizer)
    metrics.update(best_epoch=fit.best_epoch, best_val_accuracy=fit.best_val_accuracy,
                   epoch_time_s=fit.epoch_time_s, epochs=config.trainer.epochs, **data_summary)
    write_json(run_dir / "summary.json", metrics)
    return RunResult(run_dir, config, student, metrics, fit.history)


def run_metrics(config: RunConfig, run_dir: Path, student: nn.Module, teacher: nn.Module | None, splits: DataSplits,
                task: Task, cross_tokenizer: bool) -> dict:
    """The summary's test metrics; across tokenizers there is no token agreement, only the teacher's perplexity."""
    if not cross_tokenizer:
        return final_metrics(config, run_dir, student, teacher, splits, task)
    metrics = final_metrics(config, run_dir, student, None, splits, task)
    metrics.update(cross_tokenizer_teacher_metrics(teacher, splits.test, task, config.trainer.eval_batch_size))
    return metrics


def build_teacher(config: RunConfig, splits: DataSplits, num_classes: int | None = None) -> nn.Module:
    """``num_classes``: the teacher's own vocabulary size when its tokenizer differs (default: the data's)."""
    teacher_config = config.teacher
    assert teacher_config is not None
    ships_weights = getattr(MODEL_SOURCES.get(teacher_config.name.partition(":")[0]), "ships_weights", False)
    if not teacher_config.weights and not teacher_config.pretrained and not ships_weights:  # e.g. minilm
        raise ConfigError(
            "teacher.weights is required: a teacher with random weights teaches nothing "
            "(train one with `kdistill train`, then pass its student.safetensors)"
        )
    model = build_model(teacher_config, splits.input_shape, num_classes or splits.num_classes, role="teacher")
    return model


def build_methods(config: RunConfig, splits: DataSplits) -> dict[str, Method]:
    names = dict.fromkeys([*config.distill.methods, *(m for s in config.distill.stages for m in s.methods)])
    if not names and config.distill.sequence_kd is None:  # sequence KD alone: CE on the teacher's text
        raise ConfigError("distill.methods is empty; name at least one method, e.g. {kd: 1.0}")
    unknown_options = set(config.distill.method_options) - set(names)
    if unknown_options:
        raise ConfigError(f"distill.method_options names methods that are not used: {sorted(unknown_options)}")
    return {
        name: build_method(
            name, config.distill.temperature, splits.num_classes, config.distill.method_options.get(name)
        )
        for name in names
    }


def prepare_methods(
    methods: dict[str, Method], student: nn.Module, teacher: nn.Module | None, splits: DataSplits
) -> None:
    sample = {k: v.unsqueeze(0) for k, v in splits.train[0].items()}
    context = MethodContext(
        student=student,
        teacher=teacher,
        sample_batch=sample,
        num_classes=splits.num_classes,
        num_train_samples=len(splits.train),
    )
    for method in methods.values():
        method.prepare(context)


def open_cache_teacher(config: RunConfig, splits: DataSplits, methods: dict[str, Method]) -> Teacher:
    """``teacher.name: cache:<dir>``: stored outputs instead of a model; only logit methods can use them."""
    from kdistill.cache import teacher_from_cache_spec

    needs_features = sorted(name for name, m in methods.items() if m.teacher_taps())
    if needs_features:
        raise ConfigError(
            f"methods {needs_features} need teacher features, which a cache does not store; "
            "use a live teacher (teacher.name: the model) for them"
        )
    assert config.teacher is not None
    return teacher_from_cache_spec(config.teacher.name, config, splits)


def make_teacher(model: nn.Module | None, methods: dict[str, Method], task: Task) -> Teacher:
    assert model is not None
    feature_names = sorted({name for m in methods.values() for name in m.teacher_taps()})
    return LiveTeacher(model, feature_names=feature_names, task=task)


def final_metrics(
    config: RunConfig, run_dir: Path, student: nn.Module, teacher: nn.Module | None, splits: DataSplits, task: Task
) -> dict:
    """Test accuracy of the last and the best-validation student, agreement with the teacher, ECE."""
    if task.name == "embedding":  # cosine to the teacher and top-10 neighbour overlap on the test sentences
        return embedding_final_metrics(student, teacher, splits, config.trainer.eval_batch_size)
    if task.name != "classification":  # e.g. language models: per-token loss, perplexity, top-1 agreement
        metrics = task_metrics(student, splits.test, task, teacher, config.trainer.eval_batch_size)
        metrics["test_perplexity"] = math.exp(min(metrics["test_loss"], 50.0))
        if teacher is not None:
            teacher_metrics = task_metrics(teacher, splits.test, task, None, config.trainer.eval_batch_size)
            metrics["teacher_test_perplexity"] = math.exp(min(teacher_metrics["test_loss"], 50.0))
        return metrics
    logits, targets = predict(student, splits.test, config.trainer.eval_batch_size, task)
    metrics = {
        "test_accuracy": accuracy(logits, targets),
        "test_ece": expected_calibration_error(logits, targets, config.eval.ece_bins),
    }
    best_weights = run_dir / "checkpoints/best" / STUDENT_WEIGHTS
    if best_weights.is_file():
        best = build_model(config.student, splits.input_shape, splits.num_classes, role="student")
        load_weights(best, best_weights, role="student")
        metrics["test_accuracy_best"] = accuracy(
            predict(best, splits.test, config.trainer.eval_batch_size, task)[0], targets
        )
    if teacher is not None:
        teacher_logits, _ = predict(teacher, splits.test, config.trainer.eval_batch_size, task)
        metrics["teacher_test_accuracy"] = accuracy(teacher_logits, targets)
        metrics["test_agreement"] = agreement(logits, teacher_logits)
    return metrics


# ----- evaluation of finished runs and checkpoints -----


@dataclass
class EvalEntry:
    """A model to evaluate: a name for the table, how to build it, and its weights.

    ``task`` and ``tokenizer`` come from the run's config (``entry_from_run``); None where unknown (a bare checkpoint).
    """

    name: str
    model: ModelConfig
    task: str | None = None
    tokenizer: str | None = None


def entry_from_run(run_dir: str | Path) -> tuple[EvalEntry, RunConfig]:
    from kdistill.config import load_config

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / STUDENT_WEIGHTS).is_file():
        raise ConfigError(f"{run_dir} is not a finished kdistill run (needs {CONFIG_FILE} and {STUDENT_WEIGHTS})")
    config = load_config(run_dir / CONFIG_FILE)
    model = config.student.model_copy(update={"weights": str(run_dir / STUDENT_WEIGHTS)})
    return EvalEntry(run_dir.name, model, task=config.task, tokenizer=config.data.tokenizer), config


def eval_task(entries: list[EvalEntry], teacher: EvalEntry | None, task_name: str | None) -> str:
    """The one task of an eval call: the runs' (from their configs), else ``task_name``, else classification."""
    known = [(e.name, e.task) for e in [*([teacher] if teacher else []), *entries] if e.task is not None]
    tasks = {task for _, task in known}
    if task_name is not None:
        tasks.add(task_name)
    if len(tasks) > 1:
        listing = ", ".join(f"{name} ({task})" for name, task in known)
        asked = f"; asked for task {task_name!r}" if task_name is not None else ""
        raise ConfigError(f"cannot evaluate models of different tasks in one table: {listing}{asked}; evaluate "
                          "classification and language-model runs in separate calls")
    return tasks.pop() if tasks else "classification"


def evaluate(
    entries: list[EvalEntry],
    data: DataConfig,
    teacher: EvalEntry | None = None,
    eval_config: EvalConfig | None = None,
    task_name: str | None = None,
) -> list[ModelRow]:
    """Accuracy, agreement with ``teacher``, ECE, size and batch-1 latency of each model on ``data``'s test split.

    The task comes from the entries' run configs (``task_name`` when none is known; mixing tasks is a ConfigError).
    Causal language models get per-token loss, perplexity, next-token accuracy, top-1 agreement with the teacher on
    the target tokens, and latency of one ``max_length`` sequence / throughput in tokens per second instead.
    """
    eval_config = eval_config or EvalConfig()
    if task_name is not None:
        TASKS.get(task_name)  # an unknown name is a one-line error before anything else
    task_name = eval_task(entries, teacher, task_name)
    task = TASKS.get(task_name)()
    if task_name == "causal-lm":
        from kdistill.lm.evaluation import evaluate_lm

        return evaluate_lm(entries, data, teacher, eval_config, task)
    splits = load_data(data)
    rows, teacher_logits = [], None
    if teacher is not None:
        teacher_model = build_model(teacher.model, splits.input_shape, splits.num_classes, role=teacher.name)
        row, teacher_logits = evaluate_model(teacher.name, teacher_model, splits, None, eval_config, task)
        rows.append(row)
    for entry in entries:
        if not entry.model.weights:
            raise ModelError(f"{entry.name}: no weights to evaluate")
        model = build_model(entry.model, splits.input_shape, splits.num_classes, role=entry.name)
        rows.append(evaluate_model(entry.name, model, splits, teacher_logits, eval_config, task)[0])
    return rows


def evaluate_model(
    name: str,
    model: nn.Module,
    splits: DataSplits,
    teacher_logits: torch.Tensor | None,
    eval_config: EvalConfig,
    task: Task,
) -> tuple[ModelRow, torch.Tensor]:
    logits, targets = predict(model, splits.test, task=task)
    speed = speed_with(eval_config, model, splits.sample_input())
    row = ModelRow(
        name=name,
        parameters=speed.parameters,
        size_bytes=speed.size_bytes,
        test_accuracy=accuracy(logits, targets),
        agreement=None if teacher_logits is None else agreement(logits, teacher_logits),
        ece=expected_calibration_error(logits, targets, eval_config.ece_bins),
        latency_ms=speed.latency_ms,
        throughput=speed.throughput,
    )
    return row, logits


def compare(config: RunConfig, methods: list[str] | str, seeds=(0, 1, 2), **options):
    """Every method x seed from one distill config, ranked in one table (see ``kdistill.compare.compare``).

    Imported lazily: ``kdistill.compare`` itself builds on this module.
    """
    from kdistill.compare import compare as _compare

    return _compare(config, methods, seeds, **options)
