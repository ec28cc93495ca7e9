"""The Python API. The CLI calls only these functions.

from kdistill import api, load_config
result = api.distill(load_config("configs/fashion_mnist_kd.yaml"))
print(result.metrics["test_accuracy"])
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import lightning_fabric as L
from torch import nn

from kdistill import data as _data  # noqa: F401  (registers data sources)
from kdistill import methods as _methods  # noqa: F401  (registers methods)
from kdistill import models as _models  # noqa: F401  (registers model sources)
from kdistill.config import DataConfig, EvalConfig, ModelConfig, RunConfig, typed_teacher
from kdistill.console import cli_console
from kdistill.data.base import DataSplits, load_data
from kdistill.data.compat import adopt_teacher_data, check_teacher_data
from kdistill.data.mixing import function_matching_transform
from kdistill.data.transfer import data_line, run_data_summary, training_items
from kdistill.errors import ConfigError
from kdistill.methods.base import Method, MethodContext, build_method, check_teacher_capabilities
from kdistill.models.base import build_model
from kdistill.models.given import GivenModels  # nn.Module objects as teacher/student
from kdistill.models.hf_save import save_hf_format
from kdistill.models.run_folder import DATA_RECORD_FILE, data_record, resolve_run_models
from kdistill.models.weights import save_weights
from kdistill.results import Environment, ResultTable, columns_for, training_result
from kdistill.runs import CONFIG_FILE, STUDENT_WEIGHTS, release_run_dir, write_json
from kdistill.tasks import TASKS, Task
from kdistill.teachers import TEACHERS, Teacher, build_teacher
from kdistill.trainer import Trainer, launch_fabric, prepare_run_dir_once
from kdistill.training.progress import evaluation_display


@dataclass
class RunResult:
    run_dir: Path
    config: RunConfig
    student: nn.Module | None  # None: a finished run read back from its folder (kdistill compare --resume)
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def train(config: RunConfig, overwrite: bool = False, resume: bool = False, callbacks: list | None = None, *,
          student: nn.Module | None = None) -> RunResult:
    """Plain supervised training of ``config.student`` (a teacher, or a baseline student), or of the module
    ``student``. ``callbacks``: objects receiving the training loop's events (``kdistill.training.callbacks``)."""
    return _run(config, distilling=False, overwrite=overwrite, resume=resume, callbacks=callbacks,
                given=GivenModels(student=student))


def distill(config: RunConfig, overwrite: bool = False, resume: bool = False, callbacks: list | None = None, *,
            teacher: nn.Module | None = None, student: nn.Module | None = None) -> RunResult:
    """Train ``config.student`` (or the module ``student``) from ``config.teacher`` (or the module ``teacher``)."""
    if config.teacher is None and teacher is None:
        raise ConfigError(
            "distill needs a teacher: set teacher.name and teacher.weights (or --teacher/--teacher-weights)"
        )
    return _run(config, distilling=True, overwrite=overwrite, resume=resume, callbacks=callbacks,
                given=GivenModels(student=student, teacher=teacher))


def _run(config: RunConfig, distilling: bool, overwrite: bool, resume: bool, callbacks: list | None = None,
         given: GivenModels = GivenModels()) -> RunResult:
    # Assembled from components: the task, the teacher (its kind), the methods. Every check happens before the run
    # folder is touched or a step is taken.
    config = given.recorded_in(resolve_run_models(config))  # run folders -> their models; modules -> module:<cls>
    config = config.model_copy(update={"teacher": typed_teacher(config.teacher)})  # old forms, e.g. cache:<dir>
    if distilling:
        config = adopt_teacher_data(config)
    task = TASKS.get(config.task)()
    config = task.check_config(config, distilling)
    splits = load_data(config.data)
    if distilling:
        check_teacher_data(config, splits)
    methods = build_methods(config, splits, task) if distilling else {}
    splits = task.prepare_data(config, splits, distilling)  # e.g. teacher tokens for a teacher with its own tokenizer
    splits = replace(splits, train=training_items(splits, distilling))  # plain training: the labelled items only
    teacher = given_teacher(given, splits, task) or (build_teacher(config, splits, task) if distilling else None)
    L.seed_everything(config.seed, verbose=False)
    student = given.checked("student", splits.input_shape, splits.num_classes)
    if student is None:
        student = build_model(config.student, splits.input_shape, splits.num_classes, role="student")
    if teacher is not None:
        prepare_methods(methods, student, teacher, splits)
        task.check_models(student, teacher, splits)
    transform = task.batch_transform(config) or function_matching_transform(config, splits)  # GKD | mixup, crops

    fabric = launch_fabric(config, callbacks)  # starts the other processes (each re-runs the lines above)
    run_dir = prepare_run_dir_once(fabric, config, overwrite=overwrite, resume=resume)  # rank 0 writes; others wait
    splits, teacher = task.prepare_run(config, splits, teacher)  # e.g. embeddings: the teacher embeds once
    train_set = task.train_set(config, splits, teacher, run_dir, fabric)  # e.g. sequence KD: the teacher's text
    data_summary = run_data_summary(splits, train_set)  # labelled / unlabelled items of a transfer set
    if fabric.is_global_zero:
        cli_console().print(data_line(data_summary), markup=False, highlight=False, soft_wrap=True)
    trainer = Trainer(config, run_dir, task, fabric)
    try:
        fit = trainer.fit(student, train_set, splits.val, teacher=teacher if methods else None, methods=methods,
                          resume=resume, batch_transform=transform)
    finally:
        if teacher is not None:
            teacher.close()
    if not fabric.is_global_zero:  # one process writes the results
        return RunResult(run_dir, config, student, {}, fit.history)
    save_weights(student, run_dir / STUDENT_WEIGHTS)
    save_hf_format(student, config, run_dir)
    reference = None  # a black box has no model: no agreement; eval.teacher_metrics: false skips the teacher pass
    if teacher is not None and config.eval.teacher_metrics:
        reference = teacher.metrics_model()
    with evaluation_display(config.trainer.progress):  # a bar and a timing line per test pass
        metrics = task.final_metrics(config, run_dir, student, reference, splits)
    metrics.update(best_epoch=fit.best_epoch, best_val_accuracy=fit.best_val_accuracy,
                   epoch_time_s=fit.epoch_time_s, epochs=config.trainer.epochs, **data_summary)
    write_json(run_dir / DATA_RECORD_FILE,
               data_record(config.data, splits.num_classes, splits.input_shape, splits.class_names))
    write_json(run_dir / "summary.json", metrics)
    training_result(f"kdistill {'distill' if distilling else 'train'}: {config.name}", task.name, metrics,
                    sum(p.numel() for p in student.parameters()), (run_dir / STUDENT_WEIGHTS).stat().st_size,
                    str(fabric.device)).to_json(run_dir / "results.json")
    release_run_dir(run_dir)
    return RunResult(run_dir, config, student, metrics, fit.history)


def build_methods(config: RunConfig, splits: DataSplits, task: Task | None = None) -> dict[str, Method]:
    """The configured methods, checked against the task and the teacher kind (one ConfigError naming both)."""
    names = dict.fromkeys([*config.distill.methods, *(m for s in config.distill.stages for m in s.methods)])
    if not names and config.distill.sequence_kd is None:  # sequence KD alone: CE on the teacher's text
        raise ConfigError("distill.methods is empty; name at least one method, e.g. {kd: 1.0}")
    unknown_options = set(config.distill.method_options) - set(names)
    if unknown_options:
        raise ConfigError(f"distill.method_options names methods that are not used: {sorted(unknown_options)}")
    methods = {
        name: build_method(
            name, config.distill.temperature, splits.num_classes, config.distill.method_options.get(name)
        )
        for name in names
    }
    if task is not None:
        task.check_methods(methods)
        teacher = typed_teacher(config.teacher)
        kind = TEACHERS.get(teacher.kind)
        check_teacher_capabilities(methods, teacher.kind, kind.provides, task.teacher_needs(config))
    return methods


def prepare_methods(methods: dict[str, Method], student: nn.Module, teacher: Teacher, splits: DataSplits) -> None:
    """Each method looks once at the models (layer pairs, adapter sizes), or at a probe batch's outputs when the
    teacher is stored outputs (no model); then the teacher taps the features the methods asked for."""
    sample = {k: v.unsqueeze(0) for k, v in splits.train[0].items()}
    context = MethodContext(
        student=student,
        teacher=teacher.model,
        sample_batch=sample,
        num_classes=splits.num_classes,
        num_train_samples=len(splits.train),
        teacher_sample_outputs=teacher.probe(sample) if teacher.model is None else None,
    )
    for method in methods.values():
        method.prepare(context)
    teacher.tap(sorted({name for m in methods.values() for name in m.teacher_taps()}))


def given_teacher(given: GivenModels, splits: DataSplits, task: Task) -> Teacher | None:
    """A teacher module passed to ``api.distill`` (checked like a built one), behind the live-teacher interface."""
    from kdistill.teachers import LiveTeacher

    module = given.checked("teacher", splits.input_shape, task.teacher_num_classes(splits))
    return LiveTeacher(module, task=task) if module is not None else None


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


def entry_from_run(run_dir: str | Path, trust_code: bool = False) -> tuple[EvalEntry, RunConfig]:
    """``trust_code``: import a ``file:`` model the run names even if this machine did not record it (see trust.py)."""
    from kdistill.config import load_config
    from kdistill.models.trust import check_run_code

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / STUDENT_WEIGHTS).is_file():
        raise ConfigError(f"{run_dir} is not a finished kdistill run (needs {CONFIG_FILE} and {STUDENT_WEIGHTS})")
    config = load_config(run_dir / CONFIG_FILE)
    check_run_code(config, run_dir, trust_code)
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
    progress: bool = False,
) -> ResultTable:
    """Accuracy, agreement with ``teacher``, ECE, size and batch-1 latency of each model on ``data``'s test split.

    The task comes from the entries' run configs (``task_name`` when none is known; mixing tasks is a ConfigError).
    Causal language models get per-token loss, perplexity, next-token accuracy, top-1 agreement with the teacher on
    the target tokens, and latency of one ``max_length`` sequence / throughput in tokens per second instead.
    ``progress``: a bar (on a terminal) and a timing line per model's test pass, as after training.
    """
    eval_config = eval_config or EvalConfig()
    if task_name is not None:
        TASKS.get(task_name)  # an unknown name is a one-line error before anything else
    task_name = eval_task(entries, teacher, task_name)
    with evaluation_display(progress):
        rows = TASKS.get(task_name)().evaluate(entries, data, teacher, eval_config)
    return ResultTable(f"kdistill eval: {data.name} (test split)", task_name, columns_for(task_name), rows,
                       Environment.capture("cpu", eval_config.threads))  # speed is timed on the CPU


def compare(config: RunConfig, methods: list[str] | str, seeds=(0, 1, 2), **options):
    """Every method x seed from one distill config, ranked in one table (see ``kdistill.compare.compare``).

    Imported lazily: ``kdistill.compare`` itself builds on this module.
    """
    from kdistill.compare import compare as _compare

    return _compare(config, methods, seeds, **options)
