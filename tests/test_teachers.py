"""Teacher kinds as components: the typed ``teacher:`` config (old forms included), the soft-labels black-box
teacher against the live teacher it was written from, and capability mismatches as one config-time error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from cli_helpers import run_main
from kdistill import api
from kdistill.config import (
    CacheTeacherConfig,
    ModelTeacherConfig,
    SoftLabelsTeacherConfig,
    dump_config,
    load_config,
)
from kdistill.data import load_data
from kdistill.errors import ConfigError
from kdistill.methods import build_method
from kdistill.models import build_model, save_weights
from kdistill.tasks import TASKS
from kdistill.teachers import LiveTeacher


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A digits teacher (random weights: equality, not accuracy, is what these tests check) and its logits on the
    training split, in order."""
    folder = tmp_path_factory.mktemp("teacher")
    config = load_config(overrides=["teacher={name: mlp, kwargs: {width: 24}}"])
    splits = load_data(config.data)
    torch.manual_seed(0)
    model = build_model(config.teacher, splits.input_shape, splits.num_classes)
    weights = save_weights(model, folder / "teacher.safetensors")
    teacher = LiveTeacher(model)
    logits = torch.cat([teacher.outputs(batch).logits for batch in DataLoader(splits.train, batch_size=256)])
    return {"folder": folder, "weights": str(weights), "logits": logits.numpy(), "samples": len(splits.train)}


def distill_config(tmp_path, name: str, teacher: str, *extra: str):
    return load_config(overrides=[f"output_dir={tmp_path}", f"name={name}", f"teacher={teacher}",
                                  "student.kwargs={width: 16}", "distill.alpha=0.3", "trainer.epochs=2",
                                  "trainer.batch_size=64", "trainer.progress=false", "trainer.accelerator=cpu",
                                  *extra])


def student_state(result) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in result.student.state_dict().items()}


def test_soft_labels_teacher_trains_the_same_student_as_the_live_teacher(teacher_run, tmp_path):
    live = api.distill(distill_config(tmp_path, "live", f"{{name: mlp, kwargs: {{width: 24}}, weights: "
                                                        f"{teacher_run['weights']}}}"))
    logits = teacher_run["logits"]
    np.save(tmp_path / "logits.npy", logits)
    by_row = api.distill(distill_config(tmp_path, "npy", f"{{kind: soft-labels, path: {tmp_path / 'logits.npy'}}}"))
    # Shuffled rows with an id column, and probabilities instead of logits: the same soft targets.
    order = np.random.default_rng(0).permutation(len(logits))
    probabilities = torch.from_numpy(logits).softmax(-1).numpy()
    np.savez(tmp_path / "probs.npz", probabilities=probabilities[order], sample_id=order)
    by_id = api.distill(distill_config(tmp_path, "npz", f"{{kind: soft-labels, path: {tmp_path / 'probs.npz'}, "
                                                        "values: probabilities, id_column: sample_id}"))
    reference = student_state(live)
    for result in (by_row, by_id):
        for key, value in student_state(result).items():
            torch.testing.assert_close(value, reference[key], rtol=1e-4, atol=1e-5)  # float noise of batched logits
        assert result.metrics["test_accuracy"] == pytest.approx(live.metrics["test_accuracy"], abs=1e-3)
        assert "test_agreement" not in result.metrics  # a black box: nothing to compare on the test split
    assert live.metrics["test_agreement"] > 0
    saved = yaml.safe_load((by_id.run_dir / "config.yaml").read_text())["teacher"]
    assert saved == {"kind": "soft-labels", "path": str(tmp_path / "probs.npz"), "values": "probabilities",
                     "key": None, "id_column": "sample_id"}


def test_soft_labels_from_parquet(teacher_run, tmp_path):
    import pyarrow as pa  # a declared dependency (pyproject.toml)
    import pyarrow.parquet as pq

    logits = teacher_run["logits"]
    table = pa.table({"id": np.arange(len(logits))[::-1].copy(), "logits": list(logits[::-1])})
    pq.write_table(table, tmp_path / "teacher.parquet")
    config = distill_config(tmp_path, "parquet", f"{{kind: soft-labels, path: {tmp_path / 'teacher.parquet'}, "
                                                 "id_column: id}", "trainer.epochs=1")
    teacher = api.build_teacher(config, load_data(config.data), TASKS.get("classification")())
    torch.testing.assert_close(teacher.logits, torch.from_numpy(logits))


@pytest.mark.parametrize(("write", "options", "message"), [
    (lambda logits: {"a.npy": logits[:-1]}, "", r"has 1294 rows but the training split has 1295 samples"),
    (lambda logits: {"a.npy": logits[:, :7]}, "", r"\(7,\) values per row but the data has 10 classes"),
    (lambda logits: {"a.npz": {"logits": logits, "ids": np.r_[np.arange(len(logits) - 1), 0]}}, ", id_column: ids",
     r"1 repeated ids"),
    (lambda logits: {"a.npz": {"logits": logits, "ids": np.arange(len(logits)) + 5}}, ", id_column: ids",
     r"ids do not match the 1295 training samples.*5 missing \(first \[0, 1, 2\]\), 5 unknown"),
    (lambda logits: {"a.npz": {"logits": logits}}, ", id_column: ids", r"no array 'ids'"),
])
def test_soft_labels_that_do_not_fit_the_data_are_one_line_errors(teacher_run, tmp_path, monkeypatch, capsys,
                                                                   write, options, message):
    ((name, content),) = write(teacher_run["logits"]).items()
    path = tmp_path / name
    np.savez(path, **content) if isinstance(content, dict) else np.save(path, content)
    config = distill_config(tmp_path, "bad", f"{{kind: soft-labels, path: {path}{options}}}")
    assert teacher_run["samples"] == 1295
    with pytest.raises(ConfigError, match=message):
        api.distill(config)
    config_file = tmp_path / "bad.yaml"
    dump_config(config, config_file)
    code, _, err = run_main(monkeypatch, capsys, "distill", str(config_file))
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_old_teacher_forms_keep_loading(tmp_path):
    model = load_config(overrides=["teacher={name: resnet, kwargs: {width: 8}, weights: t.safetensors}"]).teacher
    assert isinstance(model, ModelTeacherConfig) and model.kind == "model" and model.kwargs == {"width": 8}
    cached = load_config(overrides=["teacher={name: 'cache:runs/c', weights: t.safetensors}"]).teacher
    assert cached == CacheTeacherConfig(kind="cache", dir="runs/c", weights="t.safetensors")
    # `--set teacher.name=cache:DIR` over a YAML model teacher (README's recipe): weights kept, kwargs dropped.
    path = tmp_path / "run.yaml"
    path.write_text("teacher: {name: resnet, kwargs: {width: 8}, weights: t.safetensors}\n")
    assert load_config(path, ["teacher.name=cache:runs/c"]).teacher == cached
    # The resolved config is saved in the typed form and reads back the same.
    dump_config(load_config(path, ["teacher.name=cache:runs/c"]), tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml").teacher == cached
    dump_config(load_config(path), tmp_path / "saved-model.yaml")  # a resolved model teacher (kind: model) ...
    assert load_config(tmp_path / "saved-model.yaml").teacher == model.model_copy(update={"name": "resnet"})
    assert load_config(tmp_path / "saved-model.yaml", ["teacher.name=cache:runs/c"]).teacher == cached  # ... too
    typed = load_config(overrides=["teacher={kind: soft-labels, path: t.npz, values: probabilities}"]).teacher
    assert isinstance(typed, SoftLabelsTeacherConfig) and typed.values == "probabilities"


@pytest.mark.parametrize(("teacher", "message"), [
    ("{kind: cache, dir: x, kwargs: {}}", r"teacher\.cache\.kwargs: unknown key"),
    ("{kind: soft-labels}", r"teacher\.soft-labels\.path: Field required"),
    ("{kind: ensemble, members: []}", r"teacher: .*'model', 'cache', 'soft-labels'"),
])
def test_unknown_keys_and_kinds_are_rejected_per_kind(teacher, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[f"teacher={teacher}"])


@pytest.mark.parametrize(("method", "teacher", "message"), [
    ("fitnet", "{kind: soft-labels, path: x.npy}",
     r"method 'fitnet' needs the teacher's intermediate features, which a teacher of kind 'soft-labels' does not "
     r"provide \(it provides: logits\)"),
    ("rkd", "{kind: cache, dir: x}", r"method 'rkd' needs the teacher's intermediate features.*kind 'cache'"),
])
def test_capability_mismatch_is_one_config_error_before_anything_is_built(tmp_path, method, teacher, message):
    config = distill_config(tmp_path, "mismatch", teacher, f"distill.methods={{kd: 1, {method}: 1}}")
    with pytest.raises(ConfigError, match=message):
        api.distill(config)  # neither x.npy nor the store x exists: the check comes first
    assert not (tmp_path / "mismatch").exists()


def test_method_options_temperature_overrides_the_global_one(teacher_run, tmp_path):
    config = distill_config(tmp_path, "per-method-t", f"{{name: mlp, kwargs: {{width: 24}}, weights: "
                                                      f"{teacher_run['weights']}}}", "distill.temperature=4",
                            "distill.methods={kd: 1, dkd: 1}", "distill.method_options={kd: {temperature: 2}}",
                            "trainer.epochs=1")
    methods = api.build_methods(config, load_data(config.data), TASKS.get("classification")())
    assert methods["kd"].temperature == 2 and methods["dkd"].temperature == 4
    assert api.distill(config).history[0]["train_kd"] > 0
    with pytest.raises(ConfigError, match=r"method_options\.kd\.temperature must be > 0"):
        build_method("kd", 4.0, 10, {"temperature": 0})


def test_classification_methods_are_refused_on_token_logits():
    task = TASKS.get("causal-lm")()
    with pytest.raises(ConfigError, match=r"methods \['dkd', 'kd'\] do not apply to task causal-lm \(they are for "
                                          r"classification\); methods for causal-lm: token_fkl"):
        task.check_methods({name: build_method(name, 1.0, 50) for name in ("kd", "dkd", "token_fkl")})
