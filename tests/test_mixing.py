"""Function matching: seeded mixup/cutmix/resized crops on the batch both models see, replayed exactly by a cache."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from kdistill import api
from kdistill.cache import CacheMismatchError, build_cache
from kdistill.config import DataConfig, load_config
from kdistill.data import load_data
from kdistill.data.mixing import BatchMixer, SampleAugment
from kdistill.models import build_model, save_weights

MIXING = ["data.mixup_alpha=0.4", "data.cutmix_alpha=1.0", "data.mix_prob=0.8",
          "data.random_resized_crop_scale=[0.35, 1.0]", "data.augment_crop_padding=1", "data.augment_hflip=true"]


def _batch(count: int = 6, labeled: list[bool] | None = None) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    batch = {"input": torch.rand(count, 1, 8, 8, generator=generator), "target": torch.arange(count) % 3,
             "index": torch.arange(10, 10 + count)}
    if labeled is not None:
        batch["labeled"] = torch.tensor(labeled)
    return batch


def _mixer(**options) -> BatchMixer:
    return BatchMixer(DataConfig(**options), num_classes=3, seed=0)


def _step_with(mixer: BatchMixer, kind: str) -> int:
    return next(step for step in range(100) if mixer.draw(0, step, (6, 1, 8, 8)).kind == kind)


def test_mixup_mixes_each_item_with_its_flipped_partner() -> None:
    mixer, batch = _mixer(mixup_alpha=0.4), _batch()
    step = _step_with(mixer, "mixup")
    lam = mixer.draw(0, step, (6, 1, 8, 8)).lam
    mixed = mixer(batch, epoch=0, step=step)
    expected = lam * batch["input"] + (1 - lam) * batch["input"].flip(0)
    torch.testing.assert_close(mixed["input"], expected)
    one_hot = torch.nn.functional.one_hot(batch["target"], 3).float()
    torch.testing.assert_close(mixed["soft_target"], lam * one_hot + (1 - lam) * one_hot.flip(0))
    assert 0.0 < lam < 1.0 and mixed["view"].tolist() == [0] * 6


def test_cutmix_pastes_the_partner_box_and_corrects_lambda() -> None:
    mixer, batch = _mixer(cutmix_alpha=1.0), _batch()
    step = _step_with(mixer, "cutmix")
    draw = mixer.draw(0, step, (6, 1, 8, 8))
    y0, y1, x0, x1 = draw.box
    mixed = mixer(batch, epoch=0, step=step)["input"]
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    assert torch.equal(mixed[..., inside], batch["input"].flip(0)[..., inside])
    assert torch.equal(mixed[..., ~inside], batch["input"][..., ~inside])
    assert draw.lam == pytest.approx(1 - inside.sum().item() / 64)


def test_draws_are_seeded_by_epoch_and_step_not_by_global_state() -> None:
    mixer = _mixer(mixup_alpha=0.4, cutmix_alpha=1.0, random_resized_crop_scale=[0.35, 1.0])
    torch.manual_seed(123)
    first = mixer(_batch(), epoch=2, step=5)
    torch.manual_seed(456)
    again = mixer(_batch(), epoch=2, step=5)
    assert torch.equal(first["input"], again["input"])
    other = mixer(_batch(), epoch=3, step=5)
    assert not torch.equal(first["input"], other["input"])


def test_mixed_labels_need_both_partners_labelled() -> None:
    mixer = _mixer(mixup_alpha=0.4, mix_prob=0.5)
    labeled = [True, True, False, True, True, True]  # partner of item 3 is item 2 (flip of 6 items)
    mixed = mixer(_batch(labeled=labeled), epoch=0, step=_step_with(mixer, "mixup"))
    assert mixed["labeled"].tolist() == [True, True, False, False, True, True]
    unmixed = mixer(_batch(labeled=labeled), epoch=0, step=_step_with(mixer, "none"))
    assert unmixed["labeled"].tolist() == labeled


def test_resized_crop_stays_inside_the_image_and_keeps_the_size() -> None:
    augment = SampleAugment(DataConfig(random_resized_crop_scale=[0.35, 1.0]))
    for seed in range(50):
        top, left, height, width, *_ = augment.sample(torch.Generator().manual_seed(seed), 28, 28)
        assert 0 <= top and top + height <= 28 and 0 <= left and left + width <= 28
        assert 0.35 * 784 * 0.9 <= height * width <= 784
    image = torch.rand(1, 28, 28)
    assert augment.apply(image, (4, 2, 14, 20, 0, 0, 0)).shape == (1, 28, 28)
    assert torch.equal(augment.apply(image, (0, 0, 28, 28, 0, 0, 1)), image.flip(-1))


def test_config_checks_the_options() -> None:
    with pytest.raises(Exception, match="random_resized_crop_scale"):
        load_config(None, ["data.random_resized_crop_scale=[0.5, 0.2]"])
    with pytest.raises(Exception, match="mixup_alpha"):
        load_config(None, ["data.mixup_alpha=-1"])


@pytest.fixture(scope="module")
def teacher_weights(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("teacher")
    splits = load_data(DataConfig(name="digits"))
    torch.manual_seed(0)
    model = build_model(load_config(None, ["student.name=cnn", "student.kwargs={width: 8}"]).student,
                        splits.input_shape, splits.num_classes)
    return str(save_weights(model, folder / "teacher.safetensors"))


def _distill_config(tmp_path, teacher: str, name: str, extra: list[str] = ()):
    return load_config(None, [f"name={name}", f"output_dir={tmp_path}", "data.train_fraction=0.3",
                              "data.labeled_fraction=0.5", *MIXING, "student.name=mlp", "student.kwargs={width: 16}",
                              "teacher.name=cnn", "teacher.kwargs={width: 8}", f"teacher.weights={teacher}",
                              "trainer.epochs=2", "trainer.batch_size=32", "trainer.progress=false", *extra])


def test_cached_function_matching_run_equals_live_run(tmp_path, teacher_weights) -> None:
    live_config = _distill_config(tmp_path, teacher_weights, "live")
    build_cache(live_config, tmp_path / "cache", precision="float32")
    live = api.distill(live_config)
    cached = api.distill(_distill_config(tmp_path, teacher_weights, "cached",
                                         [f"teacher.name=cache:{tmp_path / 'cache'}"]))
    live_weights, cached_weights = (load_file(str(r.run_dir / "student.safetensors")) for r in (live, cached))
    assert live_weights.keys() == cached_weights.keys()
    for key, value in live_weights.items():
        torch.testing.assert_close(cached_weights[key], value, rtol=0, atol=1e-5)
    start = load_file(str(live.run_dir / "checkpoints/last/student.safetensors"))
    assert start.keys() == live_weights.keys()
    assert live.metrics["train_labeled"] + live.metrics["train_unlabeled"] == cached.metrics["train_unlabeled"] + \
        cached.metrics["train_labeled"]


@pytest.mark.parametrize("change", ["seed=1", "trainer.batch_size=16", "data.mixup_alpha=0.2", "trainer.epochs=3"])
def test_a_cache_for_other_batches_is_refused(tmp_path, teacher_weights, change) -> None:
    build_cache(_distill_config(tmp_path, teacher_weights, "build"), tmp_path / "cache", precision="float32")
    config = _distill_config(tmp_path, teacher_weights, "other", [f"teacher.name=cache:{tmp_path / 'cache'}", change])
    with pytest.raises(CacheMismatchError, match="other batches"):
        api.distill(config)
    assert not (tmp_path / "other").exists()  # refused before the run folder is made
