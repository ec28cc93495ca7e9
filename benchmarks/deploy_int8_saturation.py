"""How often would an int8 ONNX's u8 x s8 products overflow 16 bits on a CPU without VNNI?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deploy_int8_saturation.py MODEL.int8.onnx RUN [--samples 64]

Without VNNI, ONNX Runtime's x86 int8 kernels use VPMADDUBSW, which adds each pair of adjacent u8 x s8 products in
a saturating int16 before widening. This runs the QDQ model (MODEL: uint8 activations, as the X86 QAT quantizer
makes) on RUN's first validation images, takes the uint8 input and int8 weight of every Conv/Gemm, and counts pair
sums beyond +-32767, pairing adjacent entries of the im2col K axis (channel-major, then kernel rows and columns:
the order of the packed weights is assumed, not read from the runtime). An estimate of exposure, not a
reproduction: on a VNNI CPU nothing saturates.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch.utils.data import DataLoader, Subset

from kdistill.deploy.source import eval_split, load_run

INT16_MAX = 32767


def weighted_layers(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str, np.ndarray]]:
    """(layer, name of its quantized input, its int8 weight) for every Conv/Gemm fed by DequantizeLinear nodes."""
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    layers = []
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm") and node.input[0] in producer and node.input[1] in producer:
            weight = initializers.get(producer[node.input[1]].input[0])
            if weight is not None:
                layers.append((node, producer[node.input[0]].input[0], weight))
    return layers


def im2col(activations: torch.Tensor, layer: onnx.NodeProto, weight: torch.Tensor) -> torch.Tensor:
    """(positions, K) rows that the layer multiplies by its (out, K) weight matrix."""
    if layer.op_type != "Conv":
        return activations.reshape(activations.shape[0], -1)
    pad = next((list(a.ints) for a in layer.attribute if a.name == "pads"), [0])[0]
    stride = next((list(a.ints) for a in layer.attribute if a.name == "strides"), [1])[0]
    columns = F.unfold(activations, weight.shape[-2:], padding=pad, stride=stride)  # (N, K, L)
    return columns.transpose(1, 2).reshape(-1, columns.shape[1])


def overflow_share(columns: torch.Tensor, weight: torch.Tensor) -> tuple[float, float]:
    """(share of pair sums beyond int16, share of outputs with at least one), adjacent K entries paired."""
    matrix = weight.reshape(weight.shape[0], -1)
    if matrix.shape[1] != columns.shape[1]:  # Gemm with transB: (out, K) either way
        matrix = matrix.T
    pairs = columns.shape[1] // 2 * 2
    a = columns[:, :pairs].reshape(columns.shape[0], -1, 2)
    w = matrix[:, :pairs].reshape(matrix.shape[0], -1, 2)
    sums = torch.einsum("lpk,opk->lop", a, w)  # (positions, outputs, pairs)
    over = sums.abs() > INT16_MAX
    return float(over.float().mean()), float(over.any(-1).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a QDQ int8 ONNX file with uint8 activations")
    parser.add_argument("run", help="the run folder whose validation images are fed")
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    model = onnx.load(args.model)
    layers = weighted_layers(model)
    for _, quantized, _ in layers:  # expose the uint8 inputs of every layer as graph outputs
        model.graph.output.append(onnx.helper.make_tensor_value_info(quantized, onnx.TensorProto.UINT8, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    images = next(iter(DataLoader(Subset(eval_split(load_run(args.run).splits), range(args.samples)),
                                  batch_size=args.samples)))["input"]
    inputs = session.run([q for _, q, _ in layers], {session.get_inputs()[0].name: images.numpy()})
    for (layer, _, weight), activations in zip(layers, inputs, strict=True):
        w = torch.from_numpy(weight.astype(np.float32))
        columns = im2col(torch.from_numpy(activations.astype(np.float32)), layer, w)
        pair_share, output_share = overflow_share(columns, w)
        print(f"{layer.op_type} {layer.name}: activation max {int(activations.max())}, |weight| max "
              f"{int(np.abs(weight.astype(np.int32)).max())}, pair sums beyond int16 {pair_share:.2e}, outputs with "
              f"one or more {100 * output_share:.3f}%")


if __name__ == "__main__":
    main()
