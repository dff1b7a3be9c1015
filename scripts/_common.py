"""Helpers shared by the scripts in this folder (run them as `python scripts/NAME.py`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def tinybert(*args: str) -> None:
    """Run one `tinybert` command from the repository root; stop the script if it fails."""
    print(f"\n$ tinybert {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "tinybert", *args], cwd=ROOT)
    if done.returncode:
        sys.exit(done.returncode)


def bf16_is_faster() -> bool:
    """Time a training-sized matmul in both precisions: bf16 wins only with hardware support
    (it is ~10x slower than fp32 on AVX2-only CPUs, ~1.5x faster with AVX512-BF16 or AMX)."""
    import torch

    a = torch.randn(1024, 1024)
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = a.to(dtype)
        x @ x  # warm-up
        t0 = time.perf_counter()
        for _ in range(5):
            x @ x
        times[dtype] = time.perf_counter() - t0
    return times[torch.bfloat16] < 0.8 * times[torch.float32]


def precision_overrides(stages: tuple[str, ...]) -> tuple[str, list[str]]:
    """("bf16" or "fp32", ["<stage>.precision=..." for each stage]), whichever is faster here."""
    precision = "bf16" if bf16_is_faster() else "fp32"
    print(f"training precision on this CPU: {precision}", flush=True)
    return precision, [f"{stage}.precision={precision}" for stage in stages]
