"""Which teacher layer each student layer learns from (the mapping function g of the paper).

A layer map is a list with one entry per student layer: `layer_map[i - 1]` is the teacher
layer that student layer i (1-based) imitates. Indices live in hidden-states space, where 0 is
the embedding output and 1..L are the transformer layers, so they can index
`BertOutput.hidden_states` directly. The embeddings always map 0 <- 0 and are not in the list.

Attention scores have no embedding entry: `attention_scores[k]` belongs to layer k + 1, so
student layer i reads `attention_scores[i - 1]` of both models (see objectives.IntermediateLoss).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

from tinybert.errors import UserError


def uniform_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Spread the student's layers evenly over the teacher's: student layer i <- teacher g(i).

    When n_teacher is a multiple of n_student, g(i) = i * (n_teacher // n_student): the
    paper's g(m) = 3m for a 4-layer student of a 12-layer teacher gives [3, 6, 9, 12].
    Otherwise g(i) = round(i * n_teacher / n_student), rounding halves up, and at least 1;
    e.g. 4 of 6 gives [2, 3, 5, 6]. The last student layer always maps to the last teacher layer.
    """
    for name, n in (("student", n_student), ("teacher", n_teacher)):
        if n < 1:
            raise UserError(f"the {name} model must have at least one layer, got {n}")
    # Integer form of round-half-up(i * n_teacher / n_student); exact, no float error.
    return [
        max(1, (2 * i * n_teacher + n_student) // (2 * n_student)) for i in range(1, n_student + 1)
    ]


def resolve_layer_map(
    n_student: int, n_teacher: int, explicit: Sequence[int] | None = None
) -> list[int]:
    """The configured layer map (`distill.layer_map`) checked against both models, or the uniform one.

    explicit: one teacher layer (1..n_teacher) per student layer, or None for `uniform_layer_map`.
    Entries may repeat and need not increase.
    """
    if explicit is None:
        return uniform_layer_map(n_student, n_teacher)
    allowed = f"each an integer teacher layer in 1..{n_teacher}"
    if isinstance(explicit, str | bytes) or not isinstance(explicit, Sequence):
        raise UserError(
            f"distill.layer_map must be a list of {n_student} entries ({allowed}), got {explicit!r}"
        )
    if len(explicit) != n_student:
        raise UserError(
            f"distill.layer_map has {len(explicit)} entries but the student has {n_student} "
            f"layers; give one per student layer ({allowed}), e.g. "
            f"{uniform_layer_map(n_student, n_teacher)}, or remove the key for a uniform map"
        )
    bad = [
        x
        for x in explicit
        if isinstance(x, bool) or not isinstance(x, Integral) or not 1 <= x <= n_teacher
    ]
    if bad:
        raise UserError(
            f"distill.layer_map {list(explicit)}: invalid entries {bad}; {allowed} "
            f"(0 is the embedding layer, which is always mapped and must not be listed)"
        )
    return [int(x) for x in explicit]


def check_heads(student_heads: int, teacher_heads: int, attention_loss_on: bool) -> None:
    """The attention loss compares heads one to one, so it needs equal head counts."""
    if attention_loss_on and student_heads != teacher_heads:
        raise UserError(
            f"the attention loss needs the same number of heads, but the student has "
            f"{student_heads} and the teacher {teacher_heads}; set distill.attention_weight=0 "
            f"or use a student with num_attention_heads={teacher_heads}"
        )
