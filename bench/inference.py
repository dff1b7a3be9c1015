"""Inference speed: teacher vs student through each backend, and `predict` vs a transformers pipeline.

Part 1 (throughput): a BERT-base-shaped teacher (12 layers, 768 hidden) and a TinyBERT-4L-312
student, random weights, sequences of 128 real tokens, batch 1 and 32, through

    torch-fp32   tinybert's PyTorch model
    torch-bf16   the same with bf16 weights (as `tinybert benchmark` and `predict` run bf16 on a
                 CPU: faster than autocast, which casts each weight on every call)
    ort-fp32     ONNX Runtime on the export's model_optimized.onnx (fused attention)
    ort-int8     ONNX Runtime on model_int8.onnx (dynamic int8 quantisation)

Each (model, backend, batch) runs in its own process so its peak memory (max RSS, or CUDA peak)
is its own (VmHWM); the exports are made once beforehand. Prints sequences/s, peak MiB and the
student/teacher speed-up per backend and batch.

Part 2 (predict): `tinybert predict` on the SST-2 dev sentences (TSV in, JSONL out, model load
excluded, best of 2 runs) with each backend, against transformers' pipeline("text-classification")
on the same student weights (its default batch size 1, and the same batch size as predict).
The student is --model DIR, or a random 4L-312 saved with the all-MiniLM-L6-v2 tokenizer. With a
trained --model the dev accuracy of each backend is printed too.

    python bench/inference.py                     # everything (several minutes on 2 cores)
    python bench/inference.py --quick             # 1 timed iteration per config, student first
    python bench/inference.py --models student --backends ort-fp32 ort-int8 --batches 32
    python bench/inference.py --skip-throughput --model runs/sst2/student/prediction/best
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHAPES = {
    "teacher": dict(
        num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072
    ),
    "student": dict(
        num_hidden_layers=4, hidden_size=312, num_attention_heads=12, intermediate_size=1200
    ),
}
BACKENDS = ("torch-fp32", "torch-bf16", "ort-fp32", "ort-int8")
PREDICT_BACKENDS = (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8"))


def peak_mib() -> float:
    """This process's peak memory: CUDA peak allocation on a GPU, else VmHWM (peak RSS).

    Not ru_maxrss: Linux carries the parent's RSS at fork into the child's ru_maxrss."""
    torch = sys.modules.get("torch")  # ONNX Runtime runs never import it
    if torch is not None and torch.cuda.is_available() and torch.cuda.max_memory_allocated():
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_model(shape: str, num_labels: int = 2):
    import torch

    from tinybert.model import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(num_labels=num_labels, id2label=("0", "1"), **SHAPES[shape])
    return BertForSequenceClassification(config).eval()


# ---------------------------------------------------------------------------------------------
# part 1: throughput


def prepare_exports(workdir: Path, shapes: list[str]) -> None:
    """model_optimized.onnx and model_int8.onnx of each random model, made once."""
    from tinybert.export.onnx import optimize_onnx, quantize_int8, write_onnx

    for shape in shapes:
        folder = workdir / shape
        if (folder / "model_int8.onnx").is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        model = random_model(shape)
        write_onnx(model, folder / "model.onnx")
        optimize_onnx(folder / "model.onnx", folder / "model_optimized.onnx", 12, model.config.hidden_size)  # fmt: skip
        quantize_int8(folder / "model.onnx", folder / "model_int8.onnx")
        print(f"exported {shape} in {time.perf_counter() - t0:.0f} s", flush=True)


def time_one(
    shape: str, backend: str, batch: int, seq: int, iters: int, min_s: float, workdir: Path
):
    """Median seconds per forward of `batch` sequences of `seq` real tokens (after a warm-up)."""
    ids = np.random.default_rng(0).integers(1000, 30000, (batch, seq))
    inputs = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }
    if backend.startswith("ort"):  # no torch import here: the peak is ONNX Runtime's own
        from tinybert.export.runtime import OnnxLogits

        name = "model_optimized.onnx" if backend == "ort-fp32" else "model_int8.onnx"
        fn = OnnxLogits(workdir / shape / name)
    else:
        import torch

        from tinybert.train.inference import bf16_logits_fn, torch_logits_fn

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        inputs = {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}
        model = random_model(shape).to(device)
        bf16 = backend == "torch-bf16"
        base = bf16_logits_fn(model, device) if bf16 else torch_logits_fn(model, device)

        def fn(b):
            with torch.no_grad():
                out = base(b)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return out

    fn(inputs)  # warm-up: allocations, kernel choice
    times, start = [], time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_s:
        t0 = time.perf_counter()
        fn(inputs)
        times.append(time.perf_counter() - t0)
    seconds = sorted(times)[len(times) // 2]
    return {
        "model": shape,
        "backend": backend,
        "batch": batch,
        "seq": seq,
        "seq_per_s": batch / seconds,
        "ms_per_batch": 1000 * seconds,
        "peak_mib": peak_mib(),
        "iters": len(times),
    }


def throughput(args, workdir: Path) -> list[dict]:
    prepare_exports(workdir, [m for m in args.models if any(b.startswith("ort") for b in args.backends)])  # fmt: skip
    rows = []
    for shape in args.models:
        for backend in args.backends:
            for batch in args.batches:
                cmd = [sys.executable, __file__, "--one", shape, backend, str(batch)]
                cmd += ["--seq", str(args.seq), "--iters", str(args.iters)]
                cmd += ["--min-seconds", str(args.min_seconds), "--workdir", str(workdir)]
                r = _child(cmd)
                rows.append(r)
                print(
                    f"{shape:>8} {backend:>10} batch {batch:>3}: {r['seq_per_s']:9.1f} seq/s "
                    f"{r['ms_per_batch']:9.1f} ms/batch  peak {r['peak_mib']:6.0f} MiB",
                    flush=True,
                )
    return rows


def speedups(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        if r["model"] != "student":
            continue
        teacher = next(
            (
                t
                for t in rows
                if t["model"] == "teacher"
                and t["backend"] == r["backend"]
                and t["batch"] == r["batch"]
            ),  # fmt: skip
            None,
        )
        if teacher:
            x = r["seq_per_s"] / teacher["seq_per_s"]
            lines.append(f"student/teacher {r['backend']:>10} batch {r['batch']:>3}: {x:5.1f}x")
    return lines


# ---------------------------------------------------------------------------------------------
# part 2: predict vs pipeline


def make_student(workdir: Path) -> Path:
    """A random TinyBERT-4L-312 with the MiniLM vocabulary and tokenizer, as a saved model."""
    from tinybert.model import save_model

    tokenizer = SHARED / "models" / "all-MiniLM-L6-v2"
    if not tokenizer.is_dir():
        raise SystemExit(f"needs {tokenizer} for the tokenizer, or --model DIR")
    out = workdir / "student-model"
    save_model(random_model("student"), out, tokenizer_dir=tokenizer)
    return out


def predict_one(
    model_dir: str, export_dir: str, backend: str, precision: str, dev: str, batch: int
):
    from tinybert.predict import PredictOptions, Predictor, predict_file

    t0 = time.perf_counter()
    target = model_dir if backend == "torch" else export_dir
    predictor = Predictor(target, backend=backend, precision=precision)
    load_s = time.perf_counter() - t0
    out = Path(tempfile.mkdtemp()) / "out.jsonl"
    options = PredictOptions(batch_size=batch)
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        stats = predict_file(predictor, dev, str(out), options=options, show_progress=False)
        best = min(best, time.perf_counter() - t0)
    labels = [json.loads(line)["label"] for line in out.read_text().splitlines()]
    return {
        "impl": f"predict {backend} {precision}",
        "sentences": stats.inputs,
        "seconds": best,
        "sent_per_s": stats.inputs / best,
        "load_s": load_s,
        "peak_mib": peak_mib(),
        "accuracy": _accuracy(dev, labels),
    }


def pipeline_one(model_dir: str, dev: str, batch: int | None):
    import transformers

    t0 = time.perf_counter()
    pipe = transformers.pipeline("text-classification", model=model_dir, device="cpu")
    load_s = time.perf_counter() - t0
    sentences = _dev_sentences(dev)
    kwargs = {"truncation": True, "max_length": 128}
    if batch:
        kwargs["batch_size"] = batch
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        out = pipe(sentences, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return {
        "impl": f"transformers pipeline batch {batch or 'default (1)'}",
        "sentences": len(sentences),
        "seconds": best,
        "sent_per_s": len(sentences) / best,
        "load_s": load_s,
        "peak_mib": peak_mib(),
        "accuracy": _accuracy(dev, [o["label"] for o in out]),
    }


def _dev_rows(dev: str) -> list[list[str]]:
    lines = Path(dev).read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines[1:] if line]


def _dev_sentences(dev: str) -> list[str]:
    return [row[0] for row in _dev_rows(dev)]


def _accuracy(dev: str, predicted: list[str]) -> float | None:
    gold = [row[-1] for row in _dev_rows(dev)]
    if len(gold) != len(predicted):
        return None
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)


def predict_bench(args, workdir: Path) -> list[dict]:
    from tinybert.export.onnx import export_model

    model_dir = Path(args.model) if args.model else make_student(workdir)
    export_dir = workdir / "student-export"
    export_model(model_dir, export_dir, optimize=True, int8=True)
    rows = []
    jobs = [["--predict-one", b, p] for b, p in PREDICT_BACKENDS if f"{'ort' if b == 'onnx' else b}-{p}" in args.backends]  # fmt: skip
    jobs += [["--pipeline-one", "0"], ["--pipeline-one", str(args.predict_batch)]]
    for job in jobs:
        cmd = [sys.executable, __file__, *job, "--model", str(model_dir), "--dev", args.dev]
        cmd += ["--workdir", str(workdir), "--predict-batch", str(args.predict_batch)]
        r = _child(cmd)
        rows.append(r)
        acc = "" if r["accuracy"] is None else f"  dev accuracy {r['accuracy']:.4f}"
        print(
            f"{r['impl']:>38}: {r['sent_per_s']:8.1f} sentences/s ({r['sentences']} in "
            f"{r['seconds']:.2f} s; load {r['load_s']:.1f} s) peak {r['peak_mib']:5.0f} MiB{acc}",
            flush=True,
        )
    return rows


def _child(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="+", default=["student", "teacher"], choices=list(SHAPES))
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--iters", type=int, default=5, help="timed forwards per config (at least)")
    ap.add_argument("--min-seconds", type=float, default=3.0, help="and at least this long")
    ap.add_argument("--quick", action="store_true", help="1 timed forward per config, no minimum")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-predict", action="store_true")
    ap.add_argument("--model", help="predict: a trained student dir (default: random 4L-312)")
    ap.add_argument("--dev", default=str(SHARED / "data" / "glue" / "SST-2" / "dev.tsv"))
    ap.add_argument("--predict-batch", type=int, default=64)
    ap.add_argument("--workdir", help="where exports go (default: a temporary folder)")
    ap.add_argument("--json", help="also write all rows to this JSON file")
    ap.add_argument("--one", nargs=3, metavar=("MODEL", "BACKEND", "BATCH"), help=argparse.SUPPRESS)
    ap.add_argument("--predict-one", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--pipeline-one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.iters, args.min_seconds = 1, 0.0
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tinybert-bench-"))
    if args.one:
        shape, backend, batch = args.one
        r = time_one(shape, backend, int(batch), args.seq, args.iters, args.min_seconds, workdir)
        print(json.dumps(r))
        return
    if args.predict_one:
        export_dir = str(workdir / "student-export")
        r = predict_one(args.model, export_dir, *args.predict_one, args.dev, args.predict_batch)
        print(json.dumps(r))
        return
    if args.pipeline_one is not None:
        print(json.dumps(pipeline_one(args.model, args.dev, args.pipeline_one or None)))
        return
    import onnxruntime
    import torch

    versions = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    print(f"{versions}, {torch.get_num_threads()} threads, workdir {workdir}")
    result = {"threads": torch.get_num_threads(), **versions}
    if not args.skip_throughput:
        result["throughput"] = throughput(args, workdir)
        for line in speedups(result["throughput"]):
            print(line)
    if not args.skip_predict:
        result["predict"] = predict_bench(args, workdir)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
