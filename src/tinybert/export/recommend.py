"""Which backend serves a model fastest on this machine, from `tinybert benchmark`'s speed.json.

    rec = recommend("runs/sst2/student/prediction/best", batch_size=32)
    print(rec.line() if rec else benchmark_hint("runs/sst2/student/prediction/best"))

speed.json (beside the model; for an export folder, beside its parent model) holds sequences/s
per backend, precision and batch size as measured on the machine that ran the benchmark, and
int8's dev-metric change from the export's export.json. The recommendation is the fastest row
at the measured batch size nearest to the one asked, with int8's accuracy cost beside it: speed
is measured, the accuracy trade is the user's to make. Pure JSON: no torch, no onnxruntime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tinybert.export.runtime import EXPORT_SUBDIR, INT8_FILE, is_export_dir

SPEED_FILE = "speed.json"
EXPORT_REPORT = "export.json"  # export/onnx.py's REPORT_FILE (onnx.py imports torch)


@dataclass(frozen=True)
class Recommendation:
    """The fastest measured backend at one batch size, and what int8 costs in dev accuracy."""

    batch_size: int  # the measured batch size this is for
    backend: str  # "torch" or "onnx"
    precision: str  # fp32, bf16 (torch) or int8 (onnx)
    sequences_per_s: float
    vs_torch_fp32: float | None  # speed-up over torch fp32 at the same batch size
    int8: dict | None  # int8_accuracy(): metric, fp32, int8, delta_points
    machine: str
    measured_at: str

    def line(self) -> str:
        """One line for the console, e.g. "fastest at batch 32 here: onnx int8, 1342.8
        sequences/s (1.9x torch fp32); int8 changes dev accuracy by -0.46 points"."""
        speedup = f" ({self.vs_torch_fp32:.1f}x torch fp32)" if self.vs_torch_fp32 else ""
        text = (
            f"fastest at batch {self.batch_size} here: {self.backend} {self.precision}, "
            f"{self.sequences_per_s:.1f} sequences/s{speedup}"
        )
        if self.int8 is not None:
            text += f"; {int8_sentence(self.int8)}"
        return text + f" (speed.json, {self.measured_at[:10]})"


def int8_sentence(int8: dict) -> str:
    return f"int8 changes dev {int8['metric']} by {int8['delta_points']:+.2f} points"


def fastest_rows(rows: list[dict]) -> list[dict]:
    """Per batch size (in the rows' order), the row with the most sequences/s, with its
    speed-up over torch fp32 at that size (None where torch fp32 was not measured)."""
    best: dict[int, dict] = {}
    fp32: dict[int, float] = {}
    for row in rows:
        size = row["batch_size"]
        if _is_fp32(row):
            fp32[size] = row["sequences_per_s"]
        if size not in best or row["sequences_per_s"] > best[size]["sequences_per_s"]:
            best[size] = row
    out = []
    for size, row in best.items():
        base = fp32.get(size)
        ratio = round(row["sequences_per_s"] / base, 2) if base else None
        keys = ("batch_size", "backend", "precision", "sequences_per_s", "file")
        out.append({**{k: row.get(k) for k in keys}, "vs_torch_fp32": ratio})
    return out


def int8_accuracy(folder: Path | None) -> dict | None:
    """int8's change of the dev main metric against PyTorch fp32, from the export's
    export.json (written by `tinybert export --int8` with a task): {"metric", "fp32", "int8",
    "delta_points"}; None without one (no task given, no int8 file, unreadable)."""
    if folder is None:
        return None
    try:
        report = json.loads((folder / EXPORT_REPORT).read_text(encoding="utf-8"))
        key = report["main_metric"]
        fp32, int8 = report["metrics"]["pytorch"][key], report["metrics"][INT8_FILE][key]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    delta = round(100 * (int8 - fp32), 2)
    return {"metric": key, "fp32": fp32, "int8": int8, "delta_points": delta}


def speed_file(model_dir: str | Path) -> Path:
    """Where `tinybert benchmark` wrote (or writes) the model's speed.json: in the model
    folder, or for an export folder <model>/onnx in its parent model folder."""
    folder = Path(model_dir)
    parent = folder.parent
    if folder.name == EXPORT_SUBDIR and is_export_dir(folder) and (parent / SPEED_FILE).is_file():
        return parent / SPEED_FILE
    return folder / SPEED_FILE


def read_speed(model_dir: str | Path) -> dict | None:
    """The model's speed.json, or None when there is none or it cannot be read (an old or
    damaged file only loses the recommendation, never the command)."""
    try:
        result = json.loads(speed_file(model_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(result, dict) and isinstance(result.get("results"), list)
    return result if ok else None


def recommend(
    model_dir: str | Path, batch_size: int, backends: tuple[str, ...] = ("torch", "onnx")
) -> Recommendation | None:
    """The fastest of `backends` in the model's speed.json at the measured batch size nearest
    to `batch_size` (the smaller on a tie); None without a usable speed.json."""
    result = read_speed(model_dir)
    if result is None:
        return None
    try:
        rows = [r for r in result["results"] if r["backend"] in backends]
        if not rows:
            return None
        size = min({r["batch_size"] for r in rows}, key=lambda b: (abs(b - batch_size), b))
        best = max((r for r in rows if r["batch_size"] == size), key=_rate)
        base = [_rate(r) for r in result["results"] if _is_fp32(r) and r["batch_size"] == size]
    except (KeyError, TypeError, ValueError):
        return None
    ratio = round(_rate(best) / base[0], 2) if base and base[0] > 0 else None
    return Recommendation(
        size,
        best["backend"],
        best["precision"],
        best["sequences_per_s"],
        ratio,
        result.get("int8_accuracy"),
        str(result.get("machine", "")),
        str(result.get("measured_at", "")),
    )


def _rate(row: dict) -> float:
    return float(row["sequences_per_s"])


def _is_fp32(row: dict) -> bool:
    return (row["backend"], row["precision"]) == ("torch", "fp32")


def benchmark_hint(model_dir: str | Path) -> str:
    """What to run to get a recommendation."""
    return (
        "to choose a backend for this machine, run `tinybert benchmark --config CONFIG "
        f"--model {model_dir}` (sequences/s of torch fp32/bf16 and ONNX fp32/int8 -> speed.json)"
    )


def recommendation_lines(model_dir: str | Path) -> list[str]:
    """For `tinybert export`: the fastest backend at each batch size the model's speed.json
    measured, and int8's accuracy change; or how to measure them."""
    result = read_speed(model_dir)
    fastest = result.get("fastest") if result else None
    if not result or not isinstance(fastest, list) or not fastest:
        return [benchmark_hint(model_dir)]
    when = str(result.get("measured_at", ""))[:10]
    lines = [f"fastest on {result.get('machine', 'this machine')} (speed.json, {when}):"]
    try:
        lines += [_fastest_line(best) for best in fastest]
    except (KeyError, TypeError, ValueError):  # a damaged file: say how to measure again
        return [benchmark_hint(model_dir)]
    if result.get("int8_accuracy"):
        lines.append("  " + int8_sentence(result["int8_accuracy"]))
    lines.append("  `tinybert predict --backend fastest` runs the fastest at its --batch-size")
    return lines


def _fastest_line(best: dict) -> str:
    ratio = best.get("vs_torch_fp32")
    return (
        f"  batch {best['batch_size']}: {best['backend']} {best['precision']}, "
        f"{float(best['sequences_per_s']):.1f} sequences/s"
        + (f" ({ratio:.2f}x torch fp32)" if ratio else "")
    )
