"""Batches: which examples go together (batch_order) and how they become tensors (collate).

    batches = batch_order(train.lengths, 32, shuffle=True, seed=42, epoch=0, group_by_length=True)
    batch = collate([train[i] for i in batches[0]], pad_id=pad_id)

The training loop calls batch_order once per epoch (the order is a pure function of seed and
epoch, which makes resume exact) and collates each micro-batch itself; there is no DataLoader.

Each batch is padded only to its own longest sequence. Grouping similar lengths (while keeping
the order random at the batch level) cuts the padding, and so the compute, several-fold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

_GROUP_BATCHES = 50  # group_by_length sorts within windows of this many batches


def collate(items: list[dict], pad_id: int = 0) -> dict[str, Tensor]:
    """Stack dataset items into a batch padded to its longest sequence T (never more).

    Returns input_ids (B, T) long (pad_id after the end), attention_mask (B, T) long (1 = real),
    token_type_ids (B, T) long (0 on padding), labels (B,) long or float32 for regression, or
    for token tasks (items with "tag_ids") (B, T) long with -100 where nothing is scored
    (special tokens, padding), index (B,) long: each item's position in its dataset.
    """
    lengths = [len(it["input_ids"]) for it in items]
    batch, width = len(items), max(lengths)
    input_ids = np.full((batch, width), pad_id, dtype=np.int64)
    type_ids = np.zeros((batch, width), dtype=np.int64)
    mask = np.zeros((batch, width), dtype=np.int64)
    for row, (it, n) in enumerate(zip(items, lengths, strict=True)):
        input_ids[row, :n] = it["input_ids"]
        type_ids[row, :n] = it["token_type_ids"]
        mask[row, :n] = 1
    if "tag_ids" in items[0]:
        tags = np.full((batch, width), -100, dtype=np.int64)
        for row, (it, n) in enumerate(zip(items, lengths, strict=True)):
            tags[row, :n] = it["tag_ids"]
        labels = torch.from_numpy(tags)
    else:
        values = [it["label"] for it in items]
        regression = isinstance(values[0], float)
        labels = torch.tensor(values, dtype=torch.float32 if regression else torch.long)
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(mask),
        "token_type_ids": torch.from_numpy(type_ids),
        "labels": labels,
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }


def batch_order(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    group_by_length: bool,
) -> list[list[int]]:
    """Split indices 0..N-1 into batches; each index appears exactly once.

    The last batch may be smaller (no example is ever dropped). Randomness comes from a local
    generator seeded by (seed, epoch): same arguments, same batches; the global RNGs are untouched.
      shuffle only:             a random permutation, cut into batches.
      shuffle + group_by_length: permute, sort windows of ~50 batches by length, cut, shuffle
                                 the batches (random batch order, little padding inside each).
      group_by_length only:     sorted by length, longest first (evaluation: least padding,
                                 and the largest batch comes first); use batch["index"].
      neither:                  dataset order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(lengths)
    lens = np.asarray(lengths, dtype=np.int64)
    if not shuffle:
        order = np.argsort(-lens, kind="stable") if group_by_length else np.arange(n)
        return _cut(order, batch_size)
    rng = np.random.default_rng([seed % 2**63, epoch % 2**63])  # local: no global RNG state
    order = rng.permutation(n)
    if not group_by_length:
        return _cut(order, batch_size)
    window = batch_size * _GROUP_BATCHES
    batches = []
    for start in range(0, n, window):
        chunk = order[start : start + window]
        batches += _cut(chunk[np.argsort(-lens[chunk], kind="stable")], batch_size)
    return [batches[i] for i in rng.permutation(len(batches))]


def _cut(order: np.ndarray, batch_size: int) -> list[list[int]]:
    """Consecutive batches of batch_size indices (the last one possibly shorter)."""
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
