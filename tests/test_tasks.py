"""Tasks and teacher kinds as components: explicit registration, example batches, result rows, and no task-name or
teacher-prefix branches left outside the components."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdistill.config import DataConfig, ModelConfig
from kdistill.data import load_data
from kdistill.models import build_model
from kdistill.tasks import TASKS, ClassificationTask

SRC = Path(__file__).resolve().parents[1] / "src" / "kdistill"


def test_registries_are_complete_after_importing_only_their_package():
    """No import-order trick: a fresh interpreter importing just the package sees every member."""
    script = ("from kdistill.tasks import TASKS; from kdistill.teachers import TEACHERS; "
              "print(TASKS.names(), TEACHERS.names())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['causal-lm', 'classification', 'embedding'] ['cache', 'model', 'soft-labels']"


def test_example_batch_calls_the_model_as_the_task_does():
    splits = load_data(DataConfig(name="digits"))
    task = ClassificationTask()
    batch = task.example_batch(splits, batch_size=3)
    assert set(batch) == {"input"} and batch["input"].shape == (3, *splits.input_shape)
    torch.testing.assert_close(batch["input"][0], splits.test[0]["input"])
    model = build_model(ModelConfig(name="mlp"), splits.input_shape, splits.num_classes)
    assert task.logits(model, batch).shape == (3, splits.num_classes)


def test_causal_lm_example_batch_is_one_full_attended_sequence():
    class Splits:  # the only part of DataSplits the hook reads
        test = [{"input_ids": torch.arange(6), "attention_mask": torch.tensor([1, 1, 1, 0, 0, 0])}]

    batch = TASKS.get("causal-lm")().example_batch(Splits(), batch_size=2)
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].tolist() == [list(range(6))] * 2 and batch["attention_mask"].all()


def test_rows_hold_the_task_columns():
    metrics = {"test_accuracy": 0.9, "test_agreement": 0.95, "epoch_time_s": 1.0}
    row = ClassificationTask().row(metrics)
    assert list(row) == list(ClassificationTask.result_columns)
    assert row["test_accuracy"] == 0.9 and row["test_agreement"] == 0.95 and row["test_ece"] is None
    assert "test_perplexity" in TASKS.get("causal-lm")().row({"test_perplexity": 3.0})
    assert TASKS.get("embedding")().row({"test_cosine_to_teacher": 0.8})["test_cosine_to_teacher"] == 0.8


def test_no_task_name_or_teacher_prefix_branches_outside_the_components():
    pattern = re.compile(r"(task\.name|config\.task|task_name)\s*==|startswith\(\s*[\"']cache:")
    offenders = [f"{path.relative_to(SRC)}:{number}: {line.strip()}"
                 for path in SRC.rglob("*.py") if path.parts[-2] not in ("tasks", "teachers")
                 for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_cache_build_refuses_a_task_whose_outputs_it_cannot_store(tmp_path):
    from kdistill.cache import CacheError, build_cache
    from kdistill.config import load_config

    config = load_config(overrides=["task=embedding", "teacher={name: minilm, weights: w.safetensors}"])
    with pytest.raises(CacheError, match="teacher caches support tasks causal-lm, classification, not 'embedding'"):
        build_cache(config, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_eval_of_a_task_without_an_eval_table_is_a_config_error():
    from kdistill import api
    from kdistill.errors import ConfigError

    entry = api.EvalEntry("encoder", ModelConfig(name="tiny-bert", weights="w.safetensors"), task="embedding")
    with pytest.raises(ConfigError, match="kdistill eval does not support task embedding"):
        api.evaluate([entry], DataConfig())
