"""Phase 1 / GD learns attention from any teacher, whichever attention signal it gives.

Fake teachers stand in for the families (no transformers needed): each wraps one of our BERT
encoders behind the teacher forward signature and post-processes its attention outputs:

- `ProbTeacher`: softmax probabilities, `attention_signal = "probabilities"` (as DeBERTa-v2);
- `WindowTeacher`: scores with keys outside a local window at finfo.min (as ModernBERT's
  sliding-window layers), `attention_signal = "scores"`.

The objective picks `attention_kl_loss` or `attention_loss` from the signal, the teacher cache
gives the same losses and gradients as the live teacher for both, and the layer map spans any
teacher depth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tinybert.distill.teacher_cache as tc
from tinybert.config import DistillConfig
from tinybert.distill.losses import attention_kl_loss, attention_loss
from tinybert.distill.mapping import resolve_layer_map, uniform_layer_map
from tinybert.distill.objectives import IntermediateLoss
from tinybert.distill.projection import HiddenProjection
from tinybert.model import BertConfig, BertModel, BertOutput
from tinybert.train.distributed import Dist
from tinybert.train.loop import TrainData
from tinybert.train.objective import Batch

from .conftest import TINY

VOCAB = 50
HEADS = TINY["num_attention_heads"]
WINDOW = 2  # WindowTeacher: a query sees keys at most this far away


class _Wrapped(nn.Module):
    """A teacher with our forward signature around a BERT encoder named `inner` (not `bert`:
    the objectives then call this module itself, as they call an HFModel)."""

    attention_signal = "scores"

    def __init__(self, inner: BertModel):
        super().__init__()
        self.inner, self.config = inner, inner.config
        self.train(inner.training)  # a frozen teacher: eval, as its encoder

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attention_scores: bool | Collection[int] = False,
    ) -> BertOutput:
        out = self.inner(
            input_ids, attention_mask, token_type_ids, output_hidden_states, output_attention_scores
        )
        if out.attention_scores is None:
            return out
        att = tuple(None if a is None else self.transform(a) for a in out.attention_scores)
        return dataclasses.replace(out, attention_scores=att)

    def transform(self, scores: torch.Tensor) -> torch.Tensor:
        return scores


class ProbTeacher(_Wrapped):
    attention_signal = "probabilities"

    def transform(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.softmax(dim=-1)  # padding keys (finfo.min) get exactly 0


class WindowTeacher(_Wrapped):
    def transform(self, scores: torch.Tensor) -> torch.Tensor:
        n = scores.shape[-1]
        pos = torch.arange(n, device=scores.device)
        far = (pos[:, None] - pos[None, :]).abs() > WINDOW
        return scores.masked_fill(far, torch.finfo(scores.dtype).min)


def encoder(layers: int = 2, hidden: int = 32, seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    cfg = {**TINY, "num_hidden_layers": layers, "hidden_size": hidden, "intermediate_size": 24}
    return BertModel(BertConfig(vocab_size=VOCAB, **cfg), add_pooling_layer=False).eval()


def dataset(lengths: list[int], seed: int = 1) -> TrainData:
    """Rows of random ids with these lengths; collate pads to the longest row asked for."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(5, VOCAB, (n,), generator=g) for n in lengths]

    def collate(idx: list[int]) -> dict[str, torch.Tensor]:
        t = max(lengths[i] for i in idx)
        ids = torch.zeros(len(idx), t, dtype=torch.long)
        mask = torch.zeros(len(idx), t, dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : lengths[i]], mask[r, : lengths[i]] = rows[i], 1
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": torch.zeros_like(ids),
            "index": torch.tensor(idx),
        }

    return TrainData(lengths, collate)


LENGTHS = [7, 3, 9, 5, 8, 2, 6, 9, 4, 7]


def objective(teacher: nn.Module, n_student: int = 2, **cfg) -> IntermediateLoss:
    student = encoder(n_student, hidden=16, seed=3)
    projection = HiddenProjection(16, teacher.config.hidden_size, n_student + 1, shared=True)
    layer_map = resolve_layer_map(n_student, teacher.config.num_hidden_layers)
    return IntermediateLoss(student, teacher, projection, layer_map, DistillConfig(**cfg))


# --------------------------------------------------------------------------------------------
# the objective picks the loss from the teacher's signal


def test_signal_of_each_teacher():
    inner = encoder()
    assert tc.attention_signal(inner) == "scores"  # our BERT has no attribute: scores
    assert tc.attention_signal(ProbTeacher(inner)) == "probabilities"
    assert tc.attention_signal(WindowTeacher(inner)) == "scores"
    holder = nn.Module()
    holder.bert = ProbTeacher(inner)  # a head model: the encoder's attribute counts
    assert tc.attention_signal(holder) == "probabilities"
    bad = ProbTeacher(inner)
    bad.attention_signal = "weights"
    with pytest.raises(ValueError, match="attention_signal 'weights'"):
        tc.attention_signal(bad)


@pytest.mark.parametrize("kind", ["bert", "probabilities", "window"])
def test_objective_attention_term_is_the_signals_loss(kind):
    inner = encoder()
    teacher = {"bert": inner, "probabilities": ProbTeacher(inner), "window": WindowTeacher(inner)}
    loss_fn = objective(teacher[kind])
    batch = Batch.from_rows(dataset(LENGTHS).collate([0, 1, 2, 3]))
    _, parts = loss_fn(batch)
    with torch.no_grad():
        t = teacher[kind](**batch.inputs(), output_hidden_states=True, output_attention_scores=True)
        s = loss_fn.student(**batch.inputs(), output_attention_scores=True)
    mask = batch.attention_mask
    if kind == "probabilities":
        want = sum(
            attention_kl_loss(s.attention_scores[i], t.attention_scores[j - 1], mask)
            for i, j in enumerate(loss_fn.layer_map)
        )
    else:
        want = sum(
            attention_loss(s.attention_scores[i], t.attention_scores[j - 1], mask)
            for i, j in enumerate(loss_fn.layer_map)
        )
    assert parts["att_loss"] == pytest.approx(float(want), rel=1e-6)
    assert np.isfinite(list(parts.values())).all()


def test_window_teacher_loss_ignores_the_keys_outside_its_window():
    """With a scores loss that did not know the window, the masked keys (finfo.min) would
    dominate: (s - min)^2 overflows to inf. Here they add nothing."""
    inner = encoder()
    batch = Batch.from_rows(dataset(LENGTHS).collate([2, 7]))  # 9 tokens: keys beyond the window
    _, window = objective(WindowTeacher(inner))(batch)
    _, plain = objective(inner)(batch)
    assert np.isfinite(window["att_loss"])
    assert 0 < window["att_loss"] < plain["att_loss"]  # fewer pairs summed, same denominator


def test_student_equal_to_probabilities_teacher_has_zero_attention_loss():
    inner = encoder(hidden=16, seed=3)  # the objective's student, weights and all
    loss_fn = objective(ProbTeacher(inner))
    _, parts = loss_fn(Batch.from_rows(dataset(LENGTHS).collate([0, 1, 2, 3])))
    assert abs(parts["att_loss"]) < 1e-6


def test_probabilities_objective_split_batch_sums_to_whole():
    """Data parallel: each slice is averaged over the global batch's counts (real tokens for
    the KL's query rows), so the slices' losses add up to the whole batch's."""
    loss_fn = objective(ProbTeacher(encoder()))
    data = dataset(LENGTHS)
    whole, _ = loss_fn(Batch.from_rows(data.collate([0, 1, 2, 3])))
    a, b = Batch.from_rows(data.collate([0, 1])), Batch.from_rows(data.collate([2, 3]))
    tokens = torch.tensor(float(sum(LENGTHS[:4])))
    pairs = torch.tensor(float(sum(n * n for n in LENGTHS[:4])))
    rows = torch.tensor(4.0)
    parts = [
        loss_fn(dataclasses.replace(x, norm_tokens=tokens, norm_pairs=pairs, norm_rows=rows))[0]
        for x in (a, b)
    ]
    assert sum(p.item() for p in parts) == pytest.approx(whole.item(), rel=1e-5)


# --------------------------------------------------------------------------------------------
# the teacher cache gives the live teacher's losses


def plan(folder: Path, data: TrainData) -> tc.CachePlan:
    return tc.CachePlan(
        folder=folder,
        budget_gb=1.0,
        fingerprint={"teacher": "t", "data": "d"},
        data=data,
        batch_size=4,  # the pass batches rows by length, unlike the steps below
        device=torch.device("cpu"),
        precision="fp32",
        dist=Dist(),
    )


@pytest.mark.parametrize("kind", ["probabilities", "window", "bert"])
def test_cached_losses_and_gradients_equal_the_live_teacher(tmp_path, kind):
    inner = encoder()
    teacher = {"bert": inner, "probabilities": ProbTeacher(inner), "window": WindowTeacher(inner)}
    data = dataset(LENGTHS)
    live = objective(teacher[kind])
    cached = objective(teacher[kind])
    cached.cache_plan = plan(tmp_path, data)
    cached.prepare()
    assert cached.cache is not None
    assert cached.cache.layout.signal == ("probabilities" if kind == "probabilities" else "scores")
    for rows in ([2, 5, 0], [1, 8], [7, 3, 4, 6, 9]):
        batch = Batch.from_rows(data.collate(rows))
        results = []
        for fn in (live, cached):
            fn.student.zero_grad()
            loss, parts = fn(batch)
            loss.backward()
            grads = [p.grad.clone() for p in fn.student.parameters() if p.grad is not None]
            results.append((loss.item(), parts, grads))
        (l_live, p_live, g_live), (l_cache, p_cache, g_cache) = results
        assert l_cache == pytest.approx(l_live, rel=1e-6)
        for k in p_live:
            assert p_cache[k] == pytest.approx(p_live[k], rel=1e-6, abs=1e-9), k
        for a, b in zip(g_live, g_cache, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["probabilities", "window"])
def test_cache_rebuilds_masked_keys_as_the_live_teacher_gives_them(tmp_path, kind):
    """Padding keys read back as the live teacher masks them (probabilities 0, scores finfo.min)
    and the window masks inside each row come back exactly."""
    inner = encoder()
    teacher = ProbTeacher(inner) if kind == "probabilities" else WindowTeacher(inner)
    data = dataset(LENGTHS)
    cache = tc.open_or_build(teacher, plan(tmp_path, data), [1, 2], want_att=True)
    assert cache is not None
    rows = [5, 2, 9]  # lengths 2, 9, 7: padded to 9
    batch = data.collate(rows)
    live = tc.teacher_forward(teacher, batch, want_att=True)
    got = cache.outputs(rows, 9, torch.device("cpu"))
    real = batch["attention_mask"].bool()
    pad_keys = (real[:, None, :, None] & ~real[:, None, None, :]).expand(-1, HEADS, -1, -1)
    both = (real[:, None, :, None] & real[:, None, None, :]).expand(-1, HEADS, -1, -1)
    for j in (0, 1):
        g, w = got.attention_scores[j], live.attention_scores[j]
        torch.testing.assert_close(g[both], w[both], rtol=1e-5, atol=1e-6)
        assert torch.equal(g[pad_keys], w[pad_keys])  # 0 or finfo.min, exactly
        masked = w <= torch.finfo(w.dtype).min / 2
        if kind == "window":
            assert (masked & both).any()  # row 9 has keys outside the window
            assert torch.equal(g[masked & both], w[masked & both])


# --------------------------------------------------------------------------------------------
# the layer map spans any teacher depth


@pytest.mark.parametrize(
    ("n_teacher", "expected"),
    [
        (12, [3, 6, 9, 12]),
        # round(i * 6 / 4) = round(1.5, 3, 4.5, 6), halves up
        (6, [2, 3, 5, 6]),
        # a shallower teacher: round(i * 3 / 4) = round(0.75, 1.5, 2.25, 3)
        (3, [1, 2, 2, 3]),
        (1, [1, 1, 1, 1]),
    ],
)
def test_four_student_layers_map_over_any_teacher_depth(n_teacher, expected):
    assert uniform_layer_map(4, n_teacher) == expected
    assert resolve_layer_map(4, n_teacher) == expected


def test_four_layer_student_learns_from_a_three_layer_probabilities_teacher():
    loss_fn = objective(ProbTeacher(encoder(layers=3)), n_student=4)
    assert loss_fn.layer_map == [1, 2, 2, 3]
    loss, parts = loss_fn(Batch.from_rows(dataset(LENGTHS).collate([0, 1, 2])))
    loss.backward()
    assert all(np.isfinite(v) and v > 0 for v in parts.values())
    grads = [p.grad for p in loss_fn.student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    last = loss_fn.student.encoder.layer[3].attention.self.query.weight.grad
    assert last is not None and last.abs().sum() > 0
