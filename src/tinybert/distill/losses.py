"""TinyBERT distillation losses (Jiao et al. 2019, arXiv:1909.10351), one layer per call.

- `attention_loss`  eq. 7: MSE between student and teacher attention scores (pre-softmax).
- `hidden_loss`     eq. 8: MSE between projected student and teacher hidden states.
- `soft_cross_entropy` eq. 10: prediction-layer loss, -softmax(z_t/T) . log_softmax(z_s/T).
- `logit_mse`       prediction-layer loss for regression tasks (MSE to the teacher's output).

The caller sums the per-layer losses over the mapped layers (see `mapping.py`).

Two ways to average the intermediate losses, picked by `mode` (config `distill.loss_mode`):

- "real_tokens" (default): padding contributes nothing. Attention MSE is averaged over
  real query rows x real key columns x heads x batch; hidden/embedding MSE over real token
  positions x hidden dims. Adding extra padding to a batch leaves the loss unchanged, so the
  loss does not depend on how examples happen to be batched.
- "reference": what the original TinyBERT scripts compute. Attention: scores <= -1e2 (the
  masked keys) are replaced by 0 in both student and teacher, then a plain mean over
  everything, padding included. Hidden: a plain mean over everything. Padded query rows hold
  real (but meaningless) numbers and still count, and the denominator grows with the padding,
  so the same example gets a smaller loss in a longer batch.

Every loss is computed in float32 (bf16/fp16 inputs are cast up) and returns a 0-d float32
tensor. Masked attention scores hold torch.finfo(dtype).min; they are removed with
`torch.where` *before* any arithmetic, so nothing overflows to inf and no NaN reaches the
gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

LossMode = Literal["real_tokens", "reference"]
LOSS_MODES: tuple[str, ...] = ("real_tokens", "reference")

# The reference scripts treat any attention score at or below this as a masked key.
REFERENCE_MASK_THRESHOLD = -1e2


def _check_mode(mode: str) -> None:
    if mode not in LOSS_MODES:
        raise ValueError(f"unknown loss mode {mode!r}; expected one of {LOSS_MODES}")


def _check_same_shape(name: str, student: Tensor, teacher: Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"{name}: student shape {tuple(student.shape)} != teacher shape {tuple(teacher.shape)}"
        )


def _real(mask: Tensor | None, batch: int, length: int, device: torch.device) -> Tensor:
    """(B, T) bool, True at real tokens; no mask means every position is real."""
    if mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    if mask.shape != (batch, length):
        raise ValueError(f"mask shape {tuple(mask.shape)} != (batch, seq) = {(batch, length)}")
    return mask.to(device=device) != 0


def _divide(total: Tensor, count: Tensor | float) -> Tensor:
    """total / count, with count at least 1 (an all-padding batch gives 0, not NaN)."""
    return total / (count.clamp_min(1.0) if torch.is_tensor(count) else max(count, 1.0))


def _no_padding(mask: Tensor | None, batch: int, length: int) -> bool:
    """True when every position is real (packed GD batches, equal-length task batches)."""
    return mask is None or bool(_real(mask, batch, length, mask.device).all())


def attention_loss(
    student_scores: Tensor,
    teacher_scores: Tensor,
    mask: Tensor | None,
    mode: LossMode = "real_tokens",
    pairs: Tensor | float | None = None,
) -> Tensor:
    """MSE between one student layer's and one teacher layer's attention scores (eq. 7).

    student_scores, teacher_scores: (B, H, T, T) pre-softmax scores, QK^T/sqrt(d) plus the
        additive mask (masked keys hold a huge negative number, e.g. finfo.min).
    mask: (B, T), 1 (or True) at real tokens; None means no padding. Ignored in "reference" mode.
    pairs: the number of (real query, real key) pairs to average over, sum_b T_b^2; default: this
        batch's own. Data-parallel training passes the whole (global) batch's, so that the ranks'
        losses add up to the loss of one process seeing the whole batch.
    Returns a 0-d float32 tensor.
    """
    _check_mode(mode)
    _check_same_shape("attention_loss", student_scores, teacher_scores)
    if student_scores.dim() != 4:
        raise ValueError(
            f"attention scores must be (B, H, T, T), got {tuple(student_scores.shape)}"
        )
    s, t = student_scores.float(), teacher_scores.float()
    if mode == "reference":
        zero = s.new_zeros(())
        s = torch.where(s <= REFERENCE_MASK_THRESHOLD, zero, s)
        t = torch.where(t <= REFERENCE_MASK_THRESHOLD, zero, t)
        return F.mse_loss(s, t)

    b, h, length, _ = s.shape
    if _no_padding(mask, b, length):  # every position is real: one fused kernel, same value
        if pairs is None:
            return F.mse_loss(s, t)
        return _divide(F.mse_loss(s, t, reduction="sum"), pairs * h)
    real = _real(mask, b, length, s.device)
    both = (real[:, :, None] & real[:, None, :])[:, None]  # (B, 1, T, T): real query x real key
    # s - t stays finite (masked keys hold finfo.min, real scores are small), and where() then
    # drops it with no gradient; multiplying by the mask instead could meet inf * 0 = NaN.
    diff = torch.where(both, s - t, 0.0)
    if pairs is None:
        pairs = real.sum(dim=1).float().square().sum()  # sum over examples of T_b^2
    return _divide(diff.square().sum(), pairs * h)


def hidden_loss(
    student_h: Tensor,
    teacher_h: Tensor,
    mask: Tensor | None,
    mode: LossMode = "real_tokens",
    tokens: Tensor | float | None = None,
) -> Tensor:
    """MSE between one (projected) student hidden state and one teacher hidden state (eq. 8).

    student_h, teacher_h: (B, T, D), both at the teacher's width D (project the student first).
    mask: (B, T), 1 (or True) at real tokens; None means no padding. Ignored in "reference" mode.
    tokens: the number of real tokens to average over; default: this batch's own (see
        `attention_loss` for why data-parallel training passes the global batch's).
    Returns a 0-d float32 tensor.
    """
    _check_mode(mode)
    _check_same_shape("hidden_loss", student_h, teacher_h)
    if student_h.dim() != 3:
        raise ValueError(f"hidden states must be (B, T, D), got {tuple(student_h.shape)}")
    s, t = student_h.float(), teacher_h.float()
    if mode == "reference":
        return F.mse_loss(s, t)

    b, length, width = s.shape
    if _no_padding(mask, b, length):
        if tokens is None:
            return F.mse_loss(s, t)
        return _divide(F.mse_loss(s, t, reduction="sum"), tokens * width)
    real = _real(mask, b, length, s.device)[:, :, None]  # (B, T, 1)
    diff = torch.where(real, s - t, 0.0)  # padded positions -> 0
    if tokens is None:
        tokens = real.sum().float()
    return _divide(diff.square().sum(), tokens * width)


def soft_cross_entropy(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    scale_by_t2: bool = False,
    mask: Tensor | None = None,
    count: Tensor | float | None = None,
) -> Tensor:
    """Prediction-layer loss (eq. 10): sum_c -softmax(t/T)_c * log_softmax(s/T)_c.

    student_logits, teacher_logits: (B, C) for sequence tasks, averaged over the B examples;
        or (B, L, C) for token tasks, averaged over positions where `mask` (B, L) is 1
        (all positions when mask is None).
    temperature: T > 0, divides both logits.
    scale_by_t2: multiply by T^2 (Hinton et al.), which keeps gradient magnitudes comparable
        across temperatures. The TinyBERT scripts do not.
    count: with a mask, the number of positions to average over; default: this batch's own
        (see `attention_loss` for why data-parallel training passes the global batch's).
    Returns a 0-d float32 tensor.

    The loss is minimal (gradient zero) where the student's logits equal the teacher's up to
    a constant shift. The reference scripts take `.mean()` over classes as well, i.e. this
    loss divided by C; that constant factor only rescales the gradient.
    """
    _check_same_shape("soft_cross_entropy", student_logits, teacher_logits)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s, t = student_logits.float() / temperature, teacher_logits.float() / temperature
    per_row = -(F.softmax(t, dim=-1) * F.log_softmax(s, dim=-1)).sum(dim=-1)  # (B,) or (B, L)

    if mask is None:
        loss = per_row.mean()
    else:
        if per_row.dim() != 2:
            raise ValueError("a mask is only for token logits (B, L, C)")
        rows, length = per_row.shape
        real = _real(mask, rows, length, per_row.device)
        # Select, don't multiply: a padded position may hold inf/NaN garbage.
        kept = torch.where(real, per_row, per_row.new_zeros(()))
        loss = _divide(kept.sum(), real.sum().float() if count is None else count)
    return loss * temperature**2 if scale_by_t2 else loss


def logit_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Prediction-layer loss for regression: MSE between student and teacher outputs.

    student_logits, teacher_logits: same shape, e.g. (B, 1). Returns a 0-d float32 tensor.

    This regresses on the teacher's predictions, which is what distillation means. (The
    TinyBERT reference script regresses on the gold labels here instead, by mistake.)
    """
    _check_same_shape("logit_mse", student_logits, teacher_logits)
    return F.mse_loss(student_logits.float(), teacher_logits.float())
