"""Feature taps by module name: forward hooks on the unwrapped model, with no change to the user's model.

Attach once at set-up, read after each forward, remove at teardown. A tap that did not fire during a forward
is an error, not a silently missing loss term.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from kdistill.errors import ModelError


def resolve_module(model: nn.Module, name: str, role: str = "model") -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.3)
        hint = f"; nearest: {', '.join(close)}" if close else ""
        raise ModelError(f"{role} has no module named {name!r}{hint} (`kdistill layers` lists them)")
    return modules[name]


class FeatureTaps:
    """Records the outputs of named modules on every forward pass."""

    def __init__(self, model: nn.Module, names: list[str] | tuple[str, ...], role: str = "model") -> None:
        self.names = list(dict.fromkeys(names))
        self.role = role
        self._store: dict[str, torch.Tensor] = {}
        self._handles = [resolve_module(model, n, role).register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name: str):
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            self._store[name] = output

        return record

    def collect(self) -> dict[str, torch.Tensor]:
        """The features of the last forward; raises if a tap did not fire. Clears the store."""
        missing = [n for n in self.names if n not in self._store]
        if missing:
            raise ModelError(
                f"{self.role} taps {missing} did not fire during the forward pass (module unused, or the model was "
                "compiled before the hooks were attached)"
            )
        features, self._store = self._store, {}
        return features

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._store = {}
