"""Teacher-output cache for causal language models: per-token top-k / full log-probs, round trip, distillation."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kdistill import api  # noqa: E402
from kdistill.cache import CacheMismatchError, build_cache, open_cached_teacher  # noqa: E402
from kdistill.cache.compact import row_fields  # noqa: E402
from kdistill.config import DataConfig, DistillConfig, ModelConfig, OptimConfig, RunConfig, TrainerConfig  # noqa: E402
from kdistill.data import load_data  # noqa: E402
from kdistill.errors import ConfigError  # noqa: E402
from kdistill.models import build_model, save_weights  # noqa: E402
from kdistill.tasks import CausalLMTask  # noqa: E402

V = 259  # byte tokenizer
MAX_LENGTH = 32
TEACHER = ModelConfig(name="tiny-gpt2", kwargs={"hidden": 32, "n_layer": 1, "heads": 2})
STUDENT = ModelConfig(name="tiny-gpt2", kwargs={"hidden": 16, "n_layer": 1, "heads": 2})


def make_run(tmp_path, records: int = 40):
    """A jsonl corpus (plain text and prompt/completion lines, some padded) and a peaked random teacher."""
    lines = []
    for i in range(records):
        if i % 3 == 0:
            lines.append({"prompt": f"def f{i}(x):", "completion": f" return x * {i}"})
        else:
            lines.append({"text": f"line {i}: " + "abcdefgh"[: 1 + i % 8] * (1 + i % 5)})
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(line) + "\n" for line in lines))
    data = DataConfig(name=f"jsonl:{corpus}", max_length=MAX_LENGTH, val_fraction=0.1, test_fraction=0.1)
    splits = load_data(data)
    torch.manual_seed(0)
    model = build_model(TEACHER, splits.input_shape, splits.num_classes)
    with torch.no_grad():
        model.transformer.wte.weight.mul_(9.0)  # tied head: top-1 ~0.45, top-8 mass ~0.55 (not uniform)
    weights = save_weights(model, tmp_path / "teacher.safetensors")
    config = RunConfig(name="student", task="causal-lm", output_dir=str(tmp_path / "runs"), data=data,
                       teacher=TEACHER.model_copy(update={"weights": str(weights)}), student=STUDENT,
                       distill=DistillConfig(temperature=1.0, alpha=0.5, methods={"token_fkl": 1.0}),
                       optim=OptimConfig(name="adamw", lr=3e-3),
                       trainer=TrainerConfig(epochs=1, batch_size=8, eval_batch_size=16, accelerator="cpu",
                                             progress=False))
    return config, splits, model.eval()


def train_batch(splits, count: int = 12) -> dict[str, torch.Tensor]:
    items = [splits.train[i] for i in range(count)]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def live_log_probs(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(CausalLMTask().logits(model, batch).float(), -1)  # (B, T, V)


def test_topk_round_trip_keeps_top_tokens_and_rest_mass(tmp_path):
    torch.set_num_threads(1)
    config, splits, model = make_run(tmp_path)
    k = 8
    info = build_cache(config, tmp_path / "c", mode="topk", k=k, shard_size=10)
    assert info["coverage"] == 1.0 and info["manifest"]["positions"] == MAX_LENGTH
    assert info["bytes_per_token"] == k * 2 + k * 2 + 4  # float16 values, int16 indices, float32 rest
    assert info["bytes_per_sample"] == MAX_LENGTH * info["bytes_per_token"]
    targets = int((splits.train.labels[:, 1:] != -100).sum())
    assert info["bytes_per_target_token"] == pytest.approx(info["bytes_per_sample"] * len(splits.train) / targets)

    teacher = open_cached_teacher(tmp_path / "c", config, splits)
    batch = train_batch(splits)
    stored = teacher.outputs(batch).logits  # (B, T, V): stored log-probs on kept tokens, rest fill elsewhere
    cached = torch.log_softmax(stored, -1)
    live = live_log_probs(model, batch)
    assert cached.shape == live.shape == (12, MAX_LENGTH, V)
    top = live.topk(k, -1).indices
    kept = torch.zeros_like(live, dtype=torch.bool).scatter_(-1, top, True)
    # Kept tokens: exact up to float16 rounding of the stored log-probs (half a step: 2^-11 relative).
    assert ((stored[kept] - live[kept]).abs() <= live[kept].abs() * 2**-11 + 1e-6).all()
    assert (cached[kept] - live[kept]).abs().max() < 5e-3  # renormalised: fp16 step (2^-9 at |x| < 8) + mass shift
    assert live.exp().topk(1, -1).values.mean() > 0.3  # the teacher is peaked, so the check above means something
    rest = torch.where(kept, float("-inf"), live).logsumexp(-1)  # (B, T) log of the true remaining mass
    assert torch.allclose(torch.where(kept, float("-inf"), cached).logsumexp(-1), rest, atol=1e-2)
    others = cached[~kept].view(12, MAX_LENGTH, V - k)  # spread uniformly over the other V - k tokens
    assert torch.allclose(others, (rest - math.log(V - k)).unsqueeze(-1).expand_as(others), atol=1e-2)
    assert torch.allclose(cached.exp().sum(-1), torch.ones(12, MAX_LENGTH), atol=1e-3)


def test_full_round_trip_and_sizes(tmp_path):
    torch.set_num_threads(1)
    config, splits, model = make_run(tmp_path)
    info = build_cache(config, tmp_path / "c", mode="full", shard_size=100)
    assert info["bytes_per_token"] == V * 2
    teacher = open_cached_teacher(tmp_path / "c", config, splits)
    batch = train_batch(splits)
    cached = teacher.outputs(batch).logits
    live = live_log_probs(model, batch)
    assert ((cached - live).abs() <= live.abs() * 2**-11 + 1e-6).all()  # float16: half a step, relative
    # Indices widen to int32 above the int16 range (e.g. a 50k-token vocabulary).
    assert dict((name, dtype) for name, dtype, _ in row_fields("topk", 4, 50_257, "float16", 16))["indices"] == "<i4"
    assert np.dtype(row_fields("topk", 4, 50_257, "float16", 16)).itemsize == 16 * (4 * 2 + 4 * 4 + 4)


def test_mismatched_task_and_feature_methods_are_refused(tmp_path):
    config, splits, _ = make_run(tmp_path)
    build_cache(config, tmp_path / "c", mode="topk", k=4, shard_size=100)
    classification = config.model_copy(update={"task": "classification"})
    with pytest.raises(CacheMismatchError, match="causal-lm") as caught:
        open_cached_teacher(tmp_path / "c", classification, splits)
    assert caught.value.part == "task"
    other = config.model_copy(update={"data": config.data.model_copy(update={"max_length": MAX_LENGTH + 8})})
    with pytest.raises(CacheMismatchError) as caught:
        open_cached_teacher(tmp_path / "c", other, load_data(other.data))
    assert caught.value.part == "data"
    # A classification method on token logits is refused by the task, whatever the teacher (no folder is made).
    run = config.model_copy(update={"teacher": ModelConfig(name=f"cache:{tmp_path / 'c'}"),
                                    "distill": DistillConfig(temperature=1.0, methods={"token_fkl": 1.0, "kd": 1.0})})
    with pytest.raises(ConfigError, match=r"\['kd'\] do not apply to task causal-lm.*token_fkl"):
        api.distill(run)
    assert not run.run_dir.exists()


def test_distill_from_cache_matches_live_teacher(tmp_path):
    """api.distill with teacher.name cache:<dir> trains; from a full cache it follows the live teacher closely."""
    torch.set_num_threads(1)
    config, splits, _ = make_run(tmp_path)
    build_cache(config, tmp_path / "full", mode="full", shard_size=100)
    build_cache(config, tmp_path / "top8", mode="topk", k=8, shard_size=100)
    live = api.distill(config.model_copy(update={"name": "live"}))
    results = {}
    for name in ("full", "top8"):
        run = config.model_copy(update={"name": name, "teacher": ModelConfig(name=f"cache:{tmp_path / name}")})
        results[name] = api.distill(run)
        summary = json.loads((results[name].run_dir / "summary.json").read_text())
        assert math.isfinite(summary["test_perplexity"]) and summary["epochs"] == 1
        assert [r["epoch"] for r in results[name].history] == [1]
        assert math.isfinite(results[name].history[0]["train_fkl"])
    # Same data order and initial student: only float16 rounding of the soft targets separates full from live.
    assert results["full"].history[0]["train_fkl"] == pytest.approx(live.history[0]["train_fkl"], rel=1e-2)
    assert results["full"].metrics["test_loss"] == pytest.approx(live.metrics["test_loss"], rel=1e-3)
    # Top-8 keeps ~55% of the mass exactly, so its KD term is close too (not equal: the tail is flattened).
    assert results["top8"].history[0]["train_fkl"] == pytest.approx(live.history[0]["train_fkl"], rel=0.2)
