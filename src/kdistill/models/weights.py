"""Save and load weights: safetensors by default; torch checkpoints only with ``weights_only=True``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from kdistill.errors import CheckpointError

_PREFIXES = ("module.", "_orig_mod.", "model.")
CHECKSUM_KEY = "kdistill_sha256"  # safetensors metadata: sha256 of the tensors, checked on every load


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors in sorted key order (name, dtype, shape and bytes of each)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the model's state dict as safetensors (shared tensors are cloned so every key stands alone)."""
    path = Path(path)
    state = {k: v.detach().contiguous().clone().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata={**(metadata or {}), CHECKSUM_KEY: tensors_sha256(state)})
    tmp.replace(path)  # atomic: a crash never leaves half a weights file under the real name
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} not found")
    try:
        if path.suffix == ".safetensors":
            return read_safetensors(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001  (any reader failure means the same thing to the user)
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]  # an empty file: EOFError with no message
        raise CheckpointError(f"cannot read weights {str(path)!r}: {first_line}") from None
    for key in ("state_dict", "model", "student"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict")
    return state


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, checked against the checksum kdistill stored in it (when there is one)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            expected = (handle.metadata() or {}).get(CHECKSUM_KEY)
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read weights {str(path)!r} (damaged, or not safetensors): {exc}") from None
    if expected is not None and tensors_sha256(state) != expected:
        raise CheckpointError(f"weights file {str(path)!r} is damaged: its tensors do not match the checksum stored "
                              "when it was saved (flipped or truncated bytes); restore it or train it again")
    return state


def _strip_prefixes(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        if not (set(state) & expected) and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, path: str | Path, role: str = "model") -> None:
    """Load weights strictly; a mismatch is a CheckpointError that lists what does not fit."""
    own = model.state_dict()
    state = _strip_prefixes(read_state_dict(path), set(own))
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                   for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} of another shape (e.g. {'; '.join(wrong_shape[:2])})")
        raise CheckpointError(
            f"weights {str(path)!r} do not fit the {role}: {', '.join(parts)}; check the model name and kwargs"
        )
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:  # e.g. the last weights of a diverged run: evaluating them would print a meaningless accuracy
        raise CheckpointError(f"weights {str(path)!r} hold NaN or infinite values in {len(broken)} tensor(s) (e.g. "
                              f"{', '.join(broken[:3])}); the run that wrote them diverged: use its best checkpoint "
                              "or retrain with a lower optim.lr")
    model.load_state_dict(state, strict=True)
