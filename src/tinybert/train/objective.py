"""The contract between the training loop and what a stage optimises.

The loop hands each micro-batch to the stage's `Objective` as a `Batch`; the objective answers
`(loss, parts)`: the scalar loss to back-propagate and the named parts to log. An objective that
needs work done once before the first step (e.g. the teacher's logits for TD phase 2) does it in
`prepare`, which the loop calls on every process at once, and never for a stage that is skipped
as already finished.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Batch", "FunctionObjective", "Objective"]

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Batch:
    """One micro-batch of B rows padded to T tokens, as the loop gives it to an objective.

    input_ids:      (B, T) long, the token ids (padding after each row's end)
    attention_mask: (B, T) long, 1 at real tokens, 0 at padding
    token_type_ids: (B, T) long, 0 for segment A (and padding), 1 for segment B
    labels:         gold labels: (B,) long class ids, (B,) float32 for regression, or for token
                    tasks (B, T) long with -100 where nothing is scored ([CLS], [SEP], padding);
                    None for a corpus (general distillation has no labels)
    index:          (B,) long, each row's position in the training set (the key of cached teacher
                    outputs); None for a corpus

    Data parallel (torchrun), each process holds only its slice of the global micro-batch, and
    every loss must be averaged over the global batch's counts (not the slice's) so that the
    slices' losses add up to the whole batch's. The loop then fills in those counts, as 0-dim
    float32 tensors on the batch's device; they are None when this batch is the whole global
    batch (one process), and the losses count this batch's own:

    norm_rows:   rows of the global batch
    norm_tokens: real tokens of the global batch (sum of row lengths)
    norm_pairs:  (real query, real key) token pairs of the global batch (sum of squared lengths)
    norm_scored: token tasks only: the global batch's scored tokens (labels other than -100);
                 None for other tasks
    """

    input_ids: Tensor
    attention_mask: Tensor
    token_type_ids: Tensor
    labels: Tensor | None = None
    index: Tensor | None = None
    norm_rows: Tensor | None = None
    norm_tokens: Tensor | None = None
    norm_pairs: Tensor | None = None
    norm_scored: Tensor | None = None

    @classmethod
    def from_rows(cls, rows: Mapping[str, Tensor]) -> Batch:
        """A batch from collated rows (`tinybert.data.collate`, a corpus's `collate`): the model
        inputs, and labels and index where the data has them."""
        return cls(
            input_ids=rows["input_ids"],
            attention_mask=rows["attention_mask"],
            token_type_ids=rows["token_type_ids"],
            labels=rows.get("labels"),
            index=rows.get("index"),
        )

    def inputs(self) -> dict[str, Tensor]:
        """The model's inputs: input_ids, attention_mask, token_type_ids."""
        return {k: getattr(self, k) for k in MODEL_INPUTS}

    def require_labels(self) -> Tensor:
        """The labels; an error for a batch without them (a corpus)."""
        if self.labels is None:
            raise ValueError("this batch has no labels (corpus data): the objective needs them")
        return self.labels

    def require_index(self) -> Tensor:
        """The index (each row's position in the training set); an error without one."""
        if self.index is None:
            raise ValueError("this batch has no index (corpus data): the objective needs it")
        return self.index

    def row_share(self) -> float | Tensor:
        """This batch's share of the global batch's rows: 1 when it is the whole batch."""
        return 1.0 if self.norm_rows is None else len(self.input_ids) / self.norm_rows

    def to(self, device: torch.device) -> Batch:
        """The same batch with every tensor on `device` (copied without blocking)."""

        def move(value: Tensor | None) -> Tensor | None:
            return None if value is None else value.to(device, non_blocking=True)

        return Batch(
            input_ids=self.input_ids.to(device, non_blocking=True),
            attention_mask=self.attention_mask.to(device, non_blocking=True),
            token_type_ids=self.token_type_ids.to(device, non_blocking=True),
            labels=move(self.labels),
            index=move(self.index),
            norm_rows=move(self.norm_rows),
            norm_tokens=move(self.norm_tokens),
            norm_pairs=move(self.norm_pairs),
            norm_scored=move(self.norm_scored),
        )


class Objective(ABC):
    """What one training stage optimises: `objective(batch) -> (loss, parts)`.

    loss: a scalar tensor, averaged as the `Batch` docstring says (over the global batch's
    counts under data parallelism); parts: named floats to log (e.g. each loss term).
    """

    @abstractmethod
    def __call__(self, batch: Batch) -> tuple[Tensor, dict[str, float]]: ...

    def prepare(self) -> None:  # noqa: B027 - optional: most objectives have nothing to prepare
        """Work done once before the first step, on every process at once (default: none)."""


class FunctionObjective(Objective):
    """A plain function `batch -> (loss, parts)` as an objective (nothing to prepare)."""

    def __init__(self, fn: Callable[[Batch], tuple[Tensor, dict[str, float]]]):
        self.fn = fn

    def __call__(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        return self.fn(batch)
