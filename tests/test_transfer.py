"""Transfer sets: a labelled fraction, an unlabelled second source, the masked task loss, and runs on them."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from kdistill import api
from kdistill.cache import build_cache, open_cached_teacher
from kdistill.config import DataConfig, load_config
from kdistill.data import load_data
from kdistill.data.transfer import HIDDEN_TARGET, label_counts, masked_task_loss, training_items
from kdistill.errors import ConfigError, DataError
from kdistill.models import build_model, save_weights
from kdistill.tasks import ClassificationTask


def test_labeled_fraction_is_stratified_seeded_and_hides_the_rest() -> None:
    full = load_data(DataConfig(name="digits"))
    few = load_data(DataConfig(name="digits", labeled_fraction=0.1))
    train = few.train
    assert torch.equal(train.inputs, full.train.inputs)  # same items, only labels hidden
    labeled = train.labeled
    assert int(labeled.sum()) == pytest.approx(0.1 * len(train), abs=10)
    assert (train.targets[~labeled] == HIDDEN_TARGET).all()
    assert torch.equal(train.targets[labeled], full.train.targets[labeled])
    per_class = Counter(train.targets[labeled].tolist())
    assert set(per_class) == set(range(10)) and max(per_class.values()) - min(per_class.values()) <= 2
    again = load_data(DataConfig(name="digits", labeled_fraction=0.1))
    assert torch.equal(again.train.labeled, labeled)
    other = load_data(DataConfig(name="digits", labeled_fraction=0.1, split_seed=5))
    assert not torch.equal(other.train.labeled[: len(labeled)], labeled) or len(other.train) != len(train)
    assert len(few.val) == len(full.val) and (torch.tensor([few.val[i]["target"] for i in range(5)]) >= 0).all()
    assert few.train[0]["labeled"].dtype == torch.bool


def test_unlabeled_source_is_appended_without_labels() -> None:
    base = load_data(DataConfig(name="digits", labeled_fraction=0.5))
    both = load_data(DataConfig(name="digits", labeled_fraction=0.5, unlabeled="digits"))
    assert len(both.train) == len(base.train) + 1797
    assert label_counts(both.train) == (int(base.train.labeled.sum()), len(both.train) - int(base.train.labeled.sum()))
    assert (both.train.targets[len(base.train):] == HIDDEN_TARGET).all()
    assert "+ 1797 unlabelled from digits" in both.description
    mean, std = base.normalization  # the appended inputs are normalised like the training split
    raw = load_data(DataConfig(name="digits", normalize=False))
    expected = (raw.train.inputs[0] - mean[0]) / std[0]
    torch.testing.assert_close(both.train.inputs[len(base.train)], expected)


def test_unlabeled_source_of_another_shape_is_refused(tmp_path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n9,1,x\n")
    with pytest.raises(DataError, match="shape"):
        load_data(DataConfig(name="digits", unlabeled=f"csv:{csv}"))


def test_masked_task_loss_averages_over_labelled_items_only() -> None:
    logits = torch.randn(5, 4, requires_grad=True)
    target = torch.tensor([1, -1, 3, -1, 0])
    labeled = target >= 0
    loss = masked_task_loss(logits, {"target": target, "labeled": labeled})
    reference = F.cross_entropy(logits[labeled], target[labeled])
    torch.testing.assert_close(loss, reference)
    grad, = torch.autograd.grad(loss, logits)
    reference_grad, = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(grad, reference_grad)
    assert (grad[~labeled] == 0).all()


def test_masked_task_loss_is_exactly_zero_without_labels() -> None:
    logits = torch.randn(3, 4, requires_grad=True)
    loss = masked_task_loss(logits, {"target": torch.full((3,), -1), "labeled": torch.zeros(3, dtype=torch.bool)})
    assert loss.item() == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert (logits.grad == 0).all()


def test_masked_task_loss_uses_mixed_labels() -> None:
    logits = torch.randn(2, 3)
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.3, 0.7, 0.0]])
    batch = {"target": torch.tensor([0, 1]), "soft_target": soft, "labeled": torch.tensor([True, False])}
    expected = -(soft[0] * F.log_softmax(logits[0], -1)).sum()
    torch.testing.assert_close(masked_task_loss(logits, batch), expected)
    torch.testing.assert_close(masked_task_loss(logits, {"target": torch.tensor([0, 1])}),
                               F.cross_entropy(logits, torch.tensor([0, 1])))


def test_plain_training_keeps_only_the_labelled_items() -> None:
    splits = load_data(DataConfig(name="digits", labeled_fraction=0.2))
    alone = training_items(splits, distilling=False)
    assert len(alone) == int(splits.train.labeled.sum()) and (alone.targets >= 0).all()
    assert training_items(splits, distilling=True) is splits.train


def test_transfer_set_needs_in_memory_data(tmp_path) -> None:
    (tmp_path / "c.txt").write_text("\n".join(f"line {i} of text" for i in range(40)))
    with pytest.raises(DataError, match="in-memory"):
        load_data(DataConfig(name=f"text:{tmp_path / 'c.txt'}", labeled_fraction=0.5))


def test_fixed_normalisation_constants() -> None:
    raw = load_data(DataConfig(name="digits", normalize=False))
    fixed = load_data(DataConfig(name="digits", mean=[0.5], std=[0.25]))
    torch.testing.assert_close(fixed.train.inputs, (raw.train.inputs - 0.5) / 0.25)
    torch.testing.assert_close(fixed.test.inputs, (raw.test.inputs - 0.5) / 0.25)
    with pytest.raises(DataError, match="channels"):
        load_data(DataConfig(name="digits", mean=[0.5, 0.5], std=[0.2, 0.2]))
    for bad in (["data.mean=[0.5]"], ["data.mean=[0.5]", "data.std=[0]"], ["data.mean=[0.5]", "data.std=[1]",
                                                                           "data.normalize=false"]):
        with pytest.raises(ConfigError, match="data.mean|std"):
            load_config(None, bad)


def _write_pngs(folder, classes: dict[str, int]) -> None:
    from PIL import Image

    for index, (label, count) in enumerate(classes.items()):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (4, 4), (40 * index + i, 100, 10 * i)).save(folder / label / f"{i}.png")


@pytest.mark.parametrize("folders", [("train", "val", "test"), ("train", "val"), ("train", "test")])
def test_imagefolder_split_folders_by_name(tmp_path, folders) -> None:
    sizes = {"train": {"a": 6, "b": 6}, "val": {"a": 2, "b": 1}, "test": {"a": 1, "b": 2}}
    for name in folders:
        _write_pngs(tmp_path / "set" / name, sizes[name])
    splits = load_data(DataConfig(name=f"imagefolder:{tmp_path / 'set'}", image_size=4, test_fraction=0.25))
    if "val" in folders:
        assert len(splits.val) == 3 and "val 3 (val/)" in splits.description
    if "test" in folders:
        assert len(splits.test) == 3 and "test 3 (test/)" in splits.description
    else:
        assert len(splits.test) == 4 and "test 4 (33% of all, split_seed 0)" in splits.description  # 2 per class
    assert sum(len(s) for s in (splits.train, splits.val, splits.test)) == 12 + sum(
        sum(sizes[n].values()) for n in folders if n != "train")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> str:
    splits = load_data(DataConfig(name="digits"))
    torch.manual_seed(0)
    config = load_config(None, ["student.name=cnn", "student.kwargs={width: 8}"]).student
    model = build_model(config, splits.input_shape, splits.num_classes)
    return str(save_weights(model, tmp_path_factory.mktemp("t") / "teacher.safetensors"))


def _config(tmp_path, name: str, extra: list[str] = ()):
    return load_config(None, [f"name={name}", f"output_dir={tmp_path}", "data.labeled_fraction=0.1",
                              "data.train_fraction=0.5", "student.name=cnn", "student.kwargs={width: 4}",
                              "trainer.epochs=1", "trainer.progress=false", *extra])


def test_runs_say_what_they_trained_on(tmp_path, teacher, capsys) -> None:
    alone = api.train(_config(tmp_path, "alone"))
    out = capsys.readouterr().out
    summary = json.loads((alone.run_dir / "summary.json").read_text())
    labelled = summary["train_labeled"]
    assert summary["train_unlabeled"] == 0 and 0 < labelled < 100
    assert f"trains on {labelled} labelled + 0 unlabelled items" in out.replace("\n", "")
    assert "train " in summary["data_splits"] and "val " in summary["data_splits"]
    teacher_options = ["teacher.name=cnn", "teacher.kwargs={width: 8}", f"teacher.weights={teacher}"]
    distilled = api.distill(_config(tmp_path, "kd", teacher_options))
    assert distilled.metrics["train_labeled"] == labelled and distilled.metrics["train_unlabeled"] > 5 * labelled
    fitnet = api.distill(_config(tmp_path, "fitnet", [*teacher_options, "distill.methods={fitnet: 1.0, kd: 1.0}"]))
    assert fitnet.metrics["train_unlabeled"] == distilled.metrics["train_unlabeled"]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in fitnet.history)


def test_cache_serves_the_transfer_set(tmp_path, teacher) -> None:
    options = ["teacher.name=cnn", "teacher.kwargs={width: 8}", f"teacher.weights={teacher}"]
    augment = ["data.augment_crop_padding=1"]  # the cache replays stored views (items without a labeled flag)
    build_cache(_config(tmp_path, "build", [*options, *augment]), tmp_path / "cache", views=2)
    cached = api.distill(_config(tmp_path, "cached", [f"teacher.name=cache:{tmp_path / 'cache'}", *augment]))
    live = api.distill(_config(tmp_path, "live", [*options, *augment]))
    assert cached.metrics["train_unlabeled"] == live.metrics["train_unlabeled"] > 0
    assert cached.history[0]["train_kd"] == pytest.approx(live.history[0]["train_kd"], rel=0.2)
    # Replayed views carry no labeled flag: the hidden targets alone keep them out of the task loss.
    splits = load_data(cached.config.data)
    views = open_cached_teacher(tmp_path / "cache", cached.config, splits).train_dataset(splits.train)
    batch = default_collate([views[i] for i in range(64)])
    labeled = batch["target"] >= 0
    assert "labeled" not in batch and 0 < int(labeled.sum()) < 64
    logits = torch.randn(64, 10)
    reference = F.cross_entropy(logits[labeled], batch["target"][labeled])
    torch.testing.assert_close(masked_task_loss(logits, batch), reference)


def test_training_accuracy_is_over_the_labelled_items_only(tmp_path, teacher) -> None:
    # 10% labelled: counted over every item, the accuracy could never pass 0.1 (hidden targets are never hits).
    options = ["teacher.name=cnn", "teacher.kwargs={width: 8}", f"teacher.weights={teacher}", "trainer.epochs=3",
               "optim.lr=0.01"]
    record = api.distill(_config(tmp_path, "kd", options)).history[-1]
    assert 0.5 < record["train_accuracy"] <= 1.0
    batch = {"target": torch.tensor([3, HIDDEN_TARGET, 1, HIDDEN_TARGET])}
    assert ClassificationTask().scored(batch, 4) == 2
