"""A small, deterministic text corpus built from the Python standard library's own sources (no download).

* ``code_documents``: chunks of ``*.py`` source (for causal-LM training), a few hundred KB by default;
* ``prompt_completion_pairs``: function header + docstring -> body (for prompt/completion jsonl);
* ``docstring_sentences``: English sentences from docstrings (for embedding distillation).

Selection is deterministic: files sorted by name, fixed size budgets, so the same Python version gives the same
corpus on every machine.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path


def stdlib_files() -> list[Path]:
    """Top-level ``*.py`` files of the standard library, sorted by name."""
    return sorted(Path(os.path.dirname(os.__file__)).glob("*.py"))


def _sources() -> Iterator[tuple[Path, str]]:
    for path in stdlib_files():
        try:
            yield path, path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue


def code_documents(max_chars: int = 300_000, chunk_chars: int = 512) -> list[str]:
    """Paragraphs of stdlib source merged into documents of about ``chunk_chars`` characters."""
    documents: list[str] = []
    total = 0
    for _, text in _sources():
        current = ""
        for paragraph in re.split(r"\n\s*\n", text):
            paragraph = paragraph.strip("\n")
            if not paragraph.strip():
                continue
            if current and len(current) + len(paragraph) > chunk_chars:
                documents.append(current)
                total += len(current)
                current = ""
            current = f"{current}\n\n{paragraph}" if current else paragraph[: 4 * chunk_chars]
            if total >= max_chars:
                return documents
        if current:
            documents.append(current)
            total += len(current)
    return documents


def prompt_completion_pairs(max_pairs: int = 2000, max_chars: int = 800) -> list[dict[str, str]]:
    """Short documented functions: prompt = header + docstring, completion = the body after the docstring."""
    pairs: list[dict[str, str]] = []
    for _, text in _sources():
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        lines = text.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or ast.get_docstring(node) is None or len(node.body) < 2:
                continue
            doc_end = node.body[0].end_lineno or node.lineno
            prompt = "".join(lines[node.lineno - 1 : doc_end])
            completion = "".join(lines[doc_end : node.end_lineno or doc_end])
            if completion.strip() and len(prompt) + len(completion) <= max_chars:
                pairs.append({"prompt": prompt, "completion": completion})
                if len(pairs) >= max_pairs:
                    return pairs
    return pairs


def docstring_sentences(max_sentences: int = 3000, min_chars: int = 30, max_chars: int = 200) -> list[str]:
    """Distinct sentences from stdlib docstrings (module, class and function), in file order."""
    seen: set[str] = set()
    sentences: list[str] = []
    for _, text in _sources():
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join((doc or "").split())):
                if min_chars <= len(sentence) <= max_chars and sentence[0].isalpha() and sentence not in seen:
                    seen.add(sentence)
                    sentences.append(sentence)
                    if len(sentences) >= max_sentences:
                        return sentences
    return sentences


def write_jsonl(records: list[dict[str, str]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def write_corpus(path: str | Path, max_chars: int = 300_000, chunk_chars: int = 512) -> Path:
    """Write ``code_documents`` as jsonl (``{"text": ...}`` per line), ready for ``data.name: jsonl:<path>``."""
    return write_jsonl([{"text": doc} for doc in code_documents(max_chars, chunk_chars)], path)
