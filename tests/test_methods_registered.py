"""Every registered method on every task it declares: built by name, prepared on tiny models, forward + backward.

Gradients must reach the student (and the method's own adapters/heads) and never the teacher, even when the
teacher's outputs were produced with gradients enabled. The cases come from the methods' own ``tasks``
declarations, so a new method is covered as soon as it is registered.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kdistill.config import ModelConfig  # noqa: E402
from kdistill.errors import ConfigError, ModelError  # noqa: E402
from kdistill.methods import METHODS, MethodContext, build_method  # noqa: E402
from kdistill.models import build_model  # noqa: E402
from kdistill.outputs import ModelOutputs  # noqa: E402
from kdistill.taps import FeatureTaps  # noqa: E402
from kdistill.tasks import TASKS  # noqa: E402

INPUT_SHAPE, CLASSES, BATCH = (1, 8, 8), 5, 6
MODELS = {"cnn-resnet": ("cnn", "resnet"), "mlp-mlp": ("mlp", "mlp")}
NEEDS_MAPS = {"at", "nst"}  # compare (C, H, W) maps: refused on MLP features
VOCAB, LENGTH = 40, 12  # token tasks: a small vocabulary, short sequences


def _models(student_name: str, teacher_name: str):
    torch.manual_seed(0)
    student = build_model(ModelConfig(name=student_name, kwargs={"width": 4}), INPUT_SHAPE, CLASSES)
    teacher = build_model(ModelConfig(name=teacher_name, kwargs={"width": 6}), INPUT_SHAPE, CLASSES)
    return student, teacher


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"input": torch.randn(BATCH, *INPUT_SHAPE, generator=g), "target": torch.randint(0, CLASSES, (BATCH,),
            generator=g), "index": torch.arange(BATCH) * 3}


def _token_batch() -> dict[str, torch.Tensor]:
    """Right-padded sequences with a masked prompt token, as the text sources make them."""
    g = torch.Generator().manual_seed(2)
    input_ids = torch.randint(1, VOCAB, (BATCH, LENGTH), generator=g)
    attention_mask = torch.ones(BATCH, LENGTH, dtype=torch.long)
    attention_mask[::2, LENGTH - 4 :] = 0
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, 0] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "index": torch.arange(BATCH)}


def _case(task: str, models: str):
    """(student, teacher, batch, num_classes) for a task; ``models`` picks the classification pair."""
    if task == "classification":
        return (*_models(*MODELS[models]), _batch(), CLASSES)
    torch.manual_seed(0)
    if task == "causal-lm":
        small, large = {"hidden": 16, "n_layer": 1, "heads": 2}, {"hidden": 24, "n_layer": 2, "heads": 2}
        names = ("tiny-gpt2", "tiny-gpt2")
    else:  # embedding: (B, D) sentence embeddings of one width on both sides
        small = {"hidden": 16, "n_layer": 1, "heads": 2, "embed_dim": 8, "intermediate": 32}
        large = {"hidden": 24, "n_layer": 2, "heads": 2, "embed_dim": 8, "intermediate": 48}
        names = ("tiny-bert", "tiny-bert")
    student = build_model(ModelConfig(name=names[0], kwargs=small), (LENGTH,), VOCAB)
    teacher = build_model(ModelConfig(name=names[1], kwargs=large), (LENGTH,), VOCAB)
    return student, teacher, _token_batch(), VOCAB


def _outputs(task, model, taps: list[str], batch, role: str) -> ModelOutputs:
    tapper = FeatureTaps(model, taps, role=role) if taps else None
    logits = task.logits(model, batch)
    features = tapper.collect() if tapper else {}
    if tapper:
        tapper.remove()
    return ModelOutputs(logits, features)


CASES = [(name, task, models) for name in METHODS.names() for task in sorted(METHODS.get(name).tasks)
         for models in (MODELS if task == "classification" else ["tiny"])]


def test_every_method_declares_a_registered_task():
    assert all(METHODS.get(name).tasks and METHODS.get(name).tasks <= set(TASKS.names()) for name in METHODS.names())
    assert {task for _, task, _ in CASES} == set(TASKS.names())  # every task has methods, and they are tested


@pytest.mark.parametrize(("name", "task_name", "models"), CASES, ids=["-".join(case) for case in CASES])
def test_method_trains_the_student_not_the_teacher(name, task_name, models):
    task = TASKS.get(task_name)()
    student, teacher, batch, classes = _case(task_name, models)
    method = build_method(name, 4.0 if task_name == "classification" else 1.0, classes)
    sample = {key: value[:1] for key, value in batch.items()}
    context = MethodContext(student, teacher, sample, classes, num_train_samples=32)
    if name in NEEDS_MAPS and models == "mlp-mlp":
        with pytest.raises(ModelError, match="feature maps"):
            method.prepare(context)
        return
    method.prepare(context)
    student.train()
    terms = method(_outputs(task, student, method.student_taps(), batch, "student"),
                   _outputs(task, teacher, method.teacher_taps(), batch, "teacher"), batch)
    assert terms and all(v.dim() == 0 and v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    for param in method.parameters():  # adapters and heads train with the student
        assert param.grad is not None, f"{name}: a method parameter got no gradient"


def test_feature_methods_pair_stages_automatically():
    student, teacher = _models("cnn", "resnet")
    context = MethodContext(student, teacher, {"input": _batch()["input"][:1]}, CLASSES, 32)
    fitnet = build_method("fitnet", 4.0, CLASSES)
    fitnet.prepare(context)
    assert fitnet.pairs == [("features.1.1", "layers.1")]  # the middle stage (8x8 -> 4x4 -> 2x2)
    assert fitnet.student_shapes == [(8, 4, 4)] and fitnet.teacher_shapes == [(12, 4, 4)]
    assert isinstance(fitnet.adapters[0][0], torch.nn.Conv2d)  # 8 -> 12 channels
    at = build_method("at", 4.0, CLASSES)
    at.prepare(context)
    assert at.pairs == [("features.0.1", "layers.0"), ("features.1.1", "layers.1"), ("features", "layers")]
    assert sum(p.numel() for p in at.parameters()) == 0  # attention maps need no channel adapter
    rkd = build_method("rkd", 4.0, CLASSES)
    rkd.prepare(context)
    assert rkd.pairs == [("dropout", "pool")]  # penultimate features


def test_cached_teacher_needs_explicit_pairs_and_uses_cached_shapes():
    student, teacher = _models("cnn", "resnet")
    sample = {"input": _batch()["input"][:1]}
    with pytest.raises(ConfigError, match="give pairs explicitly"):
        build_method("fitnet", 4.0, CLASSES).prepare(MethodContext(student, None, sample, CLASSES, 32))
    cached = ModelOutputs(torch.zeros(1, CLASSES), {"layers.2": torch.zeros(1, 24, 2, 2)})
    method = build_method("fitnet", 4.0, CLASSES, {"pairs": [["features.2", "layers.2"]]})
    method.prepare(MethodContext(student, None, sample, CLASSES, 32, teacher_sample_outputs=cached))
    assert method.teacher_shapes == [(24, 2, 2)]
    with pytest.raises(ConfigError, match="cached teacher has no features"):
        method.prepare(MethodContext(student, None, sample, CLASSES, 32))
    # Relational losses accept any teacher width: no cached shapes needed.
    rkd = build_method("rkd", 4.0, CLASSES, {"pairs": [["pool", "pool"]]})
    rkd.prepare(MethodContext(student, None, sample, CLASSES, 32))
    assert rkd.student_shapes == [(16, 1, 1)] and rkd.teacher_taps() == ["pool"]


def test_bad_feature_options_are_clear_errors():
    student, teacher = _models("cnn", "resnet")
    context = MethodContext(student, teacher, {"input": _batch()["input"][:1]}, CLASSES, 32)
    with pytest.raises(ModelError, match="no module named 'features.9'.*nearest"):
        build_method("fitnet", 4.0, CLASSES, {"pairs": [["features.9", "layers"]]}).prepare(context)
    with pytest.raises(ModelError, match="cannot adapt"):
        build_method("fitnet", 4.0, CLASSES, {"pairs": [["features", "head"]]}).prepare(context)
    with pytest.raises(ConfigError, match="is empty"):
        build_method("sp", 4.0, CLASSES, {"pairs": []})
    with pytest.raises(ConfigError, match="list of"):
        build_method("sp", 4.0, CLASSES, {"pairs": ["features"]})
    with pytest.raises(ConfigError, match="unknown option"):
        build_method("rkd", 4.0, CLASSES, {"distance_wieght": 1.0})
