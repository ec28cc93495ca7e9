"""``kdistill deploy RUN``: prune + KD -> int8 (PTQ, or QAT + KD) -> export -> parity -> bench, in RUN/deploy/.

Every option is checked before the first step, so a bad combination fails in a second, not after training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kdistill.config import DeployConfig
from kdistill.deploy.bench import BenchTable, bench_model, environment, make_artefacts, ptq_artefact
from kdistill.deploy.errors import DeployError
from kdistill.deploy.export import Artefact, ExportJob, export_job, partial_path, publish
from kdistill.deploy.formats import FORMATS
from kdistill.deploy.quantize import check_int8_supported
from kdistill.deploy.source import LoadedRun, build_teacher_of, load_run
from kdistill.runs import write_json


@dataclass
class DeployResult:
    folder: Path
    artefacts: list[Artefact]
    table: BenchTable
    pruned_run: Path | None = None
    prune_steps: list[dict] = field(default_factory=list)


def check_options(run: LoadedRun, options: DeployConfig, teacher_run: str | Path | None) -> None:
    FORMATS.get(options.format)
    if options.quantize == "int8":
        check_int8_supported(run.task, options.format, options.quantize_method)
    needs_teacher = options.prune is not None or (options.quantize == "int8" and options.quantize_method == "qat")
    if needs_teacher and teacher_run is None and run.config.teacher is None:
        raise DeployError(f"pruning and QAT distil from the teacher, but run {run.name!r} has none in its config; "
                          "pass the teacher's run folder (--teacher RUN)")


def int8_artefact(job: ExportJob, float_artefact: Artefact, run: LoadedRun, teacher, options: DeployConfig,
                  folder: Path, stem: str) -> Artefact:
    suffix = FORMATS.get(options.format).suffix
    path = folder / f"{stem}.int8{suffix}"
    if options.quantize_method != "qat":
        return ptq_artefact(job, float_artefact.path, path, options.quantize_method, options)
    from kdistill.deploy.qat import qat_distill

    quantized = qat_distill(job.module, teacher, run.splits, run.config.distill, options,
                            run.config.trainer.batch_size, run.config.seed)
    written = partial_path(path)
    FORMATS.get(options.format)().export(quantized, job.example(), job.input_names, written)
    # Reference: the converted int8 graph in PyTorch, so parity checks the exporter, not what QAT changed.
    artefact = publish(job, written, path, options.format, options, reference=quantized, int8=True)
    artefact.int8_method = "qat"
    return artefact


def deploy_run(run_dir: str | Path, options: DeployConfig | None = None, teacher_run: str | Path | None = None
               ) -> DeployResult:
    from kdistill.deploy.prune import prune_and_distill

    run = load_run(run_dir)
    options = options or run.config.deploy
    check_options(run, options, teacher_run)
    folder = run.run_dir / "deploy"
    folder.mkdir(parents=True, exist_ok=True)
    teacher = build_teacher_of(run.config, run.splits, teacher_run) if run.config.teacher or teacher_run else None
    final, steps = run, []
    if options.prune is not None:
        teacher_config = run.config.teacher
        if teacher_run is not None:
            from kdistill.api import entry_from_run

            teacher_config = entry_from_run(teacher_run)[0].model
        steps = prune_and_distill(run, teacher_config, options.prune, folder)
        final = load_run(steps[-1].run_dir, run.splits)
    stem = "pruned" if steps else "student"
    job = ExportJob.of_run(final)
    artefacts = [export_job(job, options.format, folder / f"{stem}{FORMATS.get(options.format).suffix}", options)]
    if options.quantize == "int8":
        artefacts.append(int8_artefact(job, artefacts[0], final, teacher, options, folder, stem))
    table = bench_chain(run, final if steps else None, job, artefacts, teacher, options, folder)
    result = DeployResult(folder, artefacts, table, steps[-1].run_dir if steps else None,
                          [vars(s) | {"run_dir": str(s.run_dir)} for s in steps])
    write_json(folder / "deploy.json", {"artefacts": [{"path": str(a.path), "format": a.format, "int8": a.int8,
                                                       "int8_method": a.int8_method,
                                                       "parity": a.parity.as_dict()} for a in artefacts],
                                        "prune_steps": result.prune_steps, "options": options.model_dump()})
    return result


def bench_chain(run: LoadedRun, pruned: LoadedRun | None, job: ExportJob, artefacts: list[Artefact], teacher,
                options: DeployConfig, folder: Path) -> BenchTable:
    """Teacher and the run's student (eager + float format), then the deployed student with its artefacts."""
    from kdistill.deploy import report

    rows = []
    bench_folder = folder / "bench-artefacts"
    if teacher is not None:
        teacher_job = ExportJob.of_model(teacher, run)
        rows += bench_model("teacher", teacher_job, make_artefacts(teacher_job, [options.format], bench_folder,
                                                                   "teacher", options), options)
    if pruned is not None:  # the unpruned student too, so the table shows what pruning bought
        student_job = ExportJob.of_run(run)
        rows += bench_model(run.name, student_job, make_artefacts(student_job, [options.format], bench_folder,
                                                                  "student", options), options)
    name = f"{run.name} (pruned)" if pruned is not None else run.name
    float_module = job.module
    rows += bench_model(name, job, artefacts, options, float_module=float_module)
    table = BenchTable(rows, environment(options.threads))
    report.save(table, folder, f"kdistill deploy: {run.name}")
    return table
