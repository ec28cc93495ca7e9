"""Issue 19 point 3, the input side: NaN in a CSV or in saved weights is refused by name, never used silently."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdistill.config import DataConfig
from kdistill.data import load_data
from kdistill.errors import CheckpointError, DataError
from kdistill.models.weights import load_weights, save_weights


def _csv(tmp_path, rows: list[str]) -> str:
    path = tmp_path / "t.csv"
    path.write_text("\n".join(["a,b,label", *rows]) + "\n")
    return f"csv:{path}"


GOOD = [f"{i},{i * 2},{i % 2}" for i in range(20)]


def test_a_clean_csv_loads(tmp_path) -> None:
    assert load_data(DataConfig(name=_csv(tmp_path, GOOD))).num_classes == 2


@pytest.mark.parametrize("bad_row, where", [("1,nan,0", r"column\(s\) b"), ("inf,1,1", r"column\(s\) a")])
def test_a_non_finite_feature_is_refused_naming_row_and_column(tmp_path, bad_row, where) -> None:
    with pytest.raises(DataError, match=rf"t.csv:22: non-finite value in {where}"):
        load_data(DataConfig(name=_csv(tmp_path, [*GOOD, bad_row])))


@pytest.mark.parametrize("label", ["nan", "", "inf"])
def test_a_missing_or_nan_label_is_refused_not_a_new_class(tmp_path, label) -> None:
    with pytest.raises(DataError, match=r"t.csv:22: label .* is missing or not finite"):
        load_data(DataConfig(name=_csv(tmp_path, [*GOOD, f"1,2,{label}"])))


def test_weights_holding_nan_are_refused_naming_the_tensor(tmp_path) -> None:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.bias[0] = float("nan")
    save_weights(model, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="NaN or infinite values in 1 tensor.*bias"):
        load_weights(nn.Linear(3, 2), tmp_path / "w.safetensors")
