"""Function matching (Beyer et al., CVPR 2022, arXiv:2106.05237): teacher and student see the same strongly
augmented batch (random-resized crops, mixup, cutmix), so the student matches the teacher's function on many more
inputs than the training images.

Everything is drawn from seeds, never from a global generator: a sample's crop from (seed, epoch, index), a batch's
mixing from (seed, epoch, step). So a teacher cache can precompute the teacher on exactly the batches a later run
will see (``kdistill cache build`` stores one row per (sample, epoch) and a ``MixRecord`` of the draws), and a
cached run equals a live-teacher run with the same seed. Mixing follows timm (``timm.data.mixup``): the partner of
item j is item B-1-j of the batch (``flip(0)``), the mixed labels come from ``mixup_target`` and the cutmix box and
corrected lambda from ``cutmix_bbox_and_lam`` (run under a seeded numpy state: timm draws from numpy's global one).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from timm.data.mixup import cutmix_bbox_and_lam, mixup_target

from kdistill.config import DataConfig, RunConfig
from kdistill.data.base import DataSplits, RandomCropFlip
from kdistill.errors import ConfigError, DataError

PARAMS_PER_SAMPLE = 7  # (top, left, height, width) of the resized crop, (dy, dx, flip) of the pad-crop-flip


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from any parts: independent of batch order, workers and devices."""
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class SampleAugment:
    """Per-sample random-resized crop (resized back to the input size), then pad-crop and horizontal flip."""

    def __init__(self, config: DataConfig) -> None:
        self.scale = config.random_resized_crop_scale
        self.crop_flip = RandomCropFlip(config.augment_crop_padding, config.augment_hflip)

    @property
    def active(self) -> bool:
        return self.scale is not None or self.crop_flip.active

    def sample(self, generator: torch.Generator, height: int, width: int) -> tuple[int, ...]:
        top, left, crop_h, crop_w = 0, 0, height, width
        if self.scale is not None:
            top, left, crop_h, crop_w = self._resized_crop(generator, height, width)
        return (top, left, crop_h, crop_w, *self.crop_flip.sample(generator))

    def _resized_crop(self, generator: torch.Generator, height: int, width: int) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop.get_params (aspect ratio 3/4-4/3) with an explicit generator."""
        area, log_ratio = height * width, (math.log(3 / 4), math.log(4 / 3))
        for _ in range(10):
            low, high = self.scale
            target = area * (low + (high - low) * torch.rand((), generator=generator).item())
            ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * torch.rand((), generator=generator).item())
            crop_w, crop_h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                top = int(torch.randint(0, height - crop_h + 1, (), generator=generator))
                left = int(torch.randint(0, width - crop_w + 1, (), generator=generator))
                return top, left, crop_h, crop_w
        return 0, 0, height, width

    def apply(self, image: torch.Tensor, params: tuple[int, ...]) -> torch.Tensor:
        top, left, crop_h, crop_w = params[:4]
        height, width = image.shape[-2:]
        if (crop_h, crop_w) != (height, width):
            crop = image[None, :, top : top + crop_h, left : left + crop_w]  # (1, C, h, w)
            image = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)[0]
        return self.crop_flip.apply(image, tuple(params[4:]))


@dataclass(frozen=True)
class MixDraw:
    """One batch's mixing: kind ``none`` | ``mixup`` | ``cutmix``, lambda, cutmix box (y0, y1, x0, x1)."""

    kind: str
    lam: float
    box: tuple[int, int, int, int] | None = None


@contextlib.contextmanager
def _numpy_global_seed(seed: int):
    """timm's cutmix box comes from numpy's global generator: seed it for the call, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


@dataclass
class MixRecord:
    """The draws of a run, per (epoch, sample): mixing partner, lambda and crop parameters (replay + audit)."""

    partner: np.ndarray  # (E, N) int64, -1 where not drawn yet
    lam: np.ndarray  # (E, N) float64
    params: np.ndarray  # (E, N, PARAMS_PER_SAMPLE) int32

    @classmethod
    def empty(cls, epochs: int, samples: int) -> MixRecord:
        return cls(np.full((epochs, samples), -1, np.int64), np.zeros((epochs, samples)),
                   np.zeros((epochs, samples, PARAMS_PER_SAMPLE), np.int32))

    @property
    def epochs(self) -> int:
        return self.partner.shape[0]


class BatchMixer:
    """``mixer(batch, epoch, step)``: the batch both teacher and student see at that step of that epoch.

    Adds ``soft_target`` (B, C) mixed labels, narrows ``labeled`` to items whose partner is labelled too (a mixed
    label needs both labels), and sets ``view`` to the epoch (a function-matching cache stores a row per epoch).
    ``expected``: a MixRecord to check the draws against (a cached run): another batch order or option is an error.
    """

    def __init__(self, config: DataConfig, num_classes: int, seed: int, expected: MixRecord | None = None) -> None:
        self.config, self.num_classes, self.seed = config, num_classes, seed
        self.augment = SampleAugment(config)
        self.expected = expected

    def draw(self, epoch: int, step: int, shape: tuple[int, ...]) -> MixDraw:
        c = self.config
        rng = np.random.default_rng(derived_seed(self.seed, "mix", epoch, step))
        if (c.mixup_alpha == 0 and c.cutmix_alpha == 0) or rng.random() >= c.mix_prob:
            return MixDraw("none", 1.0)
        cutmix = c.cutmix_alpha > 0 and (c.mixup_alpha == 0 or rng.random() < 0.5)  # timm's switch_prob 0.5
        lam = float(rng.beta(c.cutmix_alpha, c.cutmix_alpha) if cutmix else rng.beta(c.mixup_alpha, c.mixup_alpha))
        if not cutmix:
            return MixDraw("mixup", lam)
        with _numpy_global_seed(int(rng.integers(2**32))):
            (y0, y1, x0, x1), lam = cutmix_bbox_and_lam(shape, lam, correct_lam=True)
        return MixDraw("cutmix", float(lam), (int(y0), int(y1), int(x0), int(x1)))

    def __call__(self, batch: dict[str, torch.Tensor], epoch: int, step: int,
                 record: MixRecord | None = None) -> dict[str, torch.Tensor]:
        inputs, index = batch["input"], batch["index"]
        params = self.sample_params(index, epoch, tuple(inputs.shape[-2:])) if self.augment.active else None
        if params is not None:
            crops = zip(inputs, params.tolist(), strict=True)
            inputs = torch.stack([self.augment.apply(image, p) for image, p in crops])
        mix = self.draw(epoch, step, tuple(inputs.shape))
        labeled = batch["labeled"] if "labeled" in batch else batch["target"] >= 0  # hidden targets are -1
        if mix.kind == "mixup":
            inputs = inputs * mix.lam + inputs.flip(0) * (1.0 - mix.lam)
        elif mix.kind == "cutmix":
            y0, y1, x0, x1 = mix.box
            inputs = inputs.clone()
            inputs[..., y0:y1, x0:x1] = inputs.flip(0)[..., y0:y1, x0:x1]
        if mix.kind != "none":
            labeled = labeled & labeled.flip(0)
        partner = index.flip(0) if mix.kind != "none" else index
        self._check_or_record(epoch, index, partner, mix.lam, params, record)
        soft = mixup_target(batch["target"].clamp_min(0), self.num_classes, mix.lam, smoothing=0.0)
        view = torch.full_like(index, epoch)
        return {**batch, "input": inputs, "soft_target": soft, "labeled": labeled, "view": view}

    def sample_params(self, index: torch.Tensor, epoch: int, size: tuple[int, int]) -> torch.Tensor:
        """(B, PARAMS_PER_SAMPLE) crop parameters, each sample's from its own (seed, epoch, index) generator."""
        rows = []
        for sample in index.tolist():
            generator = torch.Generator().manual_seed(derived_seed(self.seed, "crop", epoch, sample))
            rows.append(self.augment.sample(generator, *size))
        return torch.tensor(rows, dtype=torch.int32)

    def _check_or_record(self, epoch, index, partner, lam, params, record: MixRecord | None) -> None:
        index, partner = index.cpu().numpy(), partner.cpu().numpy()
        if record is not None:
            record.partner[epoch, index], record.lam[epoch, index] = partner, lam
            if params is not None:
                record.params[epoch, index] = params.numpy()
        expected = self.expected
        if expected is None:
            return
        if epoch >= expected.epochs:
            raise DataError(f"the teacher cache holds function-matching batches for {expected.epochs} epochs; this "
                            f"run reached epoch {epoch + 1}: rebuild the cache with trainer.epochs >= the run's")
        if not (np.array_equal(expected.partner[epoch, index], partner)
                and np.allclose(expected.lam[epoch, index], lam, rtol=0, atol=1e-12)):
            raise DataError("this run's mixed batches differ from the ones the teacher cache was built on (same seed, "
                            "trainer.batch_size and data options needed); rebuild the cache for this run")


class FunctionMatchingTransform:
    """The trainer's ``batch_transform`` protocol around a BatchMixer: counts micro-batches within each epoch."""

    def __init__(self, mixer: BatchMixer) -> None:
        self.mixer, self.epoch, self.step = mixer, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0

    def __call__(self, student, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mixed = self.mixer(batch, self.epoch, self.step)
        self.step += 1
        return mixed


def check_function_matching(config: DataConfig, splits: DataSplits) -> None:
    needs_images = config.cutmix_alpha > 0 or config.random_resized_crop_scale is not None
    if needs_images and len(splits.input_shape) != 3:
        raise ConfigError(f"data.cutmix_alpha/random_resized_crop_scale need image inputs (C, H, W); "
                          f"{config.name!r} gives {splits.input_shape}")


def function_matching_transform(config: RunConfig, splits: DataSplits) -> FunctionMatchingTransform | None:
    """The batch transform of a run with mixup/cutmix/random-resized crops (None when they are off).

    With a cache teacher (``kind: cache``) the cache's MixRecord is loaded and every batch is checked against it.
    """
    if not config.data.function_matching:
        return None
    check_function_matching(config.data, splits)
    expected = None
    store = getattr(config.teacher, "dir", None)  # the stored views of a cache teacher
    if store is not None:
        from kdistill.cache.build import read_mixing_record

        expected = read_mixing_record(store, config)
    return FunctionMatchingTransform(BatchMixer(config.data, splits.num_classes, config.seed, expected))
