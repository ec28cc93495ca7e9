"""Replayed cache views at batch level: the same (input, view) as the item-by-item definition, views drawn per
(seed, epoch) so DataLoader workers and a resumed run pick the same ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, default_collate

from kdistill import api
from kdistill.cache import ReplayViews, build_cache, open_cached_teacher
from kdistill.cache.teacher import crop_flip_batch
from kdistill.config import load_config
from kdistill.data import load_data
from kdistill.data.base import RandomCropFlip
from kdistill.models import build_model, save_weights
from kdistill.training.sampling import ShardSampler

VIEWS = 3
AUGMENT = ["data.augment_crop_padding=2", "data.augment_hflip=true"]


def _config(tmp_path, name: str, extra: list[str] = ()):
    return load_config(None, [f"name={name}", f"output_dir={tmp_path}", "data.name=digits", *AUGMENT,
                              "student.name=mlp", "student.kwargs={width: 8, depth: 1}", "trainer.epochs=2",
                              "trainer.batch_size=64", "trainer.progress=false", "trainer.accelerator=cpu",
                              "distill.alpha=0.3", *extra])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A 3-view store of a small MLP teacher on augmented digits; returns (folder, teacher weights)."""
    folder = tmp_path_factory.mktemp("replay")
    config = _config(folder, "build", ["teacher.name=mlp", "teacher.kwargs={width: 16}"])
    splits = load_data(config.data)
    torch.manual_seed(0)
    model = build_model(config.teacher, splits.input_shape, splits.num_classes)
    weights = save_weights(model, folder / "teacher.safetensors")
    build_cache(config.model_copy(update={"teacher": config.teacher.model_copy(update={"weights": str(weights)})}),
                folder / "cache", views=VIEWS, shard_size=300)
    return folder / "cache", weights


def _replay(tmp_path, cache_dir, seed: int = 0) -> tuple[ReplayViews, object]:
    config = _config(tmp_path, "run", [f"teacher.name=cache:{cache_dir}", f"seed={seed}"])
    splits = load_data(config.data)
    teacher = open_cached_teacher(cache_dir, config, splits)
    return teacher.train_dataset(splits.train), teacher


def test_batch_replay_equals_the_item_definition_for_a_seeded_epoch(tmp_path, cache) -> None:
    dataset, teacher = _replay(tmp_path, cache[0])
    raw, augment = dataset.dataset.inputs, dataset.dataset.augment
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        sampler = ShardSampler(len(dataset), seed=0)
        sampler.start_epoch(epoch)
        order = list(sampler)
        for start in range(0, len(order), 200):
            indices = order[start : start + 200]
            batch = dataset.__getitems__(indices)
            items = default_collate([dataset[i] for i in indices])
            assert batch.keys() == items.keys()
            for key, value in items.items():
                assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), key
            # ... and both are the stored view: its parameters, read from the store, applied to the raw image.
            rows = teacher.store.read_rows(np.asarray(indices) * VIEWS + batch["view"].numpy())
            for position, (index, params) in enumerate(zip(indices, rows["params"].tolist(), strict=True)):
                assert torch.equal(batch["input"][position], augment.apply(raw[index], tuple(params)))
    first, second = dataset.epoch_views(0), dataset.epoch_views(1)
    assert set(first.tolist()) == set(range(VIEWS)) and not torch.equal(first, second)  # every view, new per epoch
    other_seed, _ = _replay(tmp_path, cache[0], seed=1)
    assert not torch.equal(other_seed.epoch_views(0), first)


@pytest.mark.parametrize("padding, hflip, shape", [(2, True, (1, 8, 8)), (0, True, (3, 5, 7)), (3, False, (2, 6, 4))])
def test_crop_flip_batch_equals_random_crop_flip_per_image(padding, hflip, shape) -> None:
    augment = RandomCropFlip(padding, hflip)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(40, *shape, generator=generator)
    params = [augment.sample(generator) for _ in images]
    batch = crop_flip_batch(images, torch.tensor(params), padding)
    expected = torch.stack([augment.apply(image, p) for image, p in zip(images, params, strict=True)])
    assert torch.equal(batch, expected)
    assert len({p[2] for p in params}) == (2 if hflip else 1)  # both flip cases were covered


def test_loader_workers_follow_the_epoch_set_in_the_main_process(tmp_path, cache) -> None:
    dataset, _ = _replay(tmp_path, cache[0])
    sampler = ShardSampler(len(dataset), seed=0)
    loaders = [DataLoader(dataset, batch_size=100, sampler=sampler, collate_fn=ReplayViews.collate_fn,
                          num_workers=workers, persistent_workers=workers > 0) for workers in (0, 1)]
    for epoch in (0, 1, 2):
        dataset.set_epoch(epoch)
        sampler.start_epoch(epoch, skip=300 if epoch == 2 else 0)  # epoch 2 as a resumed run starts it
        in_process, in_worker = (list(loader) for loader in loaders)
        expected = dataset.epoch_views(epoch)
        for one, other in zip(in_process, in_worker, strict=True):
            assert torch.equal(one["input"], other["input"]) and torch.equal(one["view"], other["view"])
            assert torch.equal(one["view"], expected[one["index"]])


class CrashMidEpoch:
    """Raises at one step of epoch 2 (after a step checkpoint) and records every (epoch, index, view) trained on."""

    def __init__(self, step: int | None) -> None:
        self.step, self.seen = step, []

    def on_train_batch_start(self, epoch: int, step: int, raw_batches: list, **_) -> None:
        if epoch == 2 and step == self.step:
            raise RuntimeError("simulated crash")
        for batch in raw_batches:
            self.seen += [(epoch, int(i), int(v)) for i, v in zip(batch["index"], batch["view"], strict=True)]


def test_a_resumed_cached_run_replays_the_same_views_and_ends_bit_identical(tmp_path, cache) -> None:
    extra = [f"teacher.name=cache:{cache[0]}", f"teacher.weights={cache[1]}", "trainer.checkpoint_every_steps=4"]
    full = CrashMidEpoch(step=None)
    api.distill(_config(tmp_path, "full", extra), callbacks=[full])
    crashed = CrashMidEpoch(step=10)  # 21 steps per epoch; the last checkpoint before it is at step 8
    with pytest.raises(RuntimeError, match="simulated crash"):
        api.distill(_config(tmp_path, "crashed", extra), callbacks=[crashed])
    resumed = CrashMidEpoch(step=None)
    api.distill(_config(tmp_path, "crashed", extra), resume=True, callbacks=[resumed])
    a, b = (load_file(str(tmp_path / name / "student.safetensors")) for name in ("full", "crashed"))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert resumed.seen[0][0] == 2 and resumed.seen == full.seen[-len(resumed.seen):]  # from step 9 of epoch 2 on
    dataset, _ = _replay(tmp_path, cache[0])
    for epoch in (1, 2):
        views = dataset.epoch_views(epoch - 1)
        assert all(view == int(views[index]) for e, index, view in full.seen if e == epoch)
