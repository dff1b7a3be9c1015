"""TinyBERT distillation losses (Jiao et al. 2019, arXiv:1909.10351), one layer per call.

- `attention_loss`  eq. 7: MSE between student and teacher attention scores (pre-softmax).
- `attention_kl_loss` for teachers that give attention probabilities instead of scores
  (DeBERTa-v2): KL(teacher || student) per query row, see "Attention probabilities" below.
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

Keys the teacher masks. A teacher may mask keys beyond padding: ModernBERT's sliding-window
(local) layers put the same huge negative number on keys outside each query's window. Such a
(query, key) pair carries no teacher score to imitate, so both modes leave it out: "real_tokens"
drops it from the sum (its denominator stays real queries x real keys x heads, so for a BERT
teacher, which masks padding keys only, the loss is exactly today's), and "reference" sets the
student's score there to 0 as it does the teacher's. A teacher score is masked when it is at or
below `MASKED_SCORE` = finfo(float16).min / 2 = -32752: every float dtype's finfo.min (fp16, bf16,
fp32) and -inf are below it, whichever dtype built the mask and whichever the scores were cast
to, while a real QK^T/sqrt(d) never comes near it.

Attention probabilities. DeBERTa-v2's disentangled attention adds content-to-position and
position-to-content terms inside its attention kernel and exposes only the softmax
probabilities (masked keys 0), so there are no comparable pre-softmax scores to regress on.
`attention_kl_loss` compares distributions instead: per real query row, KL(p_t || p_s) over the
keys, with p_s = softmax of the student's scores (padding keys forced to probability 0),
averaged over real query rows x heads. KL is MiniLM's choice (Wang et al. 2020,
arXiv:2002.10957) for transferring attention distributions: it is 0 exactly when the
distributions agree, is invariant to the shift softmax ignores (the student's scores need not
match any particular offset), and a key the teacher gives 0 adds nothing but still pulls the
student's mass away from it. An MSE on probabilities would instead weigh every key alike and
shrink with the row length. The original TinyBERT scripts have no such path, so "reference"
mode computes the same KL as "real_tokens": padded query rows have no teacher distribution to
match, and padding keys have probability 0 in both models.

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
# A teacher score at or below this is a key the teacher masks (padding, or outside a local
# attention window): half of float16's finfo.min, above every float dtype's finfo.min and -inf.
MASKED_SCORE = torch.finfo(torch.float16).min / 2


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
    Pairs whose teacher score is masked (<= MASKED_SCORE, e.g. outside a ModernBERT local window)
    add nothing, in both modes; they still count in the denominator (see the module docstring).
    Returns a 0-d float32 tensor.
    """
    _check_mode(mode)
    _check_same_shape("attention_loss", student_scores, teacher_scores)
    if student_scores.dim() != 4:
        raise ValueError(
            f"attention scores must be (B, H, T, T), got {tuple(student_scores.shape)}"
        )
    s, t = student_scores.float(), teacher_scores.float()
    unseen = t <= MASKED_SCORE  # (B, H, T, T): keys the teacher masks (padding, windows)
    if mode == "reference":
        zero = s.new_zeros(())
        # Where the teacher masks a key the student gets 0 too (a BERT student masks the same
        # padding keys, <= -1e2, so for BERT teachers this changes nothing).
        s = torch.where((s <= REFERENCE_MASK_THRESHOLD) | unseen, zero, s)
        t = torch.where(t <= REFERENCE_MASK_THRESHOLD, zero, t)
        return F.mse_loss(s, t)

    b, h, length, _ = s.shape
    # every position real and no key masked: one fused kernel, same value
    if _no_padding(mask, b, length) and not bool(unseen.any()):
        if pairs is None:
            return F.mse_loss(s, t)
        return _divide(F.mse_loss(s, t, reduction="sum"), pairs * h)
    real = _real(mask, b, length, s.device)
    both = (real[:, :, None] & real[:, None, :])[:, None]  # (B, 1, T, T): real query x real key
    # s - t stays finite (masked keys hold finfo.min, real scores are small), and where() then
    # drops it with no gradient; multiplying by the mask instead could meet inf * 0 = NaN.
    # A BERT teacher masks padding keys only, which `both` drops already: the same sum as before.
    diff = torch.where(both & ~unseen, s - t, 0.0)
    if pairs is None:
        pairs = real.sum(dim=1).float().square().sum()  # sum over examples of T_b^2
    return _divide(diff.square().sum(), pairs * h)


def attention_kl_loss(
    student_scores: Tensor,
    teacher_probs: Tensor,
    mask: Tensor | None,
    mode: LossMode = "real_tokens",
    rows: Tensor | float | None = None,
) -> Tensor:
    """KL(teacher || student) between one layer's attention distributions, for teachers that
    give probabilities, not scores (DeBERTa-v2; see the module docstring for why KL).

    student_scores: (B, H, T, T) the student's pre-softmax scores (masked keys at finfo.min).
    teacher_probs: (B, H, T, T) the teacher's softmax probabilities (masked keys 0).
    mask: (B, T), 1 (or True) at real tokens; None means no padding.
    mode: checked; "reference" computes the same KL (the original scripts have none).
    rows: the number of real query rows to average over (real tokens, sum_b T_b); default: this
        batch's own. Data-parallel training passes the global batch's (see `attention_loss`).

    loss = sum over real query rows q, heads, real keys k with p_t > 0 of
           p_t[k] * (log p_t[k] - log p_s[k]),   p_s = softmax over keys of the student's scores
           with padding keys forced to probability 0,
           divided by rows x H. Returns a 0-d float32 tensor.
    """
    _check_mode(mode)
    _check_same_shape("attention_kl_loss", student_scores, teacher_probs)
    if student_scores.dim() != 4:
        raise ValueError(
            f"attention scores must be (B, H, T, T), got {tuple(student_scores.shape)}"
        )
    b, h, length, _ = student_scores.shape
    real = _real(mask, b, length, student_scores.device)
    # Padding keys get the float32 minimum whatever the student put there (finfo.min of its
    # dtype, -inf, -1e4): their probability is then 0, and log_softmax stays finite even for
    # a fully padded row (uniform over equal minima), so no NaN reaches the gradient.
    lowest = torch.finfo(torch.float32).min
    s = torch.where(real[:, None, None, :], student_scores.float(), lowest)
    log_ps = F.log_softmax(s, dim=-1)
    pt = teacher_probs.float()
    # Select before any arithmetic can meet 0 * -inf: a key the teacher gives 0 (masked, or
    # rounded to 0 in bf16) adds 0, as xlogy's 0 log 0 = 0.
    keep = (real[:, :, None] & real[:, None, :])[:, None] & (pt > 0)  # real query x real key
    kl = torch.where(keep, torch.xlogy(pt, pt) - pt * log_ps, 0.0)
    if rows is None:
        rows = real.sum().float()
    return _divide(kl.sum(), rows * h)


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
