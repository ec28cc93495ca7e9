"""Export formats, one small interface each: ``export`` a module to a file, ``load`` it back as a runner.

A runner maps the graph's input tensors to the logits as a torch tensor, so parity checks and benchmarks treat
every runtime the same way. Registering a new format is one class and one line.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from kdistill.deploy.errors import ExportError
from kdistill.registry import Registry

Runner = Callable[[tuple[torch.Tensor, ...]], torch.Tensor]
MAX_BATCH = 1024  # upper bound of the batch axis where a runtime needs one (ExecuTorch)


class ExportFormat:
    name: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    fallback: ClassVar[str | None] = None  # the format to suggest when this one cannot handle a model

    def export(self, module: nn.Module, example: tuple[torch.Tensor, ...], input_names: tuple[str, ...],
               path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path, threads: int) -> Runner:
        raise NotImplementedError


FORMATS: Registry[type[ExportFormat]] = Registry("export format")


def dynamic_axes(example: tuple[torch.Tensor, ...], max_batch: int | None = None) -> tuple[dict, ...]:
    """Batch axis dynamic for every input (and the sequence axis of token inputs, which are (B, L))."""
    batch = torch.export.Dim("batch", min=1, max=max_batch) if max_batch else torch.export.Dim("batch", min=1)
    token_inputs = all(t.dim() == 2 and not t.is_floating_point() for t in example)
    sequence = torch.export.Dim("sequence", min=2) if token_inputs else None
    return tuple({0: batch, 1: sequence} if sequence is not None else {0: batch} for _ in example)


def dynamic_shapes_of(module: nn.Module, example: tuple[torch.Tensor, ...], max_batch: int | None = None):
    """``dynamic_axes`` shaped like ``module.forward``'s parameters: one tuple for ``*tensors`` (TaskModule), one
    entry per parameter otherwise (graphs made by torch.export/pt2e take the flattened inputs)."""
    axes = dynamic_axes(example, max_batch)
    parameters = inspect.signature(module.forward).parameters.values()
    return (axes,) if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters) else axes


def failed_operator(exc: BaseException) -> str | None:
    """The operator named in an exporter error (``aten.kthvalue.default``), if any."""
    match = re.search(r"target=torch\.ops\.([\w.]+)", str(exc)) or re.search(r"op='([\w.]+)'", str(exc))
    return match.group(1) if match else None


def torch_export(module: nn.Module, example: tuple[torch.Tensor, ...], max_batch: int | None = None,
                 fallback: str | None = None, format_name: str = "pt2") -> torch.export.ExportedProgram:
    try:
        return torch.export.export(module, example, dynamic_shapes=dynamic_shapes_of(module, example, max_batch))
    except Exception as exc:  # noqa: BLE001  (torch.export raises many types; all mean "cannot trace this model")
        operator = failed_operator(exc) or str(exc).strip().splitlines()[0][:200]
        hint = f"; try --format {fallback}" if fallback else ""
        raise ExportError(f"torch.export cannot trace the model for {format_name}: {operator}{hint}") from None


@FORMATS.register("onnx")
class OnnxFormat(ExportFormat):
    """ONNX through torch's dynamo exporter (torch.export + onnxscript), run by ONNX Runtime."""

    name, suffix, fallback = "onnx", ".onnx", "pt2"

    def export(self, module, example, input_names, path):
        try:
            program = torch.onnx.export(module, example, dynamo=True, verbose=False, input_names=list(input_names),
                                        output_names=["logits"], dynamic_shapes=dynamic_shapes_of(module, example),
                                        external_data=False)
        except Exception as exc:  # noqa: BLE001  (ConversionError, DispatchError, UnsupportedOperatorError ...)
            operator = failed_operator(exc)
            what = f"operator {operator}" if operator else str(exc).strip().splitlines()[0][:200]
            raise ExportError(f"the ONNX exporter cannot handle {what}; export with --format {self.fallback} "
                              "(torch.export) instead") from None
        strip_debug_metadata(program.model)
        program.save(str(path))
        compact_onnx(path)

    def load(self, path, threads):
        return onnx_runner(path, threads)


def strip_debug_metadata(model) -> None:
    """Drop what the exporter records per node for debugging (the Python stack trace, the FX node, module names:
    about 1.7 KB a node, 15 KB of a 24k-parameter CNN's 115 KB file). Nothing a runtime reads; a deployed file
    should not carry the source paths either. ``model``: the exporter's in-memory (onnx_ir) model."""
    for node in model.graph.all_nodes():  # subgraphs too
        node.metadata_props.clear()
        node.doc_string = None


def compact_onnx(path: Path) -> None:
    """Shrink an ONNX file in place without changing what it computes: drop ``value_info`` (shapes of inner
    tensors, which the runtime infers again) and replace node and inner tensor names by short ones (the exporter
    names them after the PyTorch modules, ``getattr_L__self___features_0_conv_weight``). The graph's input and
    output names stay, so callers feed and read it as before. On a 29k-parameter int8 CNN this is 17% of the file.
    Graphs with subgraphs (If, Loop) keep their tensor names: renaming across scopes is not worth the risk."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    del graph.value_info[:]
    for index, node in enumerate(graph.node):
        node.name = f"n{index}"
    if not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for node in graph.node for a in node.attribute):
        rename_inner_tensors(graph)
    onnx.save(model, str(path))


def rename_inner_tensors(graph) -> None:
    keep = {value.name for value in (*graph.input, *graph.output)}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for tensor in graph.sparse_initializer:
        tensor.values.name = short(tensor.values.name)
    for node in graph.node:
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]


def onnx_runner(path: Path, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
        feeds = {name: t.detach().cpu().numpy() for name, t in zip(names, tensors, strict=True)}
        return torch.from_numpy(session.run(None, feeds)[0])

    return run


@FORMATS.register("pt2")
class Pt2Format(ExportFormat):
    """``torch.export`` program (.pt2): serves where ONNX cannot, run by PyTorch."""

    name, suffix = "pt2", ".pt2"

    def export(self, module, example, input_names, path):
        torch.export.save(torch_export(module, example), str(path))

    def load(self, path, threads):
        module = torch.export.load(str(path)).module()

        def run(tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                with torch.no_grad():
                    return module(*tensors)
            finally:
                torch.set_num_threads(previous)

        return run


def executorch_available() -> bool:
    try:
        import executorch.exir  # noqa: F401
    except ImportError:
        return False
    return True


@FORMATS.register("pte")
class PteFormat(ExportFormat):
    """ExecuTorch program (.pte) lowered to the XNNPACK backend: the edge format (phones, small boards)."""

    name, suffix, fallback = "pte", ".pte", "onnx"

    def export(self, module, example, input_names, path):
        require_executorch()
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        program = torch_export(module, example, MAX_BATCH, self.fallback, "pte")
        try:
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
        except Exception as exc:  # noqa: BLE001  (edge dialect checks raise several types)
            raise ExportError(f"ExecuTorch cannot lower the model: {str(exc).strip().splitlines()[0][:200]}; "
                              f"try --format {self.fallback}") from None
        path.write_bytes(lowered.buffer)

    def load(self, path, threads):
        require_executorch()
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        portable_lib._unsafe_reset_threadpool(threads)  # XNNPACK's thread pool; the only knob the runtime offers
        method = Runtime.get().load_program(str(path)).load_method("forward")
        # Memory is planned for the largest batch the exporter proved possible (often far below MAX_BATCH):
        # larger batches run in chunks of that size.
        capacity = method.metadata.input_tensor_meta(0).sizes()[0]

        def run(tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
            chunks = zip(*(t.split(capacity) for t in tensors), strict=True)
            return torch.cat([method.execute(list(chunk))[0] for chunk in chunks])

        return run


def require_executorch() -> None:
    if not executorch_available():
        raise ExportError("format pte needs ExecuTorch, which is not installed: pip install 'kdistill[edge]' "
                          "(executorch 1.5 installs next to torch 2.14.1); or use --format onnx")
