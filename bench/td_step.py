"""Time one task-distillation step (phase 1: attention + hidden + embedding losses).

Teacher: BERT-base shape (12 layers, 768 hidden, 12 heads), frozen. Student: TinyBERT-4L-312.
Random weights, batch 32, sequence length 128, AdamW step included.

    ours:         tinybert's model and IntermediateLoss (pre-softmax scores, one fused path)
    transformers: a straightforward step on transformers' BertModel (eager attention,
                  output_hidden_states and output_attentions; MSE on attention probabilities,
                  the closest it can return to scores)

Each (implementation, precision) runs in its own process so peak memory is its own.

    python bench/td_step.py                      # all four on CPU
    python bench/td_step.py --precisions bf16 --steps 1
    python bench/td_step.py --device cuda --steps 20

This step is also one general-distillation step (GD uses the same three losses). The GD figure
asked for on a GPU (BERT-base teacher -> 4L-312, bf16, batch 256, seq 128):

    python bench/td_step.py --device cuda --batch 256 --precisions bf16 --steps 20 --peak-tflops 989

Model FLOPs utilisation counts the matrix products only: teacher forward (2 FLOPs per weight and
token, plus QK^T and AV), student forward + backward (3x its forward), projections included.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

BASE = dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072)
SMALL = dict(num_hidden_layers=4, hidden_size=312, num_attention_heads=12, intermediate_size=1200)


def batch(device: torch.device, size: int, seq: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (size, seq), generator=g)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "token_type_ids": torch.zeros_like(ids).to(device),
    }


def forward_flops(shape: dict, tokens: int, seq: int) -> float:
    """Matmul FLOPs of one encoder forward over `tokens` tokens (sequences of length `seq`)."""
    h, layers, inter = shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"]
    per_token = layers * (2 * (4 * h * h + 2 * h * inter) + 2 * 2 * seq * h)
    return per_token * tokens


def step_flops(size: int, seq: int) -> float:
    tokens = size * seq
    projection = 2 * 312 * 768 * tokens * 5
    return forward_flops(BASE, tokens, seq) + 3 * (forward_flops(SMALL, tokens, seq) + projection)


def ours_step(device: torch.device):
    from tinybert.config import DistillConfig
    from tinybert.distill.mapping import uniform_layer_map
    from tinybert.distill.objectives import IntermediateLoss
    from tinybert.distill.projection import HiddenProjection
    from tinybert.model import BertConfig, BertForSequenceClassification

    teacher = BertForSequenceClassification(BertConfig(**BASE)).to(device).eval()
    teacher.requires_grad_(False)
    student = BertForSequenceClassification(BertConfig(**SMALL)).to(device)
    projection = HiddenProjection(312, 768, 5, shared=True).to(device)
    loss_fn = IntermediateLoss(
        student, teacher, projection, uniform_layer_map(4, 12), DistillConfig()
    )
    params = list(student.parameters()) + list(projection.parameters())
    return (lambda b: loss_fn(b)[0]), params


def transformers_step(device: torch.device):
    import transformers

    def hf(shape):
        config = transformers.BertConfig(**shape, attn_implementation="eager")
        return transformers.BertModel(config).to(device)

    teacher, student = hf(BASE).eval(), hf(SMALL)
    teacher.requires_grad_(False)
    projection = torch.nn.Linear(312, 768).to(device)
    mse = torch.nn.functional.mse_loss

    def loss(b):
        kw = {"output_hidden_states": True, "output_attentions": True}
        with torch.no_grad():
            t = teacher(**b, **kw)
        s = student(**b, **kw)
        att = sum(mse(s.attentions[i], t.attentions[3 * i + 2]) for i in range(4))
        hid = sum(mse(projection(s.hidden_states[i]), t.hidden_states[3 * i]) for i in range(5))
        return att + hid

    return loss, list(student.parameters()) + list(projection.parameters())


def run_one(impl: str, precision: str, device: torch.device, steps: int, size: int, seq: int):
    torch.manual_seed(0)
    loss_fn, params = (ours_step if impl == "ours" else transformers_step)(device)
    opt = torch.optim.AdamW(params, lr=1e-4)
    b = batch(device, size, seq)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    times = []
    for i in range(steps + 1):  # the first step warms up (allocations, kernels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with amp:
            loss = loss_fn(b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "impl": impl,
        "precision": precision,
        "ms_per_step": 1000 * sorted(times)[len(times) // 2],
        "peak_mib": peak,
        "device": str(device),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--peak-tflops", type=float, help="the device's peak, for MFU (H100 bf16: 989)")
    ap.add_argument("--one", nargs=2, metavar=("IMPL", "PRECISION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.one:
        print(json.dumps(run_one(*args.one, device, args.steps, args.batch, args.seq)))
        return
    rows = []
    for precision in args.precisions:
        for impl in ("ours", "transformers"):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                impl,
                precision,
                "--device",
                args.device,
                "--steps",
                str(args.steps),
                "--batch",
                str(args.batch),
                "--seq",
                str(args.seq),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            r["sequences_per_s"] = args.batch / (r["ms_per_step"] / 1000)
            r["tflops"] = step_flops(args.batch, args.seq) / (r["ms_per_step"] / 1000) / 1e12
            if args.peak_tflops:
                r["mfu"] = r["tflops"] / args.peak_tflops
            print(
                f"{impl:>12} {precision}: {r['ms_per_step']:8.1f} ms/step  "
                f"{r['sequences_per_s']:8.1f} seq/s  {r['tflops']:6.2f} TFLOP/s  "
                f"peak {r['peak_mib']:7.0f} MiB" + (f"  MFU {r['mfu']:.1%}" if "mfu" in r else ""),
                flush=True,
            )
    for precision in args.precisions:
        ours, hf = (
            next(r for r in rows if r["impl"] == i and r["precision"] == precision)
            for i in ("ours", "transformers")
        )
        print(
            f"{precision}: ours is {hf['ms_per_step'] / ours['ms_per_step']:.2f}x the speed of the "
            f"transformers step, peak memory {ours['peak_mib'] / hf['peak_mib']:.2f}x"
        )
    print(
        json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows})
    )


if __name__ == "__main__":
    main()
