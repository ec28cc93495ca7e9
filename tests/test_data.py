"""Data sources: splits, normalisation, augmentation replay, and the readers (IDX, CSV, image folders)."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from kdistill.config import DataConfig
from kdistill.data import RandomCropFlip, load_data
from kdistill.data import fashion_mnist as fm
from kdistill.data.base import split_indices
from kdistill.errors import DataError, RegistryError


def _rows(dataset) -> list[bytes]:
    return [dataset[i]["input"].numpy().tobytes() for i in range(len(dataset))]


def _targets(dataset) -> list[int]:
    return [int(dataset[i]["target"]) for i in range(len(dataset))]


@pytest.fixture(scope="module")
def raw_digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0, torch.tensor(bunch.target)


# ----- splits -----


def test_split_indices_partition_and_stratify() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    test, val, rest = split_indices(len(labels), [0.2, 0.1], seed=5, stratify=labels)
    together = torch.cat([test, val, rest]).tolist()
    assert sorted(together) == list(range(100))  # disjoint and complete
    assert Counter(labels[test].tolist()) == {0: 10, 1: 6, 2: 4}
    assert Counter(labels[val].tolist()) == {0: 5, 1: 3, 2: 2}
    again = split_indices(len(labels), [0.2, 0.1], seed=5, stratify=labels)
    assert all(torch.equal(a, b) for a, b in zip(again, [test, val, rest], strict=True))
    other = split_indices(len(labels), [0.2, 0.1], seed=6, stratify=labels)
    assert not torch.equal(other[0], test)


def test_digits_splits_are_a_stratified_partition(raw_digits) -> None:
    images, targets = raw_digits
    splits = load_data(DataConfig(name="digits", val_fraction=0.1, test_fraction=0.2, normalize=False))
    assert splits.num_classes == 10 and splits.input_shape == (1, 8, 8)
    sizes = len(splits.train), len(splits.val), len(splits.test)
    assert sum(sizes) == len(images) == 1797
    # Each original sample lands in exactly one split (multisets, since a few digits images are duplicates).
    pooled = Counter(_rows(splits.train) + _rows(splits.val) + _rows(splits.test))
    assert pooled == Counter(images[i].numpy().tobytes() for i in range(len(images)))
    # Sizes follow the fractions (rounding per class moves each by at most one sample per class).
    assert abs(sizes[2] - 0.2 * 1797) <= 10
    assert abs(sizes[1] - 0.1 * (1797 - sizes[2])) <= 10
    # Stratified: every class keeps its share in the test split.
    per_class = Counter(targets.tolist())
    test_per_class = Counter(_targets(splits.test))
    for label, count in per_class.items():
        assert abs(test_per_class[label] - 0.2 * count) <= 1


def test_split_seed_changes_the_split() -> None:
    a = load_data(DataConfig(name="digits", normalize=False))
    b = load_data(DataConfig(name="digits", normalize=False, split_seed=1))
    assert _rows(a.test) != _rows(b.test)
    assert _rows(a.test) == _rows(load_data(DataConfig(name="digits", normalize=False)).test)


def test_train_fraction_subsamples_train_only() -> None:
    full = load_data(DataConfig(name="digits", normalize=False))
    half = load_data(DataConfig(name="digits", normalize=False, train_fraction=0.5))
    assert abs(len(half.train) - 0.5 * len(full.train)) <= 10
    assert not Counter(_rows(half.train)) - Counter(_rows(full.train))  # a subset of the full training split
    assert _rows(half.val) == _rows(full.val)
    assert _rows(half.test) == _rows(full.test)
    for label, count in Counter(_targets(full.train)).items():
        assert abs(Counter(_targets(half.train))[label] - 0.5 * count) <= 1


def test_normalisation_uses_training_statistics() -> None:
    raw = load_data(DataConfig(name="digits", normalize=False))
    norm = load_data(DataConfig(name="digits", normalize=True))
    train_raw = raw.train.inputs
    mean = train_raw.mean()
    std = train_raw.std()
    torch.testing.assert_close(norm.train.inputs, (train_raw - mean) / std)
    torch.testing.assert_close(norm.test.inputs, (raw.test.inputs - mean) / std)
    torch.testing.assert_close(norm.val.inputs, (raw.val.inputs - mean) / std)
    assert abs(float(norm.train.inputs.mean())) < 1e-5
    assert abs(float(norm.test.inputs.mean())) > 1e-4  # test statistics were not used


def test_normalisation_per_feature_for_tabular(tmp_path) -> None:
    path = tmp_path / "t.csv"
    rows = ["a,b,label"] + [f"{i},{100 + 10 * i},{i % 2}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    splits = load_data(DataConfig(name=f"csv:{path}", val_fraction=0.0, test_fraction=0.25))
    torch.testing.assert_close(splits.train.inputs.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(splits.train.inputs.std(0), torch.ones(2), atol=1e-5, rtol=0)


def test_unknown_data_name_suggests() -> None:
    with pytest.raises(RegistryError, match="did you mean 'digits'"):
        load_data(DataConfig(name="digts"))


@pytest.mark.parametrize("name", ["csv", "imagefolder"])
def test_path_sources_need_a_path(name: str) -> None:
    with pytest.raises(DataError, match="needs a path"):
        load_data(DataConfig(name=name))


# ----- augmentation -----


def _manual_pad_crop_flip(image: list[list[float]], pad: int, dy: int, dx: int, flip: bool) -> list[list[float]]:
    height, width = len(image), len(image[0])
    padded = [[0.0] * (width + 2 * pad) for _ in range(height + 2 * pad)]
    for y in range(height):
        for x in range(width):
            padded[y + pad][x + pad] = image[y][x]
    crop = [row[dx : dx + width] for row in padded[dy : dy + height]]
    return [list(reversed(row)) for row in crop] if flip else crop


@pytest.mark.parametrize("params", [(0, 0, 0), (1, 3, 1), (4, 4, 0), (2, 2, 1), (3, 0, 1)])
def test_random_crop_flip_apply_matches_manual(params: tuple[int, int, int]) -> None:
    image = torch.arange(1, 21, dtype=torch.float32).reshape(1, 4, 5)
    out = RandomCropFlip(padding=2, hflip=True).apply(image, params)
    dy, dx, flip = params
    expected = _manual_pad_crop_flip(image[0].tolist(), 2, dy, dx, bool(flip))
    assert out.shape == image.shape
    assert out[0].tolist() == expected


def test_random_crop_flip_identity_params_and_sampling() -> None:
    image = torch.randn(2, 6, 6)
    aug = RandomCropFlip(padding=1, hflip=False)
    assert torch.equal(aug.apply(image, (1, 1, 0)), image)  # offset == padding: the original image
    g = torch.Generator().manual_seed(0)
    draws = [aug.sample(g) for _ in range(200)]
    assert {d[2] for d in draws} == {0}
    assert {d[0] for d in draws} == {0, 1, 2} and {d[1] for d in draws} == {0, 1, 2}
    flips = {RandomCropFlip(0, True).sample(g)[2] for _ in range(100)}
    assert flips == {0, 1}


def test_augmentation_only_on_training_split() -> None:
    splits = load_data(DataConfig(name="digits", augment_crop_padding=2, augment_hflip=True))
    assert splits.train.augment is not None
    assert splits.val.augment is None and splits.test.augment is None
    torch.manual_seed(0)
    views = {splits.train[0]["input"].numpy().tobytes() for _ in range(20)}
    assert len(views) > 1


# ----- Fashion-MNIST IDX reader -----


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_fake_fashion(folder: Path, gz: bool, train: int = 30, test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (train, 6, 6), dtype=np.uint8),
        "train_labels": np.arange(train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (test, 6, 6), dtype=np.uint8),
        "test_labels": np.arange(test, dtype=np.uint8) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in fm.FILES.items():
        data = _idx_bytes(arrays[key])
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


@pytest.fixture
def no_system_fashion(monkeypatch, tmp_path) -> None:
    """Hide the Debian copy and the user cache so only the folders a test names are searched."""
    monkeypatch.setattr(fm, "DEBIAN_DIR", str(tmp_path / "no-debian"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KDISTILL_DATA", raising=False)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_idx_files(tmp_path, no_system_fashion, gz: bool) -> None:
    arrays = _write_fake_fashion(tmp_path / "fm", gz=gz)
    splits = load_data(DataConfig(name="fashion-mnist", root=str(tmp_path / "fm"), val_fraction=0.2, normalize=False))
    assert splits.num_classes == 10 and splits.class_names[0] == "T-shirt/top"
    assert splits.input_shape == (1, 6, 6)
    assert len(splits.train) + len(splits.val) == 30 and len(splits.test) == 10
    expected_test = torch.from_numpy(arrays["test_images"]).float().unsqueeze(1) / 255.0
    torch.testing.assert_close(splits.test.inputs, expected_test)  # the file's own test split, in order
    assert splits.test.targets.tolist() == arrays["test_labels"].tolist()
    train_rows = Counter(_rows(splits.train) + _rows(splits.val))
    expected = torch.from_numpy(arrays["train_images"]).float().unsqueeze(1) / 255.0
    assert train_rows == Counter(expected[i].numpy().tobytes() for i in range(30))


def test_fashion_mnist_from_env_folder(tmp_path, no_system_fashion, monkeypatch) -> None:
    _write_fake_fashion(tmp_path / "env", gz=True, train=20, test=5)
    monkeypatch.setenv("KDISTILL_DATA", str(tmp_path / "env"))
    splits = load_data(DataConfig(name="fashion-mnist", val_fraction=0.25))
    assert len(splits.train) + len(splits.val) == 20 and len(splits.test) == 5


def test_fashion_mnist_root_wins_over_env(tmp_path, no_system_fashion, monkeypatch) -> None:
    _write_fake_fashion(tmp_path / "env", gz=True, train=20, test=5)
    _write_fake_fashion(tmp_path / "root", gz=False, train=30, test=10)
    monkeypatch.setenv("KDISTILL_DATA", str(tmp_path / "env"))
    splits = load_data(DataConfig(name="fashion-mnist", root=str(tmp_path / "root")))
    assert len(splits.test) == 10


def test_truncated_idx_is_a_data_error(tmp_path, no_system_fashion) -> None:
    _write_fake_fashion(tmp_path / "fm", gz=False)
    path = tmp_path / "fm" / fm.FILES["train_images"]
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match="truncated"):
        load_data(DataConfig(name="fashion-mnist", root=str(tmp_path / "fm")))


def test_bad_magic_is_a_data_error(tmp_path, no_system_fashion) -> None:
    _write_fake_fashion(tmp_path / "fm", gz=False)
    (tmp_path / "fm" / fm.FILES["test_labels"]).write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="magic"):
        load_data(DataConfig(name="fashion-mnist", root=str(tmp_path / "fm")))


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, no_system_fashion) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        load_data(DataConfig(name="fashion-mnist", root=str(tmp_path / "empty")))
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path / "empty") in message
    assert "\n" not in message


REAL_FASHION = Path(fm.DEBIAN_DIR) / "train-images-idx3-ubyte.gz"


@pytest.mark.skipif(not REAL_FASHION.is_file(), reason="needs the Debian package dataset-fashion-mnist (make data)")
def test_real_fashion_mnist_sizes(monkeypatch) -> None:
    monkeypatch.delenv("KDISTILL_DATA", raising=False)
    arrays = fm.read_fashion_mnist(None)
    assert arrays["train_images"].shape == (60000, 28, 28)
    assert arrays["train_labels"].shape == (60000,)
    assert arrays["test_images"].shape == (10000, 28, 28)
    assert arrays["test_labels"].shape == (10000,)
    assert sorted(np.unique(arrays["train_labels"]).tolist()) == list(range(10))
    splits = load_data(DataConfig(name="fashion-mnist", val_fraction=5000 / 60000, normalize=False))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55000, 5000, 10000)
    assert splits.input_shape == (1, 28, 28)


# ----- CSV -----


def _write_csv(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return f"csv:{path}"


def test_csv_label_column_by_name_and_string_labels(tmp_path) -> None:
    lines = ["x1,species,x2"] + [f"{i},{['setosa', 'virginica', 'versicolor'][i % 3]},{i * 2}" for i in range(30)]
    name = _write_csv(tmp_path / "iris.csv", lines)
    splits = load_data(
        DataConfig(name=name, label_column="species", normalize=False, val_fraction=0.0, test_fraction=0.2)
    )
    assert splits.class_names == ["setosa", "versicolor", "virginica"]
    assert splits.num_classes == 3 and splits.input_shape == (2,)
    everything = torch.cat([splits.train.inputs, splits.val.inputs, splits.test.inputs])
    targets = torch.cat([splits.train.targets, splits.val.targets, splits.test.targets])
    assert len(everything) == 30
    for row, target in zip(everything.tolist(), targets.tolist(), strict=True):
        i = int(row[0])
        assert row == [float(i), float(2 * i)]  # label column removed, feature order kept
        assert splits.class_names[target] == ["setosa", "virginica", "versicolor"][i % 3]


def test_csv_numeric_labels_sort_numerically(tmp_path) -> None:
    name = _write_csv(tmp_path / "n.csv", ["f,label"] + [f"{i},{[10, 2, 1][i % 3]}" for i in range(12)])
    assert load_data(DataConfig(name=name, val_fraction=0.0)).class_names == ["1", "2", "10"]


def test_csv_non_numeric_feature_names_the_line(tmp_path) -> None:
    lines = ["a,b,label", "1,2,x", "3,4,y", "5,oops,x", "7,8,y"]
    with pytest.raises(DataError, match=r"bad\.csv:4: non-numeric"):
        load_data(DataConfig(name=_write_csv(tmp_path / "bad.csv", lines)))


def test_csv_wrong_field_count_names_the_line(tmp_path) -> None:
    lines = ["a,b,label", "1,2,x", "3,4,y", "5,6,x", "7,y"]
    with pytest.raises(DataError, match=r"bad\.csv:5: 2 fields, header has 3"):
        load_data(DataConfig(name=_write_csv(tmp_path / "bad.csv", lines)))


def test_csv_blank_lines_are_skipped(tmp_path) -> None:
    lines = ["a,b,label", "1,2,x", "", "3,4,y", "5,6,x", "7,8,y", "", ""]
    splits = load_data(DataConfig(name=_write_csv(tmp_path / "b.csv", lines), val_fraction=0.0, test_fraction=0.5))
    assert len(splits.train) + len(splits.test) == 4
    with pytest.raises(DataError, match="at least one data row"):
        load_data(DataConfig(name=_write_csv(tmp_path / "e.csv", ["a,label", "", ""])))


def test_csv_missing_label_column(tmp_path) -> None:
    name = _write_csv(tmp_path / "t.csv", ["a,b,target", "1,2,0", "3,4,1"])
    with pytest.raises(DataError, match=r"label column 'label' not in header.*data\.label_column"):
        load_data(DataConfig(name=name))


def test_csv_missing_file_and_header_only(tmp_path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_data(DataConfig(name=f"csv:{tmp_path / 'nope.csv'}"))
    with pytest.raises(DataError, match="header row and at least one data row"):
        load_data(DataConfig(name=_write_csv(tmp_path / "h.csv", ["a,label"])))


# ----- image folders -----


def _write_pngs(folder: Path, classes: dict[str, int], size: int = 6) -> None:
    from PIL import Image

    for index, (label, count) in enumerate(classes.items()):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            colour = (40 * index + i, 200 - 30 * index, 10 * i)
            Image.new("RGB", (size, size), colour).save(folder / label / f"{i}.png")


def test_imagefolder_one_folder_is_split(tmp_path) -> None:
    _write_pngs(tmp_path / "imgs", {"cat": 6, "dog": 4})
    splits = load_data(
        DataConfig(
            name=f"imagefolder:{tmp_path / 'imgs'}", image_size=4, val_fraction=0.0, test_fraction=0.5, normalize=False
        )
    )
    assert splits.class_names == ["cat", "dog"] and splits.num_classes == 2
    assert splits.input_shape == (3, 4, 4)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 10
    assert Counter(_targets(splits.test)) == {0: 3, 1: 2}
    # A uniform PNG resized stays uniform: the first cat image has colour (0, 200, 0).
    values = {tuple(round(float(c) * 255) for c in splits.test[i]["input"][:, 0, 0]) for i in range(len(splits.test))}
    assert values <= {(i, 200, 10 * i) for i in range(6)} | {(40 + i, 170, 10 * i) for i in range(4)}


def test_imagefolder_train_test_subfolders(tmp_path) -> None:
    _write_pngs(tmp_path / "set" / "train", {"a": 5, "b": 5, "c": 4})
    _write_pngs(tmp_path / "set" / "test", {"a": 2, "b": 1, "c": 1})
    splits = load_data(DataConfig(name=f"imagefolder:{tmp_path / 'set'}", image_size=5, val_fraction=0.2))
    assert splits.class_names == ["a", "b", "c"]
    assert len(splits.test) == 4 and Counter(_targets(splits.test)) == {0: 2, 1: 1, 2: 1}
    assert len(splits.train) + len(splits.val) == 14
    assert splits.input_shape == (3, 5, 5)


def test_imagefolder_test_classes_must_match(tmp_path) -> None:
    _write_pngs(tmp_path / "set" / "train", {"a": 2, "b": 2})
    _write_pngs(tmp_path / "set" / "test", {"a": 1, "z": 1})
    with pytest.raises(DataError, match="differ from train classes"):
        load_data(DataConfig(name=f"imagefolder:{tmp_path / 'set'}"))


def test_imagefolder_bad_paths(tmp_path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        load_data(DataConfig(name=f"imagefolder:{tmp_path / 'missing'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        load_data(DataConfig(name=f"imagefolder:{tmp_path / 'empty'}"))
    assert "\n" not in str(info.value)
