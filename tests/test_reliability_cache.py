"""Issue 19, points 5 and 6 (cache): the fingerprint covers every training item and says which part changed; a
truncated, emptied or garbled shard is named, not counted as coverage, never read, and rebuilt by `cache build`."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch
import yaml

from cli_helpers import run_main
from kdistill.cache import CacheError, CacheMismatchError, build_cache, cache_info, open_cached_teacher
from kdistill.cache.store import shard_name
from kdistill.config import DataConfig, ModelConfig, RunConfig, TrainerConfig
from kdistill.data import load_data
from kdistill.models import build_model, save_weights
from reliability_helpers import flip_byte, truncate

TEACHER = ModelConfig(name="mlp", kwargs={"width": 16, "depth": 1})


def write_csv(path: Path, rows: list[list[float]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{i}" for i in range(len(rows[0]) - 1)] + ["label"])
        writer.writerows(rows)


def csv_run(tmp_path: Path) -> tuple[RunConfig, list[list[float]]]:
    """300 rows of 8 features and 3 classes, not normalised (so one changed row changes one item), and a teacher."""
    rng = random.Random(0)
    rows = [[round(rng.uniform(-1, 1), 4) for _ in range(8)] + [i % 3] for i in range(300)]
    write_csv(tmp_path / "data.csv", rows)
    data = DataConfig(name=f"csv:{tmp_path / 'data.csv'}", normalize=False)
    splits = load_data(data)
    torch.manual_seed(0)
    weights = save_weights(build_model(TEACHER, splits.input_shape, splits.num_classes), tmp_path / "t.safetensors")
    config = RunConfig(data=data, teacher=TEACHER.model_copy(update={"weights": str(weights)}),
                       trainer=TrainerConfig(eval_batch_size=64))
    return config, rows


def _changed(rows: list[list[float]], change: str) -> list[list[float]]:
    rows = [list(row) for row in rows]
    row = rows[137]  # not one of a few sampled items: every item counts now
    if change == "one value":
        row[3] += 0.25
    elif change == "permuted features":
        row[:8] = row[:8][::-1]
    elif change == "label":
        row[8] = (row[8] + 1) % 3
    return rows


@pytest.mark.parametrize(("change", "message"), [("one value", "train input values differ at 1 of"),
                                                 ("permuted features", "train input values differ at 1 of"),
                                                 ("label", "train labels differ at")])  # re-stratified split
def test_any_changed_training_row_is_caught_and_named(tmp_path, change, message) -> None:
    config, rows = csv_run(tmp_path)
    build_cache(config, tmp_path / "c", shard_size=100)
    open_cached_teacher(tmp_path / "c", config, load_data(config.data)).close()  # unchanged data: accepted
    write_csv(tmp_path / "data.csv", _changed(rows, change))
    with pytest.raises(CacheMismatchError, match=message) as caught:
        open_cached_teacher(tmp_path / "c", config, load_data(config.data))
    assert caught.value.part == "data"


def test_a_different_split_is_named_as_the_split(tmp_path) -> None:
    config, rows = csv_run(tmp_path)
    build_cache(config, tmp_path / "c", shard_size=100)
    write_csv(tmp_path / "data.csv", rows[:-5])  # five rows fewer: other split sizes
    with pytest.raises(CacheMismatchError, match=r"split \(train/val/test sizes\) differs"):
        open_cached_teacher(tmp_path / "c", config, load_data(config.data))


def _digits_cache(tmp_path: Path) -> tuple[RunConfig, Path]:
    data = DataConfig(name="digits")
    splits = load_data(data)
    torch.manual_seed(0)
    weights = save_weights(build_model(TEACHER, splits.input_shape, splits.num_classes), tmp_path / "t.safetensors")
    config = RunConfig(data=data, teacher=TEACHER.model_copy(update={"weights": str(weights)}),
                       trainer=TrainerConfig(eval_batch_size=256, accelerator="cpu"))
    build_cache(config, tmp_path / "c", shard_size=500)  # 1295 samples -> 3 shards
    return config, tmp_path / "c"


DAMAGE = {"truncated": truncate, "empty": lambda path: path.write_bytes(b""), "flipped byte": flip_byte,
          "garbled": lambda path: path.write_bytes(b"\x93NUMPY garbage" * 50)}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_shard_is_not_coverage_is_never_read_and_is_rebuilt(tmp_path, damage) -> None:
    config, store = _digits_cache(tmp_path)
    shard = store / shard_name(1)
    original = shard.read_bytes()
    DAMAGE[damage](shard)

    info = cache_info(store)
    assert info["coverage"] == pytest.approx(2 / 3) and list(info["damaged_shards"]) == [1]
    assert shard_name(1) in info["damaged_shards"][1]

    splits = load_data(config.data)
    teacher = open_cached_teacher(store, config, splits)
    batch = {"input": splits.train.inputs[600:610], "index": torch.arange(600, 610)}  # rows of shard 1
    with pytest.raises(CacheError, match=shard_name(1)):
        teacher.outputs(batch)
    teacher.close()

    rebuilt = build_cache(config, store, shard_size=500)
    assert rebuilt["rebuilt_shards"] == [1] and rebuilt["coverage"] == 1.0 and not rebuilt["damaged_shards"]
    assert shard.read_bytes() == original  # the same bytes as the first build


def test_cache_cli_reports_and_rebuilds_a_damaged_shard(tmp_path, monkeypatch, capsys) -> None:
    config, store = _digits_cache(tmp_path)
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    truncate(store / shard_name(2))
    code, out, err = run_main(monkeypatch, capsys, "cache", "info", str(store))
    assert code == 0, err
    assert "2/3 shards (67%)" in out and "100%" not in out and shard_name(2) in out
    code, out, err = run_main(monkeypatch, capsys, "cache", "build", str(config_path), "--dir", str(store),
                              "--shard-size", "500")
    assert code == 0, err
    assert "rebuilt shards" in out and "3/3 shards (100%)" in out
