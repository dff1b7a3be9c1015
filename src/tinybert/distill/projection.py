"""Learned maps from the student's hidden width to the teacher's (W_h, W_e of the paper).

The student is narrower than the teacher (e.g. 312 vs 768), so its hidden states are
projected, h_s @ W + b, before the MSE against the teacher's. The paper uses one shared W_h for
every layer (embeddings included, as the reference scripts do); `shared=False` gives each
mapped hidden state its own. The projections are trained in phase 1 and then thrown away.
"""

from __future__ import annotations

from torch import Tensor, nn


class HiddenProjection(nn.Module):
    """Project student hidden states (B, T, student_width) to (B, T, teacher_width).

    n_maps: how many hidden states get projected, normally n_student_layers + 1 (embeddings).
    shared: one linear map for all of them (paper) or one per hidden state. Equal widths
        still learn a map, as the paper does.
    """

    def __init__(
        self,
        student_width: int,
        teacher_width: int,
        n_maps: int,
        shared: bool = True,
        init_std: float = 0.02,
    ):
        super().__init__()
        if n_maps < 1:
            raise ValueError(f"n_maps must be >= 1, got {n_maps}")
        self.n_maps, self.shared = n_maps, shared
        n_layers = 1 if shared else n_maps
        linears = [nn.Linear(student_width, teacher_width) for _ in range(n_layers)]
        for layer in linears:  # BERT's linear init
            nn.init.normal_(layer.weight, mean=0.0, std=init_std)
            nn.init.zeros_(layer.bias)
        self.layers = nn.ModuleList(linears)

    def forward(self, h: Tensor, i: int) -> Tensor:
        """h: (B, T, student_width), the student's hidden_states[i] -> (B, T, teacher_width)."""
        if not 0 <= i < self.n_maps:
            raise IndexError(f"hidden-state index {i} out of range 0..{self.n_maps - 1}")
        return self.layers[0 if self.shared else i](h)

    def extra_repr(self) -> str:
        return f"n_maps={self.n_maps}, shared={self.shared}"
