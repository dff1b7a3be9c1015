"""Distillation losses against values worked out by hand (the arithmetic is in the comments)."""

import math

import numpy as np
import pytest
import torch

from tinybert.distill.losses import (
    MASKED_SCORE,
    attention_kl_loss,
    attention_loss,
    hidden_loss,
    logit_mse,
    soft_cross_entropy,
)

MIN = torch.finfo(torch.float32).min  # what the model puts on masked keys


def t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


# --------------------------------------------------------------------------------------------
# attention (B, H, T, T)

# One example, T=3, the last token padded. Key column 2 is masked (MIN); query row 2 is a
# padded query whose scores are meaningless garbage.
S_HEAD = [[1.0, 2.0, MIN], [3.0, 4.0, MIN], [9.0, 9.0, MIN]]
T_HEAD = [[0.0, 2.0, MIN], [1.0, 1.0, MIN], [-5.0, 7.0, MIN]]
MASK3 = t([[1, 1, 0]]).long()


def test_attention_real_tokens_by_hand():
    # real 2x2 block: diffs (1-0, 2-2, 3-1, 4-1) = (1, 0, 2, 3) -> squares 1 + 0 + 4 + 9 = 14
    # over 2 real queries x 2 real keys x 1 head = 4 entries -> 14 / 4 = 3.5
    s, tt = t([[S_HEAD]]), t([[T_HEAD]])
    assert attention_loss(s, tt, MASK3).item() == pytest.approx(3.5)


def test_attention_real_tokens_averages_over_heads():
    # head 0 as above (sum 14), head 1 identical in student and teacher (sum 0):
    # 14 / (4 entries x 2 heads) = 1.75
    s = t([[S_HEAD, T_HEAD]])
    tt = t([[T_HEAD, T_HEAD]])
    assert attention_loss(s, tt, MASK3).item() == pytest.approx(1.75)


def test_attention_real_tokens_counts_real_pairs_per_example():
    # B=2, H=1, T=2. Example 0 fully real: diffs (1, 1, 1, 1) -> 4. Example 1 has one real
    # token: only entry (0, 0) counts, diff 2 -> 4. Total 8 over 4 + 1 = 5 real pairs -> 1.6
    s = t([[[[1.0, 1.0], [1.0, 1.0]]], [[[2.0, MIN], [50.0, MIN]]]])
    tt = t([[[[0.0, 0.0], [0.0, 0.0]]], [[[0.0, MIN], [-50.0, MIN]]]])
    mask = t([[1, 1], [1, 0]]).long()
    assert attention_loss(s, tt, mask).item() == pytest.approx(1.6)


def test_attention_reference_by_hand():
    # masked scores (<= -100) become 0 in both, so column 2 adds 0 for all 3 rows.
    # the padded query row counts: (9 - -5)^2 + (9 - 7)^2 = 196 + 4 = 200.
    # total (14 + 200 + 0) / 9 entries = 214 / 9
    s, tt = t([[S_HEAD]]), t([[T_HEAD]])
    assert attention_loss(s, tt, MASK3, mode="reference").item() == pytest.approx(214 / 9)


def test_attention_reference_zeroes_old_style_mask_too():
    # the original BERT code used -10000 on masked keys; student -1e4, teacher MIN are both
    # zeroed, leaving only the real entry: (1 - 3)^2 / 2 entries = 2
    s = t([[[[1.0, -1e4]]]])
    tt = t([[[[3.0, MIN]]]])
    assert attention_loss(s, tt, None, mode="reference").item() == pytest.approx(2.0)


def test_attention_padding_invariance():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 4, 5, 5, generator=g)
    tt = torch.randn(2, 4, 5, 5, generator=g)
    mask = t([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).long()
    for x in (s, tt):
        x[1, :, :, 3:] = MIN

    def pad(x, extra):
        # extra padded positions: garbage in padded query rows, MIN in padded key columns
        b, h, n, _ = x.shape
        out = torch.full((b, h, n + extra, n + extra), MIN)
        out[:, :, n:, :] = 1e3 * torch.randn(b, h, extra, n + extra, generator=g)
        out[:, :, :n, :n] = x
        return out

    base = attention_loss(s, tt, mask)
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    padded = attention_loss(pad(s, 3), pad(tt, 3), padded_mask)
    assert padded.item() == pytest.approx(base.item(), rel=1e-6)

    ref = attention_loss(s, tt, mask, mode="reference")
    ref_padded = attention_loss(pad(s, 3), pad(tt, 3), padded_mask, mode="reference")
    assert ref_padded.item() != pytest.approx(ref.item(), rel=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_attention_finfo_min_is_finite_with_finite_grad(dtype):
    # student and teacher may disagree on the masked value's dtype-specific minimum
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 2, 4, 4, generator=g).to(dtype)
    tt = torch.randn(2, 2, 4, 4, generator=g)
    mask = t([[1, 1, 1, 0], [1, 1, 0, 0]]).long()
    s[0, :, :, 3:] = torch.finfo(dtype).min
    s[1, :, :, 2:] = torch.finfo(dtype).min
    tt[0, :, :, 3:] = MIN
    tt[1, :, :, 2:] = 5.0  # a large positive value the loss must also ignore
    s.requires_grad_(True)
    for mode in ("real_tokens", "reference"):
        loss = attention_loss(s, tt, mask, mode=mode)
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss)
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(grad).all()
        if mode == "real_tokens":  # masked keys and padded queries get no gradient
            assert (grad[0, :, 3:, :] == 0).all() and (grad[0, :, :, 3:] == 0).all()
            assert (grad[1, :, 2:, :] == 0).all() and (grad[1, :, :, 2:] == 0).all()


def test_attention_bf16_computed_in_float32():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(1, 2, 3, 3, generator=g).to(torch.bfloat16)
    tt = torch.randn(1, 2, 3, 3, generator=g).to(torch.bfloat16)
    mask = t([[1, 1, 0]]).long()
    got = attention_loss(s, tt, mask)
    want = attention_loss(s.float(), tt.float(), mask)
    assert got.dtype == torch.float32 and got.item() == want.item()


def test_attention_bool_mask_and_no_mask():
    g = torch.Generator().manual_seed(3)
    s, tt = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    full = torch.ones(2, 4, dtype=torch.bool)
    # with no padding, real_tokens is the plain mean, as in reference mode
    plain = ((s - tt) ** 2).mean().item()
    assert attention_loss(s, tt, full).item() == pytest.approx(plain)
    assert attention_loss(s, tt, None).item() == pytest.approx(plain)
    assert attention_loss(s, tt, None, mode="reference").item() == pytest.approx(plain)


def test_attention_rejects_bad_shapes_and_mode():
    x = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match="student shape"):
        attention_loss(x, torch.zeros(1, 4, 3, 3), None)
    with pytest.raises(ValueError, match="mask shape"):
        attention_loss(x, x, torch.ones(1, 4))
    with pytest.raises(ValueError, match="loss mode"):
        attention_loss(x, x, None, mode="mean")


# --------------------------------------------------------------------------------------------
# keys the teacher masks beyond padding (ModernBERT local-attention windows)

# T=3, no padding. The teacher masks key 2 for query 0 and key 0 for query 2 (a window of 1).
S_WIN = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
T_WIN = [[1.0, 2.0, MIN], [4.0, 4.0, 4.0], [MIN, 8.0, 8.0]]
# visible diffs: row 0 (0, 0, -), row 1 (0, 1, 2), row 2 (-, 0, 1) -> 0+0+0+1+4+0+1 = 6; the
# denominator stays 3 real queries x 3 real keys x 1 head = 9 -> 6 / 9
WIN_LOSS = 6 / 9


@pytest.mark.parametrize("mask", [None, t([[1, 1, 1]]).long()])
def test_attention_ignores_keys_the_teacher_masks_by_hand(mask):
    s, tt = t([[S_WIN]]), t([[T_WIN]])
    assert attention_loss(s, tt, mask).item() == pytest.approx(WIN_LOSS)
    # the student's scores at the masked pairs do not matter
    s2 = s.clone()
    s2[0, 0, 0, 2], s2[0, 0, 2, 0] = 1e4, -1e4
    assert attention_loss(s2, tt, mask).item() == pytest.approx(WIN_LOSS)
    # reference: the teacher's masked scores become 0 and so do the student's there: the same
    # six visible squares over all 9 entries
    assert attention_loss(s2, tt, mask, mode="reference").item() == pytest.approx(WIN_LOSS)


@pytest.mark.parametrize(
    "masked",
    [
        torch.finfo(torch.bfloat16).min,
        torch.finfo(torch.float16).min,
        float("-inf"),
        MIN,
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_attention_window_mask_of_any_dtype_is_recognised(masked, dtype):
    if dtype == torch.float16 and masked < torch.finfo(torch.float16).min:
        masked = float("-inf")  # what casting a bigger minimum to fp16 gives
    tt = t([[T_WIN]])
    tt[tt == MIN] = masked
    s = t([[S_WIN]]).requires_grad_(True)
    loss = attention_loss(s, tt.to(dtype), None)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(WIN_LOSS)
    (grad,) = torch.autograd.grad(loss, s)
    assert torch.isfinite(grad).all()
    assert grad[0, 0, 0, 2] == 0 and grad[0, 0, 2, 0] == 0 and grad[0, 0, 1, 2] != 0


def test_masked_score_threshold():
    # half float16's minimum: below any real score, above every dtype's finfo.min
    assert MASKED_SCORE == -32752.0
    s = t([[[[0.0, 0.0]]]])
    at, above = t([[[[0.0, MASKED_SCORE]]]]), t([[[[0.0, MASKED_SCORE + 16.0]]]])
    assert attention_loss(s, at, None).item() == 0.0  # masked: left out
    assert attention_loss(s, above, None).item() == pytest.approx((MASKED_SCORE + 16.0) ** 2 / 2)


def test_attention_window_masks_with_padding_are_padding_invariant():
    g = torch.Generator().manual_seed(6)
    s = torch.randn(2, 2, 5, 5, generator=g)
    tt = torch.randn(2, 2, 5, 5, generator=g)
    mask = t([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).long()
    far = (torch.arange(5)[:, None] - torch.arange(5)[None, :]).abs() > 1  # window of 1
    tt = tt.masked_fill(far, MIN)
    s[1, :, :, 3:], tt[1, :, :, 3:] = MIN, MIN
    base = attention_loss(s, tt, mask)
    # by hand: visible real pairs only, over sum_b T_b^2 = 25 + 9 = 34 pairs x 2 heads
    real = mask.bool()
    keep = (real[:, None, :, None] & real[:, None, None, :]) & ~far
    want = ((s - tt)[keep.expand_as(s)] ** 2).sum() / (34 * 2)
    assert base.item() == pytest.approx(want.item(), rel=1e-6)
    # three more padded positions: MIN keys, garbage query rows
    big_s, big_t = torch.full((2, 2, 8, 8), MIN), torch.full((2, 2, 8, 8), MIN)
    big_s[:, :, :5, :5], big_t[:, :, :5, :5] = s, tt
    big_s[:, :, 5:] = 1e3 * torch.randn(2, 2, 3, 8, generator=g)
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    assert attention_loss(big_s, big_t, padded_mask).item() == pytest.approx(base.item(), rel=1e-6)


def test_attention_loss_of_split_batch_sums_to_whole_with_window_masks():
    # data parallel: each rank passes the global pair count; the ranks' losses add up
    g = torch.Generator().manual_seed(7)
    s, tt = torch.randn(2, 2, 4, 4, generator=g), torch.randn(2, 2, 4, 4, generator=g)
    mask = t([[1, 1, 1, 1], [1, 1, 0, 0]]).long()
    tt[0, :, 0, 3] = MIN  # a window-masked key in a full row
    for x in (s, tt):
        x[1, :, :, 2:] = MIN
    whole = attention_loss(s, tt, mask)
    pairs = t(16.0 + 4.0)
    first = attention_loss(s[:1], tt[:1], mask[:1], pairs=pairs)
    second = attention_loss(s[1:, :, :2, :2], tt[1:, :, :2, :2], mask[1:, :2], pairs=pairs)
    assert (first + second).item() == pytest.approx(whole.item(), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_bert_teacher_values_are_bit_for_bit_the_masked_mean(dtype):
    # a BERT teacher masks padding keys only: the loss is exactly the former formula,
    # sum over real query x real key pairs of (s - t)^2 / (sum_b T_b^2 x heads)
    g = torch.Generator().manual_seed(12)
    s, tt = torch.randn(3, 2, 6, 6, generator=g), torch.randn(3, 2, 6, 6, generator=g)
    mask = t([[1] * 6, [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]]).long()
    keys = mask.bool()[:, None, None, :]
    s = s.to(dtype).masked_fill(~keys, torch.finfo(dtype).min)
    tt = tt.to(dtype).masked_fill(~keys, torch.finfo(dtype).min)
    real = mask.bool()
    both = (real[:, :, None] & real[:, None, :])[:, None]
    diff = torch.where(both, s.float() - tt.float(), 0.0)
    want = diff.square().sum() / (real.sum(1).float().square().sum() * 2)
    assert torch.equal(attention_loss(s, tt, mask), want)
    # and with no padding, the plain mean
    full = s[:1].float(), tt[:1].float()
    assert torch.equal(attention_loss(*full, None), torch.nn.functional.mse_loss(*full))


# --------------------------------------------------------------------------------------------
# attention probabilities (DeBERTa-v2 teachers): KL(teacher || student) per real query row

# B=1, H=1, T=3, token 2 padded. Student row 0: softmax(0, ln 3) = (1/4, 3/4); row 1:
# softmax(0, 0) = (1/2, 1/2); row 2 is a padded query (garbage). Teacher row 0 (1/2, 1/2),
# row 1 (1, 0): a key the teacher gives 0 adds 0.
S_KL = [[0.0, math.log(3.0), MIN], [0.0, 0.0, MIN], [9.0, -9.0, MIN]]
T_KL = [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.3, 0.3, 0.4]]
# row 0: 1/2 ln(1/2 / 1/4) + 1/2 ln(1/2 / 3/4) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3)
# row 1: 1 ln(1 / 1/2) = ln 2; averaged over 2 real query rows x 1 head
KL_LOSS = (0.5 * math.log(4 / 3) + math.log(2.0)) / 2


def test_attention_kl_by_hand():
    s, tt = t([[S_KL]]), t([[T_KL]])
    assert attention_kl_loss(s, tt, MASK3).item() == pytest.approx(KL_LOSS)
    # the reference mode computes the same KL
    assert attention_kl_loss(s, tt, MASK3, mode="reference").item() == pytest.approx(KL_LOSS)
    # the student's padding keys have probability 0 whatever it put there (-inf, 0, +50)
    for pad in (float("-inf"), 0.0, 50.0):
        s2 = s.clone()
        s2[..., 2] = pad
        assert attention_kl_loss(s2, tt, MASK3).item() == pytest.approx(KL_LOSS)


def test_attention_kl_matches_numpy_and_is_padding_invariant():
    g = torch.Generator().manual_seed(8)
    b, h, n = 2, 3, 5
    s = torch.randn(b, h, n, n, generator=g)
    mask = t([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).long()
    s[1, :, :, 3:] = MIN
    tt = torch.randn(b, h, n, n, generator=g).masked_fill(s == MIN, MIN).softmax(-1)
    tt[0, :, 1, 4] = 0.0  # a key the teacher does not attend to (renormalising is not needed)
    want, rows = 0.0, 0
    for i, length in enumerate((5, 3)):
        for head in range(h):
            for q in range(length):
                x = s[i, head, q, :length].double().numpy()
                log_q = x - np.log(np.exp(x - x.max()).sum()) - x.max()
                p = tt[i, head, q, :length].double().numpy()
                nz = p > 0
                want += float((p[nz] * (np.log(p[nz]) - log_q[nz])).sum())
        rows += length
    want /= rows * h
    got = attention_kl_loss(s, tt, mask)
    assert got.dtype == torch.float32 and got.item() == pytest.approx(want, rel=1e-5)
    # more padding: garbage query rows, MIN student keys, zero teacher keys
    big_s, big_t = torch.full((b, h, n + 2, n + 2), MIN), torch.zeros(b, h, n + 2, n + 2)
    big_s[:, :, :n, :n], big_t[:, :, :n, :n] = s, tt
    big_s[:, :, n:] = 1e3 * torch.randn(b, h, 2, n + 2, generator=g)
    big_t[:, :, n:] = 0.5
    padded_mask = torch.cat([mask, torch.zeros(b, 2, dtype=torch.long)], dim=1)
    assert attention_kl_loss(big_s, big_t, padded_mask).item() == pytest.approx(want, rel=1e-5)


def test_attention_kl_is_zero_with_zero_gradient_at_the_teacher():
    g = torch.Generator().manual_seed(9)
    s = torch.randn(1, 2, 4, 4, generator=g)
    mask = t([[1, 1, 1, 0]]).long()
    s[..., 3] = MIN
    tt = (s + 3.0).softmax(-1)  # a shifted copy: the same distributions
    s.requires_grad_(True)
    loss = attention_kl_loss(s, tt, mask)
    (grad,) = torch.autograd.grad(loss, s)
    assert abs(loss.item()) < 1e-6 and grad.abs().max().item() < 1e-6


def test_attention_kl_split_batch_sums_to_whole():
    g = torch.Generator().manual_seed(10)
    s = torch.randn(3, 2, 4, 4, generator=g)
    mask = t([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]).long()
    keys = mask.bool()[:, None, None, :]
    s = s.masked_fill(~keys, MIN)
    tt = torch.randn(3, 2, 4, 4, generator=g).masked_fill(~keys, MIN).softmax(-1)
    whole = attention_kl_loss(s, tt, mask)
    rows = t(4.0 + 2.0 + 3.0)  # the global batch's real query rows (its real tokens)
    first = attention_kl_loss(s[:1], tt[:1], mask[:1], rows=rows)
    rest = attention_kl_loss(s[1:, :, :3, :3], tt[1:, :, :3, :3], mask[1:, :3], rows=rows)
    assert (first + rest).item() == pytest.approx(whole.item(), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_attention_kl_low_precision_and_fully_padded_rows_are_nan_free(dtype):
    g = torch.Generator().manual_seed(11)
    mask = t([[1, 1, 1, 0], [0, 0, 0, 0]]).long()  # example 1: all padding
    keys = mask.bool()[:, None, None, :]
    s = torch.randn(2, 2, 4, 4, generator=g).to(dtype)
    s = s.masked_fill(~keys, torch.finfo(dtype).min)
    tt = torch.randn(2, 2, 4, 4, generator=g).masked_fill(~keys, MIN).softmax(-1)
    tt = tt.masked_fill(~keys, 0.0).to(dtype)  # DeBERTa's all-masked rows are 0, not uniform
    s.requires_grad_(True)
    loss = attention_kl_loss(s, tt, mask)
    assert loss.dtype == torch.float32 and loss.dim() == 0 and torch.isfinite(loss)
    want = attention_kl_loss(s.detach().float(), tt.float(), mask)
    assert loss.item() == want.item()  # computed in float32 from the cast inputs
    (grad,) = torch.autograd.grad(loss, s)
    assert torch.isfinite(grad).all()
    assert (grad[1] == 0).all() and (grad[0, :, 3] == 0).all()  # padded queries: no gradient
    # a batch of nothing but padding gives 0, not NaN
    assert attention_kl_loss(s[1:], tt[1:], mask[1:]).item() == 0.0


def test_attention_kl_rejects_bad_shapes_and_mode():
    x = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match="student shape"):
        attention_kl_loss(x, torch.zeros(1, 4, 3, 3), None)
    with pytest.raises(ValueError, match=r"\(B, H, T, T\)"):
        attention_kl_loss(x[0], x[0], None)
    with pytest.raises(ValueError, match="loss mode"):
        attention_kl_loss(x, x, None, mode="mean")


# --------------------------------------------------------------------------------------------
# hidden states / embeddings (B, T, D)


def test_hidden_real_tokens_and_reference_by_hand():
    # T=3, D=2, last token padded with garbage (100, -100) against (0, 0)
    s = t([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])
    tt = t([[[1.0, 0.0], [0.0, 4.0], [0.0, 0.0]]])
    mask = t([[1, 1, 0]]).long()
    # real: diffs (0, 2, 3, 0) -> 0 + 4 + 9 + 0 = 13 over 2 tokens x 2 dims -> 13 / 4 = 3.25
    assert hidden_loss(s, tt, mask).item() == pytest.approx(3.25)
    # reference: (13 + 100^2 + 100^2) / 6 entries = 20013 / 6 = 3335.5
    assert hidden_loss(s, tt, mask, mode="reference").item() == pytest.approx(3335.5)


def test_hidden_is_a_mean_over_all_real_tokens_of_the_batch():
    # B=2, T=2, D=1; example 1 has one real token. Real diffs 1, 2 | 2 -> 1 + 4 + 4 = 9 over 3
    # real tokens = 3. (A mean of per-example means would give ((1 + 4) / 2 + 4) / 2 = 3.25.)
    s = t([[[1.0], [2.0]], [[3.0], [50.0]]])
    tt = t([[[0.0], [0.0]], [[1.0], [0.0]]])
    mask = t([[1, 1], [1, 0]]).long()
    assert hidden_loss(s, tt, mask).item() == pytest.approx(3.0)


def test_hidden_padding_invariance():
    g = torch.Generator().manual_seed(4)
    s, tt = torch.randn(2, 4, 8, generator=g), torch.randn(2, 4, 8, generator=g)
    mask = t([[1, 1, 1, 1], [1, 1, 0, 0]]).long()
    garbage = 1e3 * torch.randn(2, 5, 8, generator=g)
    s_pad, t_pad = torch.cat([s, garbage], 1), torch.cat([tt, -garbage], 1)
    mask_pad = torch.cat([mask, torch.zeros(2, 5, dtype=torch.long)], 1)
    base = hidden_loss(s, tt, mask)
    assert hidden_loss(s_pad, t_pad, mask_pad).item() == pytest.approx(base.item(), rel=1e-6)
    assert hidden_loss(s_pad, t_pad, mask_pad, "reference").item() != pytest.approx(
        hidden_loss(s, tt, mask, "reference").item(), rel=1e-3
    )


def test_hidden_gradient_ignores_padding_and_is_float32():
    s = torch.randn(1, 3, 4, dtype=torch.bfloat16, requires_grad=True)
    tt = torch.randn(1, 3, 4, dtype=torch.bfloat16)
    loss = hidden_loss(s, tt, t([[1, 1, 0]]).long())
    assert loss.dtype == torch.float32
    loss.backward()
    assert (s.grad[0, 2] == 0).all() and (s.grad[0, :2] != 0).any()


def test_hidden_rejects_width_mismatch():
    with pytest.raises(ValueError, match="student shape"):
        hidden_loss(torch.zeros(1, 2, 4), torch.zeros(1, 2, 8), None)


# --------------------------------------------------------------------------------------------
# prediction layer

# softmax([0, ln 3]) = [1/4, 3/4]; softmax([0, 0]) = [1/2, 1/2]
LN3 = math.log(3.0)
# teacher [1/2, 1/2], student [1/4, 3/4]: -(1/2 ln 1/4 + 1/2 ln 3/4) = ln 4 - 1/2 ln 3
CE_A = math.log(4.0) - 0.5 * LN3  # 0.836988...
# teacher [3/4, 1/4], student [1/2, 1/2]: -(3/4 + 1/4) ln 1/2 = ln 2
CE_B = math.log(2.0)


def test_soft_cross_entropy_by_hand():
    s = t([[0.0, LN3], [0.0, 0.0]])
    tt = t([[0.0, 0.0], [LN3, 0.0]])
    assert soft_cross_entropy(s, tt).item() == pytest.approx((CE_A + CE_B) / 2)


def test_soft_cross_entropy_temperature_and_t2_scaling():
    # at T=2 the logits are halved: student [0, 2 ln 3] -> [0, ln 3], teacher [0, 0] -> CE_A
    s, tt = t([[0.0, 2 * LN3]]), t([[0.0, 0.0]])
    assert soft_cross_entropy(s, tt, temperature=2.0).item() == pytest.approx(CE_A)
    scaled = soft_cross_entropy(s, tt, temperature=2.0, scale_by_t2=True)
    assert scaled.item() == pytest.approx(4 * CE_A)
    # T=1 scaling is a no-op
    assert soft_cross_entropy(s, tt, 1.0, True).item() == pytest.approx(
        soft_cross_entropy(s, tt, 1.0).item()
    )


def test_soft_cross_entropy_minimised_at_teacher_logits():
    g = torch.Generator().manual_seed(5)
    tt = torch.randn(4, 5, generator=g)
    for temperature in (1.0, 3.0):
        s = tt.clone().requires_grad_(True)
        loss = soft_cross_entropy(s, tt, temperature)
        (grad,) = torch.autograd.grad(loss, s)
        assert grad.abs().max().item() < 1e-6
        # at equality the loss is the teacher's entropy
        p = torch.softmax(tt / temperature, -1)
        assert loss.item() == pytest.approx(-(p * p.log()).sum(-1).mean().item(), rel=1e-5)
        # and any other student is worse
        other = soft_cross_entropy(tt + 0.3 * torch.randn(4, 5, generator=g), tt, temperature)
        assert other.item() > loss.item()


def test_soft_cross_entropy_token_mask_ignores_padding():
    # token logits (B=1, L=3, C=2): positions 0 and 1 are the two rows above; 2 is padding
    s = t([[[0.0, LN3], [0.0, 0.0], [1e4, -1e4]]])
    tt = t([[[0.0, 0.0], [LN3, 0.0], [-1e4, 1e4]]])
    mask = t([[1, 1, 0]]).long()
    assert soft_cross_entropy(s, tt, mask=mask).item() == pytest.approx((CE_A + CE_B) / 2)
    # even NaN garbage at a padded position does not leak into the loss or the real positions' gradient
    s2 = s.clone()
    s2[0, 2] = float("nan")
    s2.requires_grad_(True)
    loss = soft_cross_entropy(s2, tt, mask=mask)
    assert loss.item() == pytest.approx((CE_A + CE_B) / 2)
    (grad,) = torch.autograd.grad(loss, s2)
    assert torch.isfinite(grad[0, :2]).all()
    # without a mask every position counts
    assert soft_cross_entropy(s, tt).item() > 1000


def test_soft_cross_entropy_rejects_bad_args():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="temperature"):
        soft_cross_entropy(x, x, temperature=0.0)
    with pytest.raises(ValueError, match="token logits"):
        soft_cross_entropy(x, x, mask=torch.ones(2, 3))


def test_soft_cross_entropy_bf16_returns_float32():
    s = t([[0.0, LN3]], torch.bfloat16)
    tt = t([[0.0, 0.0]], torch.bfloat16)
    loss = soft_cross_entropy(s, tt)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(CE_A, abs=1e-2)  # ln 3 rounded to bf16


def test_logit_mse_by_hand():
    # ((1 - 0)^2 + (2 - 4)^2) / 2 = 2.5
    s, tt = t([[1.0], [2.0]]), t([[0.0], [4.0]])
    assert logit_mse(s, tt).item() == pytest.approx(2.5)
    assert logit_mse(s.bfloat16(), tt.bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match="student shape"):
        logit_mse(s, tt.squeeze(-1))
