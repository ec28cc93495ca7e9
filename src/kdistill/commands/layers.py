"""``kdistill layers TEACHER STUDENT``: the modules that can be tapped, their output shapes, and proposed pairs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from kdistill.console import cli_console

if TYPE_CHECKING:  # kdistill.layers imports torch: loaded when the command runs, not when the CLI starts
    from kdistill.layers import LayerInfo


def layers(
    teacher: Annotated[str, typer.Argument(help="teacher: mlp | cnn | resnet | timm:<name> | torchvision:<name>")],
    student: Annotated[str, typer.Argument(help="student model, same forms as the teacher")],
    data: Annotated[str, typer.Option(help="data set that fixes the input shape and class count")] = "digits",
    root: Annotated[str | None, typer.Option(help="data folder (fashion-mnist)")] = None,
    all_modules: Annotated[bool, typer.Option("--all", help="also list modules called more than once")] = False,
) -> None:
    """List both models' tappable modules with output shapes, and the pairs that ``pairs: auto`` would use."""
    from kdistill.config import DataConfig, ModelConfig
    from kdistill.data import load_data
    from kdistill.layers import list_layers
    from kdistill.models import build_model

    splits = load_data(DataConfig(name=data, root=root))
    sample = splits.sample_input()
    models = {role: build_model(ModelConfig(name=name), splits.input_shape, splits.num_classes, role=role)
              for role, name in (("teacher", teacher), ("student", student))}
    found = {role: list_layers(model, sample) for role, model in models.items()}
    console = cli_console()  # made per call: this invocation's width (COLUMNS) and streams
    for role, name in (("teacher", teacher), ("student", student)):
        console.print(_layer_table(f"{role} {name}", found[role], all_modules))
    console.print(_pairs_table(found["student"], found["teacher"]))


def _layer_table(title: str, layers: list[LayerInfo], all_modules: bool) -> Table:
    from kdistill.layers import stage_layers

    stages = {layer.name for layer in stage_layers(layers)}
    table = Table(title=title)
    for column in ("module", "type", "output shape", "note"):
        table.add_column(column)
    for layer in layers:
        if layer.calls > 1 and not all_modules:
            continue
        note = "stage" if layer.name in stages else ("called twice+" if layer.calls > 1 else "")
        note = "output" if layer.is_output else note
        table.add_row(layer.name, layer.type, str(tuple(layer.output_shape)), note)
    return table


def _pairs_table(student_layers: list[LayerInfo], teacher_layers: list[LayerInfo]) -> Table:
    from kdistill.layers import embedding_pair_of, match_stages

    table = Table(title="proposed pairs (student -> teacher)")
    for column in ("used by", "student module", "teacher module"):
        table.add_column(column)
    stage_pairs = match_stages(student_layers, teacher_layers)
    for student, teacher in stage_pairs:
        table.add_row("stages: at, nst, fitnet (middle), sp (last)", student, teacher)
    student, teacher = embedding_pair_of(student_layers, teacher_layers)
    # Without (C, H, W) stages in both models, every feature method falls back to the embeddings.
    table.add_row("embedding: rkd, pkt, crd" if stage_pairs else "embedding: every feature method", student, teacher)
    return table
