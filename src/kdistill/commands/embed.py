"""``kdistill distill-embeddings``: distil the packaged all-MiniLM-L6-v2 into a smaller sentence encoder (offline).

A thin wrapper over ``kdistill.lm.embedding.distill_embeddings``; prints teacher / student-before / student-after
metrics on the held-out sentences as a table, and optionally saves the student and the metrics. The same distillation
as an ordinary run (run folder, checkpoints, resume, summary.json): ``kdistill distill configs/embedding_minilm.yaml``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kdistill.console import cli_console
from kdistill.errors import ConfigError
from kdistill.results import Environment, ResultTable, Row, columns_for


def parse_layers(text: str) -> list[int]:
    """``"0,2,4"`` -> [0, 2, 4]; a ConfigError (one CLI line) for anything else."""
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--layers {text!r}: give comma-separated teacher layer numbers, e.g. 0,2,4") from None
    if not layers:
        raise ConfigError("--layers is empty; give comma-separated teacher layer numbers, e.g. 0,2,4")
    return layers


def distill_embeddings(
    layers: Annotated[str, typer.Option(help="teacher layers the student keeps (DistilBERT-style init)")] = "0,2,4",
    fresh: Annotated[bool, typer.Option("--fresh", help="a fresh small BERT student instead of a layer subset")
                     ] = False,
    hidden: Annotated[int, typer.Option(help="--fresh: student width")] = 192,
    num_layers: Annotated[int, typer.Option(help="--fresh: student layers")] = 2,
    sentences: Annotated[int, typer.Option(help="stdlib docstring sentences, held-out ones included")] = 2000,
    heldout: Annotated[int, typer.Option(help="sentences kept for the metrics")] = 200,
    epochs: Annotated[int, typer.Option(help="training epochs")] = 2,
    batch_size: Annotated[int, typer.Option(help="sentences per step")] = 32,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate (default 2e-4, 1e-3 with --fresh)")] = None,
    max_length: Annotated[int, typer.Option(help="tokens per sentence")] = 32,
    seed: Annotated[int, typer.Option(help="shuffle (and --fresh init) seed")] = 0,
    output: Annotated[Path | None, typer.Option(help="folder for the student (save_pretrained) and metrics.json")
                      ] = None,
) -> None:
    """Distil all-MiniLM-L6-v2 on stdlib docstring sentences; print cosine, top-10 overlap, size and latency."""
    import torch

    from kdistill.lm.corpus import docstring_sentences
    from kdistill.lm.embedding import distill_embeddings as run
    from kdistill.lm.embedding import fresh_student, load_minilm_teacher
    from kdistill.render import print_result, save

    console = cli_console()  # made per call: picks up the terminal width (COLUMNS) of this invocation
    chosen = None if fresh else parse_layers(layers)
    if epochs < 1 or batch_size < 1 or heldout < 2:
        raise ConfigError("--epochs and --batch-size must be >= 1 and --heldout >= 2")
    texts = docstring_sentences(sentences)
    if len(texts) <= heldout + batch_size:
        raise ConfigError(f"{len(texts)} sentences available: need more than --heldout + --batch-size "
                          f"({heldout + batch_size}); lower them or raise --sentences")
    teacher = load_minilm_teacher()
    student = fresh_student(teacher[0], hidden=hidden, num_layers=num_layers, seed=seed) if fresh else None
    try:
        model, result = run(texts, layers=chosen, student=student, heldout=heldout, epochs=epochs,
                            batch_size=batch_size, lr=lr if lr is not None else (1e-3 if fresh else 2e-4),
                            max_length=max_length, seed=seed, teacher=teacher)
    except ValueError as exc:  # e.g. layers outside the teacher's 0..5
        raise ConfigError(str(exc)) from None
    name = f"fresh BERT ({num_layers} layers, width {hidden})" if fresh else f"teacher layers {chosen}"
    table = embedding_result(result, name)
    print_result(table, console)
    console.print(f"{len(texts) - heldout} training sentences, {heldout} held out; {result.seconds:.0f} s; "
                  f"epoch losses {', '.join(f'{loss:.4f}' for loss in result.losses)}")
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        model.encoder.save_pretrained(output / "encoder")
        teacher[1].save_pretrained(output / "encoder")  # the tokenizer travels with the encoder
        if not isinstance(model.projection, torch.nn.Identity):  # --fresh: width -> 384
            torch.save(model.projection.state_dict(), output / "projection.pt")
        (output / "metrics.json").write_text(json.dumps({"student": name, **result.as_dict()}, indent=1) + "\n")
        save(table, output)
        console.print(f"student and metrics in {output}")


def embedding_result(result, student_name: str) -> ResultTable:
    """One row per model: cosine to the teacher, top-10 overlap, parameters, size, latency (held-out sentences)."""
    rows = [Row(label, {"cosine_to_teacher": m.cosine_to_teacher, "top10_overlap": m.top10_overlap,
                        "parameters": m.parameters, "size_mb": m.size_mb, "latency_ms": m.latency_ms})
            for label, m in (("teacher", result.teacher), ("student before", result.student_before),
                             ("student after", result.student_after))]
    return ResultTable(f"embedding distillation: MiniLM -> {student_name}", "embedding", columns_for("embedding"), rows,
                     Environment.capture("cpu"), name_label="model")
