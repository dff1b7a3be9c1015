"""Time one task-distillation step, ours vs a plain transformers step, side by side.

Teacher: BERT-base shape (12 layers, 768 hidden, 12 heads), frozen. Student: TinyBERT-4L-312.
Random weights (both sides get the same ones), batch 32, no padding, backward and a fused
AdamW step included. The grid: sequence length x precision x phase.

    phase 1 (intermediate): attention + hidden + embedding losses
        ours:         tinybert's models and IntermediateLoss (pre-softmax scores), as the trainer
                      runs them (autocast around the objective)
        transformers: BertModel with eager attention, output_hidden_states and output_attentions
                      (MSE on attention probabilities: it cannot return pre-softmax scores)
    phase 2 (prediction): soft cross-entropy on the logits at the configured temperature
        ours:         the teacher's logits as the trainer computes them (`logits_over`'s forward,
                      no scores), then PredictionLoss on the student
        transformers: BertForSequenceClassification (its default attention), the teacher under
                      no_grad, then -softmax(t/T) . log_softmax(s/T)
        The trainer computes the teacher's logits once per row for the whole phase, not once per
        step; both sides run the teacher in every timed step here so that the steps compare.

Within one cell the two implementations alternate step by step (the order flips every round),
so machine load hits both alike. Each reports its best step after `--warmup` steps; the ratio
is the median over rounds of the paired ratio (transformers' step / ours in the same round),
steadier than the ratio of the best steps on a machine whose load comes and goes.

    python bench/td_step.py                        # the full CPU grid (a few minutes)
    python bench/td_step.py --seqs 128 --precisions bf16 --phases 1 --steps 2

This step is also one general-distillation step (GD uses phase 1's losses). The GD figure asked
for on a GPU (BERT-base teacher -> 4L-312, bf16, batch 256, seq 128):

    python bench/td_step.py --device cuda --batch 256 --seqs 128 --precisions bf16 --phases 1 \
        --steps 20 --peak-tflops 989

Model FLOPs utilisation counts the matrix products only: teacher forward (2 FLOPs per weight and
token, plus QK^T and AV), student forward + backward (3x its forward), projections included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

BASE = dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072)
SMALL = dict(num_hidden_layers=4, hidden_size=312, num_attention_heads=12, intermediate_size=1200)
IMPLS = ("ours", "transformers")

Batch = dict[str, torch.Tensor]
LossFn = Callable[[Batch], torch.Tensor]


def make_batch(device: torch.device, size: int, seq: int) -> Batch:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (size, seq), generator=g)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "token_type_ids": torch.zeros_like(ids).to(device),
        "labels": torch.randint(0, 2, (size,), generator=g).to(device),
        "index": torch.arange(size).to(device),
    }


def forward_flops(shape: dict, tokens: int, seq: int) -> float:
    """Matmul FLOPs of one encoder forward over `tokens` tokens (sequences of length `seq`)."""
    h, layers, inter = shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"]
    per_token = layers * (2 * (4 * h * h + 2 * h * inter) + 2 * 2 * seq * h)
    return per_token * tokens


def step_flops(size: int, seq: int, phase: int) -> float:
    tokens = size * seq
    projection = 2 * 312 * 768 * tokens * 5 if phase == 1 else 0
    return forward_flops(BASE, tokens, seq) + 3 * (forward_flops(SMALL, tokens, seq) + projection)


# --------------------------------------------------------------------------------- the models


def ours_models(device: torch.device):
    from tinybert.model import BertConfig, BertForSequenceClassification

    teacher = BertForSequenceClassification(BertConfig(**BASE)).to(device).eval()
    teacher.requires_grad_(False)
    student = BertForSequenceClassification(BertConfig(**SMALL)).to(device)
    return teacher, student


def hf_models(ours_teacher, ours_student, attn: str, device: torch.device):
    """transformers' models with our weights (the parameter names are the same)."""
    import transformers

    def hf(shape, weights):
        config = transformers.BertConfig(**shape, attn_implementation=attn)
        model = transformers.BertForSequenceClassification(config).to(device)
        missing, unexpected = model.load_state_dict(weights.state_dict(), strict=False)
        assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
        return model

    teacher = hf(BASE, ours_teacher).eval()
    teacher.requires_grad_(False)
    return teacher, hf(SMALL, ours_student)


# --------------------------------------------------------------------------------- phase 1


def phase1(device: torch.device) -> dict[str, tuple[LossFn, list]]:
    from tinybert.config import DistillConfig
    from tinybert.distill.mapping import uniform_layer_map
    from tinybert.distill.objectives import IntermediateLoss
    from tinybert.distill.projection import HiddenProjection
    from tinybert.train.objective import Batch as TBatch

    teacher, student = ours_models(device)
    hf_teacher, hf_student = hf_models(teacher, student, "eager", device)
    projection = HiddenProjection(312, 768, 5, shared=True).to(device)
    hf_projection = torch.nn.Linear(312, 768).to(device)
    hf_projection.load_state_dict(projection.layers[0].state_dict())
    ours = IntermediateLoss(student, teacher, projection, uniform_layer_map(4, 12), DistillConfig())
    mse = torch.nn.functional.mse_loss
    names = ("input_ids", "attention_mask", "token_type_ids")

    def hf_loss(b: Batch) -> torch.Tensor:
        inputs = {k: b[k] for k in names}
        kw = {"output_hidden_states": True, "output_attentions": True}
        with torch.no_grad():
            t = hf_teacher.bert(**inputs, **kw)
        s = hf_student.bert(**inputs, **kw)
        att = sum(mse(s.attentions[i], t.attentions[3 * i + 2]) for i in range(4))
        hid = sum(mse(hf_projection(s.hidden_states[i]), t.hidden_states[3 * i]) for i in range(5))
        return att + hid

    return {
        "ours": (
            lambda b: ours(TBatch.from_rows(b))[0],
            [*student.parameters(), *projection.parameters()],
        ),
        "transformers": (hf_loss, [*hf_student.parameters(), *hf_projection.parameters()]),
    }


# --------------------------------------------------------------------------------- phase 2


def phase2(device: torch.device) -> dict[str, tuple[LossFn, list]]:
    from tinybert.config import DistillConfig
    from tinybert.distill.objectives import PredictionLoss
    from tinybert.train.inference import torch_logits_fn
    from tinybert.train.objective import Batch as TBatch

    teacher, student = ours_models(device)
    hf_teacher, hf_student = hf_models(teacher, student, "sdpa", device)
    cfg = DistillConfig()
    names = ("input_ids", "attention_mask", "token_type_ids")
    teacher_forward = torch_logits_fn(teacher, device)

    def ours_loss(b: Batch) -> torch.Tensor:
        with torch.no_grad():  # as logits_over runs the teacher (eval mode, autocast outside)
            t = teacher_forward({k: b[k] for k in names}).float()
        return PredictionLoss(student, t, cfg, regression=False)(TBatch.from_rows(b))[0]

    def hf_loss(b: Batch) -> torch.Tensor:
        inputs = {k: b[k] for k in names}
        with torch.no_grad():
            t = hf_teacher(**inputs).logits
        s = hf_student(**inputs).logits
        temp = cfg.temperature
        log_p = torch.log_softmax(s.float() / temp, dim=-1)
        return -(torch.softmax(t.float() / temp, dim=-1) * log_p).sum(-1).mean()

    return {
        "ours": (ours_loss, list(student.parameters())),
        "transformers": (hf_loss, list(hf_student.parameters())),
    }


# --------------------------------------------------------------------------------- timing


def timed_step(loss_fn: LossFn, opt, b: Batch, precision: str, device: torch.device) -> float:
    """One step as the trainer takes it: autocast forward, backward, clip, fused AdamW."""
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with amp:
        loss = loss_fn(b)
    loss.backward()
    params = [p for g in opt.param_groups for p in g["params"]]
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run_cell(impls, opts, b: Batch, precision: str, device, warmup: int, steps: int):
    """Alternate the implementations step by step (the order flips every round). Returns each
    one's best step time (ms) and the median over rounds of the paired ratio transformers/ours:
    the two steps of a round run back to back, so load that comes and goes hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in IMPLS}
    for i in range(warmup + steps):
        order = IMPLS if i % 2 == 0 else IMPLS[::-1]
        for name in order:
            t = timed_step(impls[name][0], opts[name], b, precision, device)
            if i >= warmup:
                times[name].append(t)
    ratios = [hf / ours for ours, hf in zip(times["ours"], times["transformers"], strict=True)]
    return {name: 1000 * min(ts) for name, ts in times.items()}, statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=7, help="timed steps per side and cell")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per side and cell")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seqs", "--seq", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--phases", nargs="+", type=int, default=[1, 2], choices=[1, 2])
    ap.add_argument("--peak-tflops", type=float, help="the device's peak, for MFU (H100 bf16: 989)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = []
    print(f"{'phase':>5} {'seq':>4} {'prec':>4} {'ours ms':>9} {'hf ms':>9} {'ratio':>6}")
    for phase in args.phases:
        torch.manual_seed(0)
        impls = (phase1 if phase == 1 else phase2)(device)
        opts = {n: torch.optim.AdamW(p, lr=1e-5, fused=True) for n, (_, p) in impls.items()}
        for seq in args.seqs:
            b = make_batch(device, args.batch, seq)
            for precision in args.precisions:
                ms, paired = run_cell(impls, opts, b, precision, device, args.warmup, args.steps)
                r = {
                    "phase": phase,
                    "seq": seq,
                    "precision": precision,
                    **{f"{n}_ms": ms[n] for n in IMPLS},
                }
                r["speedup"] = paired  # median of paired per-round ratios; > 1: ours is faster
                r["speedup_best"] = ms["transformers"] / ms["ours"]  # ratio of the best steps
                tflops = step_flops(args.batch, seq, phase) / (ms["ours"] / 1000) / 1e12
                r["ours_tflops"] = tflops
                extra = f"  {tflops:6.2f} TFLOP/s"
                if args.peak_tflops:
                    r["ours_mfu"] = tflops / args.peak_tflops
                    extra += f"  MFU {r['ours_mfu']:.1%}"
                rows.append(r)
                print(
                    f"{phase:>5} {seq:>4} {precision:>4} {ms['ours']:9.1f} "
                    f"{ms['transformers']:9.1f} {r['speedup']:5.2f}x" + extra,
                    flush=True,
                )
        del impls, opts
    meta = {"threads": torch.get_num_threads(), "torch": torch.__version__, "batch": args.batch}
    out = json.dumps({**meta, "rows": rows})
    print(out)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(out + "\n")


if __name__ == "__main__":
    main()
