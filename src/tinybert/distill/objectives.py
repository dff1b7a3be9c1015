"""What one training stage optimises: an `Objective` (`batch -> (loss, logged parts)`) for the
loop.

- `SupervisedLoss`: fine-tuning a teacher on gold labels (cross-entropy, or MSE for regression).
- `IntermediateLoss`: TD phase 1 (and GD) — attention scores, hidden states, embeddings.
- `PredictionLoss`: TD phase 2 — soft cross-entropy to the teacher's logits (MSE for regression),
  with the teacher's logits computed once up front (see `teacher_logits`).

`intermediate_objective` builds phase 1's (and GD's) loss with its checked layer map and a
fresh hidden-state projection.

Which one runs is configuration (`distill.phases`), never a mode flag inside the model.

Under data parallelism each process sees a slice of the global batch. The loop then adds the
global batch's counts to each slice (`Batch.norm_rows`, `norm_tokens`, `norm_pairs`, and for
token tasks `norm_scored`, its tokens with a label other than -100) and every loss is averaged
over those instead of the slice's own, so the slices' losses sum to the loss of the whole batch,
and the gradients (summed across processes) equal one process's, exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from tinybert.config import DistillConfig
from tinybert.distill.losses import (
    attention_kl_loss,
    attention_loss,
    hidden_loss,
    logit_mse,
    soft_cross_entropy,
)
from tinybert.distill.mapping import check_heads, resolve_layer_map
from tinybert.distill.projection import HiddenProjection
from tinybert.distill.teacher_cache import (
    CachePlan,
    TeacherCache,
    attention_signal,
    mapped_scores,
    open_or_build,
    teacher_forward,
)
from tinybert.model import AnyBertModel, Teacher
from tinybert.train.distributed import Dist
from tinybert.train.inference import Logits, TokenLogits, logits_over
from tinybert.train.loop import Collated, TrainData
from tinybert.train.objective import Batch, Objective
from tinybert.train.precision import autocast


def _per_scored_token(total: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Token tasks: a loss summed over this slice's scored tokens (labels not -100), divided by
    the global batch's count of them (`norm_scored`), or this slice's own when it is the whole
    batch."""
    count = batch.norm_scored
    if count is None:
        count = (batch.require_labels() != -100).sum().float()
    return total / count.clamp_min(1.0)


def _encoder(model: nn.Module) -> nn.Module:
    """The BERT encoder of a model with a head, or the model itself when it is bare."""
    return getattr(model, "bert", model)


class SupervisedLoss(Objective):
    """Gold-label loss for fine-tuning: CE over classes, or MSE for one regression output.

    Token tasks (logits (B, T, C), labels (B, T)): CE averaged over scored tokens; labels of
    -100 ([CLS], [SEP], padding) are never scored.
    """

    def __init__(self, model: nn.Module, regression: bool):
        self.model, self.regression = model, regression

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.model(**batch.inputs()).logits.float()  # (B, C) or (B, T, C)
        labels = batch.require_labels()
        if logits.dim() == 3:  # averaged over scored tokens, not rows: no row share
            total = F.cross_entropy(
                logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
            )
            return _per_scored_token(total, batch), {}
        if self.regression:
            loss = F.mse_loss(logits.squeeze(-1), labels.float())
        else:
            loss = F.cross_entropy(logits, labels)
        return loss * batch.row_share(), {}


class IntermediateLoss(Objective):
    """TinyBERT's intermediate-layer loss (eqs. 7-10 of the paper), summed over mapped layers.

    Student layer i learns from teacher layer `layer_map[i-1]` (1-based; hidden state 0 is the
    embedding output, mapped 0 <- 0). Hidden states pass through the learned `projection` to the
    teacher's width first. The teacher runs frozen, in eval mode, without gradients.

    The attention term follows what the teacher's `attention_scores` hold (its
    `attention_signal`, see `teacher_cache.attention_signal`): pre-softmax scores ("scores",
    our BERT and most families) are matched by `attention_loss` (MSE, eq. 7); probabilities
    ("probabilities", DeBERTa-v2) by `attention_kl_loss` (KL, averaged over real query rows,
    whose global count under data parallelism is `Batch.norm_tokens`).

    With a `cache` plan (TD phase 1 over several epochs, see `teacher_cache.py`), `prepare`
    computes the teacher's mapped outputs once and every step reads them (by `batch.index`)
    instead of running the teacher.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        projection: HiddenProjection,
        layer_map: list[int],
        cfg: DistillConfig,
        cache: CachePlan | None = None,
    ):
        self.student, self.teacher, self.projection = student, teacher, projection
        self.layer_map, self.cfg = layer_map, cfg
        self.signal = attention_signal(teacher)
        self.cache_plan = cache
        self.cache: TeacherCache | None = None

    def prepare(self) -> None:
        """Open (or build) the teacher cache when one is planned. The loop calls this on every
        process at once before the first step; never for a phase that already finished."""
        if self.cache_plan is not None and self.cache is None:
            want_att = self.cfg.attention_weight > 0
            self.cache = open_or_build(self.teacher, self.cache_plan, self.layer_map, want_att)

    def _teacher(self, batch: Batch, want_att: bool) -> Any:
        """The teacher's outputs for `batch`: from the cache when there is one, else computed."""
        if self.cache is not None:
            ids = batch.input_ids
            return self.cache.outputs(batch.require_index().tolist(), ids.shape[1], ids.device)
        # Scores of the mapped layers only: the teacher's other layers run fused attention.
        inputs = batch.inputs()
        return teacher_forward(self.teacher, inputs, mapped_scores(self.layer_map, want_att))

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        want_att = self.cfg.attention_weight > 0
        inputs = batch.inputs()
        mask, mode = batch.attention_mask, self.cfg.loss_mode
        tokens, pairs = batch.norm_tokens, batch.norm_pairs
        t = self._teacher(batch, want_att)
        s = _encoder(self.student)(
            **inputs, output_hidden_states=True, output_attention_scores=want_att
        )
        zero = s.hidden_states[0].new_zeros((), dtype=torch.float32)
        att = zero
        if want_att:
            for i, j in enumerate(self.layer_map):
                s_att, t_att = s.attention_scores[i], t.attention_scores[j - 1]
                if self.signal == "probabilities":  # one real query row per real token
                    att = att + attention_kl_loss(s_att, t_att, mask, mode, tokens)
                else:
                    att = att + attention_loss(s_att, t_att, mask, mode, pairs)
        hid = zero
        for i, j in enumerate(self.layer_map, start=1):
            hid = hid + hidden_loss(
                self.projection(s.hidden_states[i], i), t.hidden_states[j], mask, mode, tokens
            )
        emb = hidden_loss(
            self.projection(s.hidden_states[0], 0), t.hidden_states[0], mask, mode, tokens
        )
        c = self.cfg
        loss = c.attention_weight * att + c.hidden_weight * hid + c.embedding_weight * emb
        return loss, {"att_loss": att.item(), "hid_loss": hid.item(), "emb_loss": emb.item()}


class PredictionLoss(Objective):
    """TD phase 2: match the teacher's (cached) logits. `batch.index` picks each row's logits.

    Token tasks: the soft cross-entropy runs per token over the scored tokens only (labels not
    -100: never padding, [CLS] or [SEP]), averaged over them.

    `teacher_logits` may be a function computing them: the loop calls it (`prepare`) before
    its first step, so a phase that is already finished (and skipped) never runs the teacher
    over the training set.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher_logits: Logits | Callable[[], Logits],
        cfg: DistillConfig,
        regression: bool,
    ):
        # (N, C) on CPU; token tasks: TokenLogits, row i's (T_i, C) at [i].
        self.student, self._source = student, teacher_logits
        self._cached: Logits | None = None
        self.cfg, self.regression = cfg, regression

    @property
    def teacher_logits(self) -> Logits:
        if self._cached is None:
            source = self._source
            self._cached = source() if callable(source) else source
        return self._cached

    def prepare(self) -> None:
        """Compute the teacher's logits now. The loop calls this before its first step, on
        every process at once (their computation may be shared out across processes)."""
        self.teacher_logits  # noqa: B018 - the property fills the cache

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.student(**batch.inputs()).logits.float()
        if s.dim() == 3:
            t = self._token_logits(batch.require_index().tolist(), s)
            mask = batch.require_labels() != -100
            count = batch.norm_scored  # the global batch's scored tokens (distributed)
            loss = soft_cross_entropy(
                s, t, self.cfg.temperature, self.cfg.scale_by_t2, mask=mask, count=count
            )
            return self._with_labels(loss, s, batch, count), {}
        cached = self.teacher_logits
        assert isinstance(cached, torch.Tensor)
        t = cached[batch.require_index().cpu()].to(s.device)
        if self.regression:
            loss = logit_mse(s, t)
        else:
            loss = soft_cross_entropy(s, t, self.cfg.temperature, self.cfg.scale_by_t2)
        return self._with_labels(loss, s, batch) * batch.row_share(), {}

    def _with_labels(
        self,
        soft: torch.Tensor,
        s: torch.Tensor,
        batch: Batch,
        count: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """soft + distill.hard_label_weight x the loss on the gold labels: cross-entropy (token
        tasks: over the scored tokens, as the soft loss), MSE for regression. s: the student's
        logits, (B, C), (B, 1) or (B, L, C)."""
        weight = self.cfg.hard_label_weight
        if not weight:
            return soft
        labels = batch.require_labels().to(s.device)
        if self.regression:
            hard = F.mse_loss(s.view(-1), labels.float().view(-1))
        elif s.dim() == 3:
            total = F.cross_entropy(s.flatten(0, 1), labels.flatten(), reduction="sum")
            hard = total / (count if count is not None else (labels != -100).sum().clamp(min=1))
        else:
            hard = F.cross_entropy(s, labels)
        return soft + weight * hard

    def _token_logits(self, indices: list[int], like: torch.Tensor) -> torch.Tensor:
        """The cached teacher logits of these examples, padded to `like`'s (B, T, C)."""
        t = torch.zeros_like(like)
        for row, i in enumerate(indices):
            cached = self.teacher_logits[i]
            t[row, : len(cached)] = cached.to(like.device)
        return t


def intermediate_objective(
    cfg: DistillConfig,
    student: AnyBertModel,
    teacher: Teacher,
    device: torch.device,
    cache: CachePlan | None = None,
) -> tuple[IntermediateLoss, HiddenProjection]:
    """TD phase 1's (and GD's) loss: the layer map and head counts checked, a fresh projection;
    `cache`: TD phase 1's teacher cache plan (None: the teacher runs at every step)."""
    n_s, n_t = student.config.num_hidden_layers, teacher.config.num_hidden_layers
    layer_map = resolve_layer_map(n_s, n_t, cfg.layer_map)
    check_heads(
        student.config.num_attention_heads,
        teacher.config.num_attention_heads,
        cfg.attention_weight > 0,
    )
    projection = HiddenProjection(
        student.config.hidden_size, teacher.config.hidden_size, n_s + 1, cfg.shared_projection
    ).to(device)
    return IntermediateLoss(student, teacher, projection, layer_map, cfg, cache), projection


def teacher_logits(
    teacher: nn.Module,
    data: TrainData,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    dist: Dist | None = None,
) -> Logits:
    """Run the teacher once over the training set (the batched inference loop of evaluation)
    and return its logits: (N, C) float32 on CPU, or for token tasks one TokenLogits (each
    example's real tokens, all in one contiguous tensor). They never change during phase 2, so caching saves
    one teacher forward per step.

    Distributed, each process runs the teacher over its share of the rows only (rank,
    rank + world, ...), then the processes exchange their logits (`Dist.gather_rows`), so every
    one holds all of them: sequence tasks as one contiguous (N, C) tensor.
    """
    dist = dist or Dist()
    if not dist.enabled:
        with autocast(device, precision):
            return logits_over(teacher, data.lengths, data.collate, batch_size, device)
    n, world = len(data.lengths), dist.world
    mine = list(range(dist.rank, n, world))
    computed = 0

    def collate(rows: list[int]) -> Collated:  # rows index `mine`
        nonlocal computed
        computed += len(rows)
        return data.collate([mine[r] for r in rows])

    with autocast(device, precision):
        shard = logits_over(teacher, [data.lengths[i] for i in mine], collate, batch_size, device)
    tqdm.write(f"teacher logits: process {dist.rank} ran the teacher on {computed} of {n} rows")
    token = any(dist.gather(isinstance(shard, TokenLogits)))  # a process may have no rows
    parts = dist.gather_rows(shard.values if isinstance(shard, TokenLogits) else shard)
    if not token:
        out = torch.empty(n, *parts[0].shape[1:])
        for rank, part in enumerate(parts):
            out[rank::world] = part
        return out
    full = TokenLogits(torch.empty(int(sum(data.lengths)), parts[0].shape[-1]), data.lengths)
    for rank, part in enumerate(parts):  # each process's rows, their tokens end to end
        ids = range(rank, n, world)
        for i, row in zip(ids, part.split([int(data.lengths[i]) for i in ids]), strict=True):
            full[i].copy_(row)
    return full
