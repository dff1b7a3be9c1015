"""Mixed precision: the autocast context, and `precision: auto` (bf16 where it is faster).

On CPUs bf16 is a gamble: about 1.5x faster than fp32 with AVX512-BF16 or AMX, but about 10x
slower on AVX2-only machines, where it is emulated. `auto` therefore measures: a training-sized
matmul in both precisions, once per machine, torch version and thread count (cached in
$TINYBERT_CACHE, else ~/.cache/tinybert; a missing, unreadable or corrupt cache is measured
again). On a CUDA GPU `auto` is bf16 where the GPU supports it (Ampere and newer), else fp32.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import Path

import torch

from tinybert.paths import write_atomic


def cache_dir() -> Path:
    """Where the probe's result is kept: $TINYBERT_CACHE (read at each call), else
    ~/.cache/tinybert."""
    return Path(os.environ.get("TINYBERT_CACHE") or Path.home() / ".cache" / "tinybert")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast for forward passes; fp32 runs as is. `precision` must be resolved."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto" -> "bf16" or "fp32" for this device; any other value is returned as is."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type != "cpu":
        return "fp32"
    return "bf16" if _cpu_bf16_is_faster() else "fp32"


def _cpu_bf16_is_faster() -> bool:
    key = f"{platform.machine()}-{_cpu_name()}-torch{torch.__version__}-threads{torch.get_num_threads()}"
    path = cache_dir() / "bf16_probe.json"
    cached = _read_cache(path)
    if isinstance(cached.get(key), bool):  # anything else is a corrupt entry: measure again
        return cached[key]
    faster = bf16_matmul_speedup() > 1.25
    cached[key] = faster
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cached, indent=1) + "\n")
    except OSError:  # a read-only home only costs the probe next time
        pass
    return faster


def bf16_matmul_speedup(size: int = 1024, repeats: int = 5) -> float:
    """fp32 time / bf16 time of a (size x size) matmul on this CPU (> 1: bf16 is faster)."""
    a = torch.randn(size, size)
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = a.to(dtype)
        x @ x  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            x @ x
        times[dtype] = time.perf_counter() - t0
    return times[torch.float32] / times[torch.bfloat16]


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"
