"""The shipped few-labels and function-matching recipes validate and mean what their names say."""

from __future__ import annotations

from pathlib import Path

from kdistill.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_few_labels_recipes_hide_95_percent_of_the_labels() -> None:
    for name in ("digits_few_labels.yaml", "fmnist_few_labels.yaml"):
        config = load_config(CONFIGS / name)
        assert config.data.labeled_fraction == 0.05 and config.teacher is not None
        assert not config.data.function_matching


def test_function_matching_recipe_mixes_and_crops() -> None:
    config = load_config(CONFIGS / "fmnist_function_matching.yaml")
    assert config.data.function_matching and config.data.mixup_alpha > 0 and config.data.cutmix_alpha > 0
    assert config.data.random_resized_crop_scale == [0.35, 1.0] and config.distill.alpha == 0.0
