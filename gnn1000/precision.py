"""Mixed precision: ``experiment.precision`` = '32', 'bf16' or '16', as torch's autocast runs it.

'16' adds a gradient scaler (float16's range loses small gradients without one); 'bf16' has
float32's range and needs none. Architectures need nothing of their own: autocast picks the dtype
per operation, and RevGNN's reversible backward re-enters the forward's autocast state.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("32", "bf16", "16")
_DTYPES = {"bf16": torch.bfloat16, "16": torch.float16}


def autocast(device: torch.device, precision: str):
    """The context a forward pass (training or inference) runs in."""
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def unsupported(device: torch.device, precision: str) -> str | None:
    """Why ``device`` cannot autocast to ``precision``, or None when it can (bfloat16 needs Ampere or newer)."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(device)} has no bfloat16"
    return None


def scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for float16 only (a disabled one passes every call through)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "16")
