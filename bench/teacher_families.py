"""Time one task-distillation step per teacher family, beside transformers' eager forward of the
same teacher.

Teachers: random weights at base shape (BERT-base: 12 layers, 768 hidden, 12 heads; DistilBERT
6 layers; ModernBERT-base 22 layers, 1152 FFN, local attention every layer but every third;
DeBERTa-v3-base relative attention), every family with a 30,522-word vocabulary (the embedding
lookup costs nothing next to the layers; XLM-R's real 250k table would only take memory).
Student: TinyBERT-4L-312 with the teacher's vocabulary. Batch 32, no padding.

Per family and precision, three timings, alternated step by step (the order flips every round,
so machine load hits all alike), each the best of `--steps` after `--warmup`:
    td_step:     one phase-1 step as the trainer takes it: the teacher's forward through
                 tinybert (scores of the mapped layers, or probabilities for DeBERTa), the
                 student's forward and backward, attention + hidden + embedding losses, clip,
                 fused AdamW; autocast for bf16.
    ours_fwd:    the teacher's forward alone, as phase 1 runs it (no_grad, the mapped layers'
                 attention kept).
    eager_fwd:   transformers' own model with attn_implementation="eager",
                 output_hidden_states and output_attentions (what a plain implementation of
                 the same losses runs), no_grad.
`speedup` is the median over rounds of eager_fwd / ours_fwd in the same round (> 1: ours is
faster): issue 20 asks that a non-BERT teacher never makes a step slower than transformers' eager
model would.

    python bench/teacher_families.py                    # every family, fp32 and bf16
    python bench/teacher_families.py --families roberta modernbert --precisions bf16 --steps 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from td_step import make_batch  # bench/ is on sys.path when run as a script

BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
SHAPES: dict[str, dict] = {
    "bert": BASE,
    "roberta": {**BASE, "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1},
    "xlm-roberta": {
        **BASE,
        "max_position_embeddings": 514,
        "type_vocab_size": 1,
        "pad_token_id": 1,
    },
    "electra": {**BASE, "embedding_size": 768},
    "deberta-v2": {
        **BASE,
        "relative_attention": True,
        "position_buckets": 256,
        "max_relative_positions": -1,
        "pos_att_type": ["p2c", "c2p"],
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "position_biased_input": False,
        "type_vocab_size": 0,
    },
    "modernbert": {
        "hidden_size": 768,
        "num_hidden_layers": 22,
        "num_attention_heads": 12,
        "intermediate_size": 1152,
        "global_attn_every_n_layers": 3,
        "local_attention": 128,
        # its special ids sit at the end of its own 50k vocabulary
        "pad_token_id": 0,
        "cls_token_id": 1,
        "sep_token_id": 2,
        "bos_token_id": 1,
        "eos_token_id": 2,
    },
    "distilbert": {"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072},
}
SMALL = dict(num_hidden_layers=4, hidden_size=312, num_attention_heads=12, intermediate_size=1200)
TIMINGS = ("td_step", "ours_fwd", "eager_fwd")


def save_teacher(model_type: str, folder: Path) -> Path:
    """A random base-shape sequence classifier of `model_type`, saved as transformers saves it."""
    import transformers

    config = transformers.AutoConfig.for_model(model_type, vocab_size=30522, **SHAPES[model_type])
    torch.manual_seed(0)
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    return folder


def timers(folder: Path, b: dict, device: torch.device) -> dict[str, Callable[[], None]]:
    """The three timed actions of one family (see the module docstring)."""
    import transformers

    from tinybert.config import DistillConfig, StudentConfig
    from tinybert.distill.mapping import uniform_layer_map
    from tinybert.distill.objectives import IntermediateLoss
    from tinybert.distill.projection import HiddenProjection
    from tinybert.distill.student import freeze, student_shape
    from tinybert.model import BertForSequenceClassification, load_any_model
    from tinybert.train.objective import Batch

    teacher = freeze(load_any_model(folder, head="sequence")[0]).to(device)
    cfg = StudentConfig(**SMALL)
    student = BertForSequenceClassification(student_shape(cfg, teacher.config)).to(device)
    layers = uniform_layer_map(4, teacher.config.num_hidden_layers)
    projection = HiddenProjection(312, 768, 5, shared=True).to(device)
    loss = IntermediateLoss(student, teacher, projection, layers, DistillConfig())
    params = [*student.parameters(), *projection.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
    eager = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder, attn_implementation="eager"
    ).to(device)
    freeze(eager)
    inputs = {k: b[k] for k in ("input_ids", "attention_mask")}
    wanted = [j - 1 for j in layers]
    rows = Batch.from_rows(b)

    def td_step() -> None:
        loss(rows)[0].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def ours_fwd() -> None:
        with torch.no_grad():
            teacher(**inputs, output_hidden_states=True, output_attention_scores=wanted)

    def eager_fwd() -> None:
        with torch.no_grad():
            eager(**inputs, output_hidden_states=True, output_attentions=True)

    return {"td_step": td_step, "ours_fwd": ours_fwd, "eager_fwd": eager_fwd}


def timed(action: Callable[[], None], precision: str, device: torch.device) -> float:
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with amp:
        action()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run_cell(actions: dict, precision: str, device, warmup: int, steps: int) -> dict:
    times: dict[str, list[float]] = {name: [] for name in TIMINGS}
    for i in range(warmup + steps):
        for name in TIMINGS if i % 2 == 0 else TIMINGS[::-1]:
            t = timed(actions[name], precision, device)
            if i >= warmup:
                times[name].append(t)
    ratios = [e / o for o, e in zip(times["ours_fwd"], times["eager_fwd"], strict=True)]
    return {
        **{f"{name}_ms": 1000 * min(ts) for name, ts in times.items()},
        "speedup": statistics.median(ratios),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--families", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3, help="timed rounds per cell")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds per cell")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    device = torch.device(args.device)
    b = make_batch(device, args.batch, args.seq)
    rows = []
    print(
        f"{'family':>12} {'prec':>4} {'td step':>9} {'ours fwd':>9} {'eager fwd':>9} {'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            actions = timers(save_teacher(family, Path(tmp) / family), b, device)
            for precision in args.precisions:
                r = {"family": family, "precision": precision}
                r |= run_cell(actions, precision, device, args.warmup, args.steps)
                rows.append(r)
                print(
                    f"{family:>12} {precision:>4} {r['td_step_ms']:9.1f} {r['ours_fwd_ms']:9.1f} "
                    f"{r['eager_fwd_ms']:9.1f} {r['speedup']:5.2f}x",
                    flush=True,
                )
            del actions
    meta = {"threads": torch.get_num_threads(), "torch": torch.__version__, "batch": args.batch}
    out = json.dumps({**meta, "seq": args.seq, "rows": rows})
    print(out)
    if args.json:
        Path(args.json).write_text(out + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
