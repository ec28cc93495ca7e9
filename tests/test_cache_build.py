"""Teacher-output cache builds: resumable after SIGKILL and after a full disk, ending byte-identical."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from kdistill.cache import CacheDiskFullError, CacheIncompleteError, build_cache, cache_info, open_cached_teacher
from kdistill.cache import store as store_module
from kdistill.config import DataConfig, ModelConfig, RunConfig, TrainerConfig
from kdistill.data import load_data
from kdistill.models import build_model, save_weights

OPTIONS = {"views": 2, "shard_size": 200, "mode": "topk", "k": 3}  # 1295 samples -> 7 shards of 400 rows


def make_run(tmp_path):
    data = DataConfig(name="digits", augment_crop_padding=1, augment_hflip=True)
    splits = load_data(data)
    torch.manual_seed(0)
    teacher = ModelConfig(name="mlp", kwargs={"width": 16})
    weights = save_weights(build_model(teacher, splits.input_shape, splits.num_classes), tmp_path / "t.safetensors")
    config = RunConfig(data=data, teacher=teacher.model_copy(update={"weights": str(weights)}),
                       trainer=TrainerConfig(eval_batch_size=128))
    return config, splits


# A build that hangs after writing shard 3's tmp file, before its rename (the test then SIGKILLs it): the stall is
# patched into the child process here, so production code carries no test hook.
STALLING_BUILD = f"""
import sys, time
from kdistill.cache import build_cache, store
from kdistill.config import load_config

real_write = store._write_file

def write_then_stall(path, write):
    real_write(path, write)
    if path.name == "shard-00003.npy.tmp":
        time.sleep(3600)

store._write_file = write_then_stall
build_cache(load_config(sys.argv[1]), sys.argv[2], **{OPTIONS!r})
"""


def store_bytes(folder) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def completed(folder) -> list[int]:
    try:
        return json.loads((folder / "manifest.json").read_text())["completed_shards"]
    except (OSError, ValueError):
        return []


def test_sigkill_mid_build_then_resume_is_byte_identical(tmp_path):
    config, splits = make_run(tmp_path)
    reference = tmp_path / "reference"
    build_cache(config, reference, **OPTIONS)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    folder = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", STALLING_BUILD, str(tmp_path / "run.yaml"), str(folder)])
    try:
        deadline = time.monotonic() + 120
        while not ((folder / "shard-00003.npy.tmp").exists() and completed(folder) == [0, 1, 2]):
            assert process.poll() is None, "the build exited before reaching the stall point"
            assert time.monotonic() < deadline, "the build did not reach shard 3"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert completed(folder) == [0, 1, 2] and not (folder / "shard-00003.npy").exists()
    with pytest.raises(CacheIncompleteError, match="3/7 shards"):
        open_cached_teacher(folder, config, splits)

    info = build_cache(config, folder, **OPTIONS)
    assert info["coverage"] == 1.0
    assert store_bytes(folder) == store_bytes(reference)  # no tmp file left, every byte identical


@pytest.mark.parametrize("failing", ["shard-00002.npy.tmp", "manifest.json.tmp"])
def test_disk_full_leaves_a_resumable_store(tmp_path, monkeypatch, failing):
    config, splits = make_run(tmp_path)
    reference = tmp_path / "reference"
    build_cache(config, reference, **OPTIONS)
    real_write = store_module._write_file
    calls = {"count": 0}

    def write_until_full(path, write):
        if path.name == failing:
            calls["count"] += 1
            # The manifest is written once at creation and once per shard: fail the one after shard 2.
            if failing.startswith("shard") or calls["count"] == 4:
                path.write_bytes(b"partial")  # a half-written file, as a full disk leaves it
                raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, write)

    monkeypatch.setattr(store_module, "_write_file", write_until_full)
    folder = tmp_path / "full-disk"
    with pytest.raises(CacheDiskFullError, match="disk full.*kdistill cache build` again to resume"):
        build_cache(config, folder, **OPTIONS)
    assert not list(folder.glob("*.tmp"))
    assert cache_info(folder)["complete_shards"] == 2
    with pytest.raises(CacheIncompleteError):
        open_cached_teacher(folder, config, splits)

    monkeypatch.setattr(store_module, "_write_file", real_write)
    build_cache(config, folder, **OPTIONS)
    assert store_bytes(folder) == store_bytes(reference)
    open_cached_teacher(folder, config, splits)
