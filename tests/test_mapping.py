"""Layer mapping, head checks and the hidden-state projection."""

import pytest
import torch

from tinybert.distill.mapping import (
    check_heads,
    resolve_layer_map,
    uniform_layer_map,
)
from tinybert.distill.projection import HiddenProjection
from tinybert.errors import UserError

# --------------------------------------------------------------------------------------------
# layer maps


@pytest.mark.parametrize(
    ("n_student", "n_teacher", "expected"),
    [
        (4, 12, [3, 6, 9, 12]),  # the paper's g(m) = 3m
        (6, 12, [2, 4, 6, 8, 10, 12]),
        (3, 12, [4, 8, 12]),
        (2, 2, [1, 2]),
        (1, 6, [6]),
        # not divisible: round(i * 6 / 4) = round(1.5, 3, 4.5, 6), halves up -> 2, 3, 5, 6
        (4, 6, [2, 3, 5, 6]),
        # round(i * 12 / 5) = round(2.4, 4.8, 7.2, 9.6, 12) -> 2, 5, 7, 10, 12
        (5, 12, [2, 5, 7, 10, 12]),
        # deeper student: round(i * 3 / 5) = round(0.6, 1.2, 1.8, 2.4, 3) -> 1, 1, 2, 2, 3
        (5, 3, [1, 1, 2, 2, 3]),
        # round(i / 3) for i = 1..6 is 0, 1, 1, 1, 2, 2; never below layer 1
        (6, 2, [1, 1, 1, 1, 2, 2]),
    ],
)
def test_uniform_layer_map(n_student, n_teacher, expected):
    assert uniform_layer_map(n_student, n_teacher) == expected


def test_uniform_layer_map_rejects_empty_models():
    with pytest.raises(UserError, match="at least one layer"):
        uniform_layer_map(0, 12)


def test_resolve_layer_map_default_and_explicit():
    assert resolve_layer_map(4, 12) == [3, 6, 9, 12]
    assert resolve_layer_map(4, 12, None) == [3, 6, 9, 12]
    # repeats and decreasing entries are allowed; tuples (from config) become lists
    assert resolve_layer_map(3, 12, (12, 1, 1)) == [12, 1, 1]


@pytest.mark.parametrize(
    ("explicit", "message"),
    [
        ([3, 6, 9], "has 3 entries but the student has 4"),
        ([3, 6, 9, 13], r"invalid entries \[13\]"),
        ([0, 6, 9, 12], r"invalid entries \[0\]"),
        ([3, 6.5, 9, 12], r"invalid entries \[6.5\]"),
        ([3, True, 9, 12], r"invalid entries \[True\]"),
        ([3, "6", 9, 12], r"invalid entries \['6'\]"),
        ("3,6,9,12", "must be a list"),
        (5, "must be a list"),
    ],
)
def test_resolve_layer_map_errors_name_the_key_and_range(explicit, message):
    with pytest.raises(UserError, match=message) as err:
        resolve_layer_map(4, 12, explicit)
    assert "distill.layer_map" in str(err.value)
    assert "1..12" in str(err.value)


def test_check_heads():
    check_heads(4, 4, True)
    check_heads(2, 4, False)  # no attention loss: any head count is fine
    with pytest.raises(UserError, match="distill.attention_weight=0") as err:
        check_heads(2, 4, True)
    assert "num_attention_heads=4" in str(err.value)


# --------------------------------------------------------------------------------------------
# projection


def test_shared_projection_uses_one_linear_for_all_layers():
    proj = HiddenProjection(32, 48, n_maps=3, shared=True)
    assert len(proj.layers) == 1
    h = torch.randn(2, 5, 32)
    out = proj(h, 0)
    assert out.shape == (2, 5, 48)
    assert torch.equal(out, proj(h, 2))
    torch.testing.assert_close(out, h @ proj.layers[0].weight.T + proj.layers[0].bias)


def test_per_layer_projection_has_one_linear_per_hidden_state():
    proj = HiddenProjection(32, 48, n_maps=3, shared=False)
    assert len(proj.layers) == 3
    h = torch.randn(2, 5, 32)
    assert not torch.allclose(proj(h, 0), proj(h, 1))
    proj(h, 1).sum().backward()  # only the used map gets a gradient
    assert proj.layers[0].weight.grad is None and proj.layers[2].weight.grad is None
    assert proj.layers[1].weight.grad is not None


def test_projection_bert_init():
    torch.manual_seed(0)
    proj = HiddenProjection(128, 256, n_maps=2, shared=True)
    w = proj.layers[0].weight
    assert w.shape == (256, 128)
    assert w.std().item() == pytest.approx(0.02, rel=0.05)  # 32768 samples
    assert abs(w.mean().item()) < 1e-3
    assert (proj.layers[0].bias == 0).all()


def test_equal_widths_still_learn_a_projection():
    assert len(HiddenProjection(32, 32, n_maps=3).layers) == 1  # as in the paper


def test_projection_index_out_of_range():
    proj = HiddenProjection(8, 16, n_maps=3)
    with pytest.raises(IndexError, match="0..2"):
        proj(torch.zeros(1, 1, 8), 3)
