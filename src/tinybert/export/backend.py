"""Which engine runs a saved model: PyTorch (a model directory) or ONNX Runtime (an export).

Shared by `tinybert evaluate` and `tinybert predict`, so both read --model the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from tinybert.errors import UserError
from tinybert.export.runtime import export_dir
from tinybert.model.hub import WEIGHTS_FILES
from tinybert.train.precision import resolve_precision

Backend = Literal["torch", "onnx"]


def resolve_backend(
    model_dir: str | Path, backend: str = "auto", onnx_file: str | None = None
) -> Backend:
    """ "torch" or "onnx": as asked; for "auto", ONNX if --onnx is given or the folder is an
    export without PyTorch weights, else PyTorch."""
    if backend not in ("auto", "torch", "onnx"):
        raise UserError(f"unknown backend {backend!r}; use auto, torch or onnx")
    if backend != "auto":
        return "torch" if backend == "torch" else "onnx"
    if onnx_file:
        return "onnx"
    folder = Path(model_dir)
    has_weights = any((folder / n).is_file() for n in WEIGHTS_FILES)
    return "onnx" if export_dir(folder) == folder and not has_weights else "torch"


def check_precision(backend: str, precision: str) -> None:
    allowed = {"torch": ("auto", "fp32", "bf16"), "onnx": ("auto", "fp32", "int8")}[backend]
    if precision not in allowed:
        raise UserError(
            f"--precision {precision} is not available with the {backend} backend "
            f"(use {', '.join(allowed[:-1])} or {allowed[-1]}; int8 runs the export's "
            "model_int8.onnx)"
        )


def serving_precision(backend: str, precision: str, device: torch.device) -> str:
    """`precision` checked for `backend`, "auto" resolved: for torch as training resolves it
    (bf16 where this machine is fast at it), for ONNX Runtime fp32 (int8 only when asked: it
    costs accuracy)."""
    check_precision(backend, precision)
    if precision != "auto":
        return precision
    return resolve_precision(precision, device) if backend == "torch" else "fp32"
