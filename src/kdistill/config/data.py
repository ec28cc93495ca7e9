"""The ``data`` section: where the samples come from and how they are split, normalised and augmented."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kdistill.config.base import SEED_LIMIT, Section


class DataConfig(Section):
    """Where the samples come from and how they are split and transformed."""

    name: str = Field("digits", description="digits | fashion-mnist | imagefolder:<path> | csv:<path>")
    root: str | None = Field(None, description="folder with the data files (fashion-mnist IDX files)")
    label_column: str = Field("label", description="csv: name of the label column")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of the training split held out for validation")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share held out for test when the source has none")
    train_fraction: float = Field(1.0, gt=0.0, le=1.0, description="use only this share of the training split")
    normalize: bool = Field(True, description="standardise inputs with mean/std of the training split")
    augment_crop_padding: int = Field(0, ge=0, description="random crop after padding by this many pixels (0: off)")
    augment_hflip: bool = Field(False, description="random horizontal flip")
    image_size: int | None = Field(None, gt=0, description="imagefolder: resize images to this square size")
    split_seed: int = Field(
        0, ge=0, lt=SEED_LIMIT - 2, description="seed of the train/val/test split (kept apart from the training seed)"
    )
    # Text data (language models)
    max_length: int = Field(128, gt=0, description="text: tokens per sequence")
    on_overlong: Literal["truncate", "error"] = Field(
        "truncate", description="text: longer sequences are cut (with a warning) or refused"
    )
    text_field: str = Field("text", description="jsonl: field with the text (or use prompt/completion fields)")
    tokenizer: str | None = Field(None, description="text: tokenizer (default: the student's)")
    # Transfer sets (few labels + unlabelled inputs) and function matching; see docs/data.md
    mean: list[float] | None = Field(
        None, description="fixed normalisation mean per channel (default: the training split's)"
    )
    std: list[float] | None = Field(None, description="fixed normalisation std per channel (with data.mean)")
    labeled_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="keep labels for this stratified share of the training split (seeded by "
        "split_seed); the rest is unlabelled: distillation terms only, left out of plain training"
    )
    unlabeled: str | None = Field(None, description="a second data source added to the training split without labels")
    mixup_alpha: float = Field(0.0, ge=0.0, description="mixup: lambda ~ Beta(alpha, alpha) per batch (0: off)")
    cutmix_alpha: float = Field(0.0, ge=0.0, description="cutmix: lambda ~ Beta(alpha, alpha) per batch (0: off)")
    mix_prob: float = Field(1.0, ge=0.0, le=1.0, description="share of training batches that are mixed")
    random_resized_crop_scale: list[float] | None = Field(
        None, description="random-resized crop area range, e.g. [0.35, 1.0] (None: off), applied per sample"
    )

    @model_validator(mode="after")
    def _check_transfer_options(self) -> DataConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("data.mean and data.std go together: set both or neither")
        if self.std is not None and (not self.std or min(self.std) <= 0 or len(self.std) != len(self.mean or [])):
            raise ValueError(f"data.std must be positive and as long as data.mean, got mean {self.mean} std {self.std}")
        if self.mean is not None and not self.normalize:
            raise ValueError("data.mean/data.std need data.normalize: true")
        scale = self.random_resized_crop_scale
        if scale is not None and not (len(scale) == 2 and 0.0 < scale[0] <= scale[1] <= 1.0):
            raise ValueError(f"data.random_resized_crop_scale must be [min, max] with 0 < min <= max <= 1, got {scale}")
        return self

    @property
    def function_matching(self) -> bool:
        """Batch-level augmentation (mixup, cutmix, random-resized crops) that teacher and student both see."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0 or self.random_resized_crop_scale is not None
