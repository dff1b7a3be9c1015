"""Mixed precision: the autocast context, and `precision: auto` (the default of every stage).

On CPUs bf16 is a gamble: about 1.5-2.7x faster than fp32 with AVX512-BF16 or AMX, but about 10x
slower on AVX2-only machines, where it is emulated. `auto` therefore decides from what the CPU
reports first, and measures only where that says nothing:

1. $TINYBERT_AUTO_PRECISION (fp32 or bf16), when set, is the answer (a pin for CI or a CPU whose
   flags lie, e.g. a VM hiding them);
2. an x86 CPU whose flags are readable (/proc/cpuinfo): bf16 with `amx_bf16` or `avx512_bf16`,
   else fp32; without readable flags, torch's CPU capability AVX2 or less also means fp32;
3. anywhere else (ARM, an x86 without flags and with AVX-512): a matmul timed in both
   precisions, in interleaved rounds, the best time of each counting. Only a clear answer (every
   round bf16 > 1.25x faster, or every round < 0.8x) is cached, once per machine, torch version
   and thread count (in $TINYBERT_CACHE, else ~/.cache/tinybert; a missing, unreadable or
   corrupt cache is measured again); an unclear one, as on a busy machine, holds for this process
   only and is measured again next time.

On a CUDA GPU `auto` is bf16 where the GPU supports it (Ampere and newer), else fp32; loss-scaled
fp16 is only ever used when asked for (old GPUs).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import Path

import torch

from tinybert.errors import UserError
from tinybert.paths import write_atomic

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bf16 matmuls
PIN_ENV = "TINYBERT_AUTO_PRECISION"  # what `auto` resolves to on a CPU, when set
CLEARLY_FASTER, CLEARLY_SLOWER = 1.25, 0.8  # a probe's speedup outside these is a clear answer

# Unclear probe answers, per cache key: one process decides once (phase 2's teacher logits and
# its training agree), but the next process measures again.
_THIS_PROCESS: dict[str, bool] = {}


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
    return explain_precision(precision, device)[0]


def explain_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """(resolved precision, why) for `precision` on `device`: why is "" unless it was auto,
    else a few words for the stage's banner ("the CPU has avx512_bf16")."""
    if precision != "auto":
        return precision, ""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ("bf16", "the GPU supports bf16") if ok else ("fp32", "the GPU lacks bf16")
    if device.type != "cpu":
        return "fp32", f"no bf16 autocast chosen on {device.type}"
    return _cpu_choice()


def precision_label(resolved: str, setting: str | None) -> str:
    """How a stage's precision is shown: "bf16 (auto)" when auto chose it, else the value."""
    return f"{resolved} (auto)" if setting == "auto" and resolved != "auto" else resolved


def _cpu_choice() -> tuple[str, str]:
    pinned = os.environ.get(PIN_ENV)
    if pinned:
        if pinned not in ("fp32", "bf16"):
            raise UserError(f"${PIN_ENV}={pinned!r}: set it to fp32 or bf16, or unset it")
        return pinned, f"set by ${PIN_ENV}"
    native = cpu_bf16_support()
    if native is not None:
        fast, why = native
        return ("bf16" if fast else "fp32"), why
    faster, how = _probe_choice()
    return ("bf16" if faster else "fp32"), how


def cpu_flags() -> set[str] | None:
    """The first CPU's flags from /proc/cpuinfo on an x86 machine; None where they cannot be
    read (not Linux, not x86: an ARM's "Features" say nothing of bf16 speed)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return None
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def cpu_bf16_support() -> tuple[bool, str] | None:
    """(bf16 is fast, why) from what the CPU reports, or None when it says nothing and only a
    probe can tell."""
    if not torch.backends.mkldnn.is_available():
        return None  # a torch without oneDNN: the flags say nothing about its bf16 matmuls
    flags = cpu_flags()
    if flags is not None:
        found = [f for f in BF16_FLAGS if f in flags]
        if found:
            return True, f"the CPU has {found[0]}"
        return False, "the CPU has no avx512_bf16 or amx_bf16"
    is_x86 = platform.machine().lower() in ("x86_64", "amd64")
    if is_x86 and torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2"):
        return False, "the CPU has no AVX-512 (torch capability AVX2 or less)"
    return None


def _probe_choice() -> tuple[bool, str]:
    """(bf16 is faster, why) from the cache, this process's earlier answer, or a new probe."""
    key = f"{platform.machine()}-{_cpu_name()}-torch{torch.__version__}-threads{torch.get_num_threads()}"
    path = cache_dir() / "bf16_probe.json"
    cached = _read_cache(path)
    if isinstance(cached.get(key), bool):  # anything else is a corrupt entry: measure again
        return cached[key], f"measured earlier, cached in {path}"
    if key in _THIS_PROCESS:
        return _THIS_PROCESS[key], "measured in this process (unclear, not cached)"
    faster, clear, best = judge_probe(bf16_probe_times())
    if not clear:
        _THIS_PROCESS[key] = faster
        return faster, f"measured bf16 {best:.2f}x fp32, unclear (busy machine?): not cached"
    cached[key] = faster
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cached, indent=1) + "\n")
    except OSError:  # a read-only home only costs the probe next time
        pass
    return faster, f"measured bf16 {best:.2f}x fp32"


def judge_probe(times: list[tuple[float, float]]) -> tuple[bool, bool, float]:
    """(bf16 is faster, the answer is clear, speedup) from (fp32 s, bf16 s) per round. The
    speedup compares the best time of each precision (a busy moment only slows a round down);
    the answer is clear when every round alone says the same with margin."""
    best = min(f for f, _ in times) / max(min(b for _, b in times), 1e-12)
    rounds = [f / max(b, 1e-12) for f, b in times]
    clear = all(r > CLEARLY_FASTER for r in rounds) or all(r < CLEARLY_SLOWER for r in rounds)
    return best > CLEARLY_FASTER, clear, best


def bf16_probe_times(
    rounds: int = 3, size: int = 1024, repeats: int = 3
) -> list[tuple[float, float]]:
    """(fp32 s, bf16 s) of `repeats` (size x size) matmuls, per round; the two precisions are
    timed back to back within a round, so a load that comes and goes falls on both."""
    a = torch.randn(size, size)
    pairs = {dtype: a.to(dtype) for dtype in (torch.float32, torch.bfloat16)}
    for x in pairs.values():
        x @ x  # warm-up
    out = []
    for _ in range(rounds):
        times = []
        for x in pairs.values():
            t0 = time.perf_counter()
            for _ in range(repeats):
                x @ x
            times.append(time.perf_counter() - t0)
        out.append((times[0], times[1]))
    return out


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
