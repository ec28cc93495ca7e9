"""A finished run folder is a model: ``--teacher runs/teacher``, ``--teacher-weights runs/teacher``,
``--student runs/base`` (start from it), ``kdistill eval --model runs/x`` and ``kdistill.load_model("runs/x")``.

A run folder (``config.yaml`` + ``student.safetensors``) stands for the model it trained: its student's name and
kwargs, with the folder's final weights. Its ``data.json`` records the data the model was trained on (source, class
count and names, input shape; kept out of summary.json, whose values are all figures), so a model can be rebuilt
without loading that data again and a teacher's data can be checked against the student's (``kdistill.data.compat``).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from kdistill.config import DataConfig, ModelConfig, RunConfig
from kdistill.errors import ConfigError

CONFIG_FILE = "config.yaml"  # the same names as kdistill.runs (not imported: runs imports the config dump only)
STUDENT_WEIGHTS = "student.safetensors"
DATA_RECORD_FILE = "data.json"  # {"name", "root", "num_classes", "input_shape", "class_names"}
MAX_WEIGHTS_DEPTH = 3  # runs/x/checkpoints/best/student.safetensors still belongs to runs/x


def is_run_folder(path: str | Path | None) -> bool:
    """A folder with a saved config and final student weights (a finished kdistill run)."""
    if not path:
        return False
    folder = Path(path)
    return folder.is_dir() and (folder / CONFIG_FILE).is_file() and (folder / STUDENT_WEIGHTS).is_file()


def run_folder_of(weights: str | None) -> Path | None:
    """The run folder a weights path is (``runs/t``) or sits in (``runs/t/student.safetensors``), else None."""
    if not weights:
        return None
    path = Path(weights)
    if is_run_folder(path):
        return path
    for parent in list(path.parents)[:MAX_WEIGHTS_DEPTH]:
        if is_run_folder(parent):
            return parent
    return None


def read_run_config(run_dir: str | Path) -> RunConfig:
    from kdistill.config import load_config

    return load_config(Path(run_dir) / CONFIG_FILE)


def resolve_model(model: ModelConfig) -> ModelConfig:
    """``name`` or ``weights`` naming a run folder -> that run's student (name, kwargs) and its final weights.

    Anything else is returned unchanged. Weights given next to a run-folder name win (e.g. its checkpoints/best).
    """
    if is_run_folder(model.name):
        trained = read_run_config(model.name).student
        weights = _weights_file(model.weights) if model.weights else str(Path(model.name) / STUDENT_WEIGHTS)
        # pretrained: the folder's weights replace any download
        return trained.model_copy(update={"weights": weights, "pretrained": False})
    if model.weights and is_run_folder(model.weights):
        return model.model_copy(update={"weights": _weights_file(model.weights)})
    return model


def _weights_file(weights: str) -> str:
    return str(Path(weights) / STUDENT_WEIGHTS) if is_run_folder(weights) else weights


def resolve_run_models(config: RunConfig) -> RunConfig:
    """The config with run folders in ``student`` and ``teacher`` replaced by the models they trained (the saved
    config.yaml then names the real model, so ``--resume`` with the same flags matches it)."""
    update = {"student": resolve_model(config.student)}
    if getattr(config.teacher, "kind", "model") == "model" and config.teacher is not None:  # not stored outputs
        update["teacher"] = resolve_model(config.teacher)
    return config.model_copy(update=update)


def data_record(data: DataConfig, num_classes: int, input_shape: tuple[int, ...], class_names: list[str]) -> dict:
    """What data.json records of a run's data: enough to rebuild its model and to compare two runs' data."""
    return {"name": data.name, "root": data.root, "num_classes": num_classes, "input_shape": list(input_shape),
            "class_names": list(class_names)}


def read_data_record(run_dir: str | Path) -> dict | None:
    """The run's data record (data.json); None for runs written before it was recorded."""
    import json

    record = Path(run_dir) / DATA_RECORD_FILE
    return json.loads(record.read_text()) if record.is_file() else None


def load_model(run_dir: str | Path) -> nn.Module:
    """The trained student of a finished run folder, with its final weights, in eval mode.

    The input shape and class count come from the run's data.json (older runs: from loading its data again).
    """
    from kdistill.models.base import build_model

    if not is_run_folder(run_dir):
        raise ConfigError(f"{run_dir} is not a finished kdistill run (needs {CONFIG_FILE} and {STUDENT_WEIGHTS})")
    config = read_run_config(run_dir)
    record = read_data_record(run_dir)
    if record is None:
        from kdistill.data.base import load_data

        splits = load_data(config.data)
        input_shape, num_classes = splits.input_shape, splits.num_classes
    else:
        input_shape, num_classes = tuple(record["input_shape"]), int(record["num_classes"])
    model = build_model(resolve_model(ModelConfig(name=str(run_dir))), input_shape, num_classes, role=str(run_dir))
    return model.eval()

