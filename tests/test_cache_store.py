"""Teacher-output cache: round trips, compact encodings, fingerprints, memory-mapped reading, view replay, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from kdistill import api
from kdistill.cache import (
    CacheError,
    CacheIncompleteError,
    CacheMismatchError,
    CacheStore,
    CompactOutputs,
    ReplayViews,
    build_cache,
    cache_info,
    open_cached_teacher,
)
from kdistill.cache import store as store_module
from kdistill.cache.build import view_seed
from kdistill.cache.compact import check_mode, encode
from kdistill.cache.fingerprint import data_fingerprint
from kdistill.commands.cache import app
from kdistill.config import DataConfig, ModelConfig, RunConfig, TrainerConfig, typed_teacher
from kdistill.data import load_data
from kdistill.errors import ConfigError
from kdistill.models import build_model, save_weights
from kdistill.runs import file_sha256
from kdistill.tasks import ClassificationTask
from kdistill.teachers import CachedTeacher, build_teacher

TEACHER = ModelConfig(name="mlp", kwargs={"width": 16})


def make_run(tmp_path, seed: int = 0, **data_options):
    """Digits, and a tiny MLP teacher with a scaled-up head so its distributions are peaked (not near uniform)."""
    data = DataConfig(name="digits", **data_options)
    splits = load_data(data)
    torch.manual_seed(seed)
    model = build_model(TEACHER, splits.input_shape, splits.num_classes)
    with torch.no_grad():
        model.head.weight.mul_(8.0)
    weights = save_weights(model, tmp_path / f"teacher{seed}.safetensors")
    config = RunConfig(data=data, teacher=TEACHER.model_copy(update={"weights": str(weights)}),
                       trainer=TrainerConfig(eval_batch_size=256))
    return config, splits, model.eval()


def all_rows(splits, count: int = 300) -> dict[str, torch.Tensor]:
    return {"input": splits.train.inputs[:count], "index": torch.arange(count)}


def test_full_round_trip_matches_teacher(tmp_path):
    config, splits, model = make_run(tmp_path)
    build_cache(config, tmp_path / "c", shard_size=200)
    teacher = open_cached_teacher(tmp_path / "c", config, splits)
    batch = all_rows(splits)
    cached = teacher.outputs(batch).logits
    with torch.no_grad():
        live = model(batch["input"])
    for temperature in (1.0, 4.0):
        expected = torch.softmax(live / temperature, -1)
        assert torch.allclose(torch.softmax(cached / temperature, -1), expected, atol=2e-3, rtol=5e-3)
    assert cached.dtype == torch.float32 and cached.shape == live.shape


def test_topk_keeps_exact_top_probabilities_and_rest_mass(tmp_path):
    config, splits, model = make_run(tmp_path)
    build_cache(config, tmp_path / "c", mode="topk", k=3, shard_size=200)
    teacher = open_cached_teacher(tmp_path / "c", config, splits)
    batch = all_rows(splits)
    cached = torch.softmax(teacher.outputs(batch).logits, -1)
    with torch.no_grad():
        probs = torch.softmax(model(batch["input"]), -1)
    top = probs.topk(3, -1).indices
    kept = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, top, True)
    assert torch.allclose(cached[kept], probs[kept], rtol=2e-3, atol=1e-5)
    rest = (probs * ~kept).sum(-1)
    assert torch.allclose((cached * ~kept).sum(-1), rest, rtol=2e-3, atol=1e-5)
    others = cached[~kept].view(len(probs), 7)
    assert torch.allclose(others, (rest / 7).unsqueeze(-1).expand(-1, 7), rtol=2e-3, atol=1e-6)  # spread uniformly


def test_compact_against_naive_reference():
    torch.manual_seed(1)
    logits = torch.randn(6, 7) * 3
    for k in (2, 7):
        fields = encode(logits, "topk", k)
        records = np.empty(6, dtype=[("values", "<f4", (k,)), ("indices", "<i4", (k,)), ("rest", "<f4")])
        for name, values in fields.items():
            records[name] = values
        compact = CompactOutputs.from_records(records, "topk", 7)
        probs = torch.softmax(logits, -1)
        order = probs.argsort(-1, descending=True)
        rebuilt = compact.soft_targets(1.0)
        kept_true = probs.gather(-1, order[:, :k])
        assert torch.allclose(rebuilt.gather(-1, order[:, :k]), kept_true, atol=1e-6)
        if k < 7:
            mass = 1 - kept_true.sum(-1)
            assert torch.allclose(rebuilt.gather(-1, order[:, k:]), (mass / (7 - k)).unsqueeze(-1).expand(-1, 7 - k),
                                  atol=1e-6)
            # At T=4 the ratio of two kept classes stays exact: p_i / p_j = exp((z_i - z_j) / T).
            warm = compact.soft_targets(4.0)
            i, j = order[:, 0:1], order[:, 1:2]
            ratio = warm.gather(-1, i) / warm.gather(-1, j)
            assert torch.allclose(ratio, torch.exp((logits.gather(-1, i) - logits.gather(-1, j)) / 4), rtol=1e-5)
        else:
            assert torch.allclose(rebuilt, probs, atol=1e-6)
    with pytest.raises(CacheError, match="larger than the 7 classes"):
        check_mode("topk", 8, 7)
    assert not math.isnan(float(CompactOutputs.from_records(records, "topk", 7).logits().sum()))


def test_bytes_per_sample_and_info(tmp_path):
    config, _, _ = make_run(tmp_path)
    full = build_cache(config, tmp_path / "full", shard_size=500)
    topk = build_cache(config, tmp_path / "topk", mode="topk", k=3, shard_size=500)
    assert full["bytes_per_sample"] == 10 * 2  # ten float16 log-probabilities
    assert topk["bytes_per_sample"] == 3 * 2 + 3 * 2 + 4  # float16 values, int16 indices, float32 rest
    assert full["coverage"] == 1.0 and full["num_shards"] == 3
    assert full["size_on_disk"] == sum(p.stat().st_size for p in (tmp_path / "full").iterdir())
    assert cache_info(tmp_path / "full")["manifest"]["completed_shards"] == [0, 1, 2]


def test_mismatches_name_the_part(tmp_path):
    config, splits, _ = make_run(tmp_path)
    build_cache(config, tmp_path / "c", shard_size=500)
    other_teacher, _, _ = make_run(tmp_path, seed=1)
    with pytest.raises(CacheMismatchError, match="teacher weights") as caught:
        open_cached_teacher(tmp_path / "c", other_teacher, splits)
    assert caught.value.part == "teacher"

    flat = config.model_copy(update={"data": DataConfig(name="digits", normalize=False)})
    with pytest.raises(CacheMismatchError, match="data.normalize") as caught:
        open_cached_teacher(tmp_path / "c", flat, load_data(flat.data))
    assert caught.value.part == "transform"

    changed = load_data(config.data)
    changed.train.inputs[0] += 0.5  # item 0 is in the fingerprinted sample
    with pytest.raises(CacheMismatchError, match="input values differ") as caught:
        open_cached_teacher(tmp_path / "c", config, changed)
    assert caught.value.part == "data"

    with pytest.raises(CacheMismatchError) as caught:
        build_cache(config, tmp_path / "c", mode="topk", k=2, shard_size=500)
    assert caught.value.part == "precision"


def test_last_bit_noise_in_inputs_is_not_a_data_change(tmp_path):
    config, splits, _ = make_run(tmp_path)
    build_cache(config, tmp_path / "c", shard_size=500)
    noisy = load_data(config.data)
    noisy.train.inputs.mul_(1 + 1e-7)  # as if the normalisation statistics differed in the last bit
    stored = cache_info(tmp_path / "c")["manifest"]["data"]
    assert data_fingerprint(config.data, noisy)["inputs_sha256"] != stored["inputs_sha256"]
    open_cached_teacher(tmp_path / "c", config, noisy)


def test_cache_spec_without_weights_skips_teacher_check_and_refuses_feature_methods(tmp_path):
    config, splits, _ = make_run(tmp_path)
    build_cache(config, tmp_path / "c", shard_size=500)
    run = config.model_copy(update={"teacher": typed_teacher(ModelConfig(name=f"cache:{tmp_path / 'c'}"))})
    teacher = build_teacher(run, splits, ClassificationTask())  # the old form maps to kind: cache
    assert isinstance(teacher, CachedTeacher) and teacher.store.num_samples == len(splits.train)
    teacher.close()
    run.distill.methods = {"kd": 1.0, "fitnet": 1.0}
    with pytest.raises(ConfigError, match="method 'fitnet' needs the teacher's intermediate features.*kind 'cache'"):
        api.build_methods(run, splits, ClassificationTask())


def test_partial_or_missing_store_is_refused(tmp_path):
    config, splits, _ = make_run(tmp_path)
    with pytest.raises(CacheIncompleteError, match="no teacher cache"):
        open_cached_teacher(tmp_path / "nothing", config, splits)
    build_cache(config, tmp_path / "c", shard_size=500)
    manifest_path = tmp_path / "c" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["completed_shards"] = [0, 1]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CacheIncompleteError, match=r"partial \(2/3 shards\).*kdistill cache build"):
        open_cached_teacher(tmp_path / "c", config, splits)


def test_reading_memory_maps_only_the_shards_it_needs(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "IN_MEMORY_BYTES", 0)  # a store too large to read into memory
    config, splits, _ = make_run(tmp_path)
    build_cache(config, tmp_path / "c", shard_size=100)
    teacher = open_cached_teacher(tmp_path / "c", config, splits)
    assert teacher.store._open == {}
    teacher.outputs({"index": torch.tensor([3, 250, 7])})  # shards 0 and 2
    assert sorted(teacher.store._open) == [0, 2]
    assert all(isinstance(rows, np.memmap) for rows in teacher.store._open.values())
    teacher.close()
    assert teacher.store._open == {}


def test_augmented_views_replay_exact_parameters(tmp_path):
    config, splits, model = make_run(tmp_path, augment_crop_padding=1, augment_hflip=True)
    build_cache(config, tmp_path / "c", views=3, shard_size=400)
    teacher = open_cached_teacher(tmp_path / "c", config, splits)
    dataset = teacher.train_dataset(splits.train)
    assert isinstance(dataset, ReplayViews)
    torch.manual_seed(0)
    items = [dataset[i] for i in range(0, 1200, 37)]
    augment = splits.train.augment
    for item in items:
        index, view = int(item["index"]), int(item["view"])
        params = tuple(int(p) for p in teacher.store.read_rows(np.array([index * 3 + view]))["params"][0])
        drawn = augment.sample(torch.Generator().manual_seed(view_seed(0, index, view)))
        assert params == drawn  # the build drew them from the per-(sample, view) generator
        assert torch.equal(item["input"], augment.apply(splits.train.inputs[index], params))
    assert len({int(item["view"]) for item in items}) == 3
    batch = torch.utils.data.default_collate(items)
    with torch.no_grad():
        live = torch.softmax(model(batch["input"]), -1)
    assert torch.allclose(torch.softmax(teacher.outputs(batch).logits, -1), live, atol=2e-3)
    other_view = {**batch, "view": (batch["view"] + 1) % 3}  # the lookup really is by (index, view)
    assert not torch.allclose(torch.softmax(teacher.outputs(other_view).logits, -1), live, atol=2e-3)
    with pytest.raises(CacheError, match="no 'view' key"):
        teacher.outputs({"index": batch["index"]})


def test_cli_build_and_info(tmp_path):
    config, _, _ = make_run(tmp_path)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    runner = CliRunner()
    built = runner.invoke(app, ["build", str(path), "--dir", str(tmp_path / "c"), "--mode", "topk", "--k", "2",
                                "--shard-size", "600", "--set", "trainer.num_workers=0"])
    assert built.exit_code == 0, built.output
    shown = runner.invoke(app, ["info", str(tmp_path / "c")])
    assert shown.exit_code == 0, shown.output
    assert "topk (k=2)" in shown.output and "3/3 shards (100%)" in shown.output
    assert "bytes per sample" in shown.output and "14" in shown.output


def test_a_small_store_is_read_into_memory_once_and_serves_the_same_rows(tmp_path, monkeypatch):
    config, splits, _ = make_run(tmp_path, augment_crop_padding=1)
    build_cache(config, tmp_path / "c", views=2, shard_size=20)
    hashed = []
    monkeypatch.setattr(store_module, "file_sha256", lambda path: hashed.append(path.name) or file_sha256(path))
    rows = torch.randperm(splits.train.inputs.shape[0] * 2, generator=torch.Generator().manual_seed(0)).numpy()
    small = CacheStore.open(tmp_path / "c")
    assert small.num_shards > 32  # more than the bound on open memory maps
    in_memory = [small.read_rows(rows[i : i + 64]) for i in range(0, len(rows), 64)]
    assert small._table is not None and small._open == {}
    assert sorted(hashed) == sorted(f"shard-{s:05d}.npy" for s in range(small.num_shards))  # each shard once
    monkeypatch.setattr(store_module, "IN_MEMORY_BYTES", 0)
    hashed.clear()
    large = CacheStore.open(tmp_path / "c")
    mapped = [large.read_rows(rows[i : i + 64]) for i in range(0, len(rows), 64)]
    assert large._table is None and len(large._open) == 32
    assert len(hashed) == large.num_shards  # reopened shards (LRU evictions) are not hashed again
    for one, other in zip(in_memory, mapped, strict=True):
        assert one.dtype == other.dtype and one.tobytes() == other.tobytes()
    with pytest.raises(CacheError, match="out of the cache's range"):
        small.read_rows(np.array([len(rows)]))
