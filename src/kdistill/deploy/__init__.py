"""Deployment: export (ONNX, torch.export .pt2, ExecuTorch .pte), parity, int8, pruning, QAT, bench, one chain.

Kept light on purpose: ``kdistill.models`` imports ``pruned_model`` from here to register the ``pruned`` model
source, so nothing heavy (onnx, onnxruntime, torchao, torch_pruning) is imported at package level.
"""
