"""Weight selection (Xu et al. 2023, "Initializing Models with Larger Ones"): a smaller BERT's
first weights are a subset of a larger one's, taken with the same indices everywhere.

    indices = select_indices(source.config, student.config)
    new = select_weights(source.state_dict(), source.config, student, layers=[2, 4, 6])

Which entries are kept, per dimension (Hs, As, Ds, Is: the source's hidden size, heads, head
size and FFN width; Ht, At, Dt, It the target's):
  - the residual (hidden) width: `spread(Hs, Ht)`, the SAME indices in every tensor that reads or
    writes the residual stream (embeddings, every LayerNorm, Q/K/V inputs, the attention and FFN
    output rows, FFN inputs, pooler, classifier inputs), so the stream stays one consistent subset;
  - attention: `spread(As, At)` whole heads, and inside each kept head `spread(Ds, Dt)` of its
    dimensions; Q/K/V output rows and the attention output's input columns use these together;
  - the FFN width: `spread(Is, It)`, the first FFN's rows and the second's columns;
  - layers: target layer k takes source layer layers[k] (1-based), chosen by the caller;
  - positions and token types: the first rows; the vocabulary must be the same;
  - the classifier: copied (input columns selected) only when the source has one with the same
    labels; the pooler when the source has one. Anything not copied keeps its initial weights.

Equal shapes select every entry, so the copy is exact. A target larger than the source in any
dimension cannot be selected and is refused by `check_selectable`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from tinybert.errors import UserError
from tinybert.model.bert import AnyBertModel, BertConfig


def spread(n_source: int, n_target: int) -> list[int]:
    """`n_target` evenly spaced indices of range(n_source): floor(i * n_source / n_target).

    The first index is 0; equal sizes give every index. E.g. spread(8, 6) = [0, 1, 2, 4, 5, 6].
    """
    if not 1 <= n_target <= n_source:
        raise ValueError(f"cannot spread {n_target} indices over {n_source}")
    return [i * n_source // n_target for i in range(n_target)]


@dataclass(frozen=True)
class Indices:
    """The source entries each target dimension keeps (see the module docstring)."""

    hidden: list[int]  # Ht residual-stream entries of Hs
    attention: list[int]  # At * Dt entries of As * Ds: kept heads, then kept dims in each
    ffn: list[int]  # It entries of Is


def head_size(config: BertConfig) -> int:
    return config.hidden_size // config.num_attention_heads


def select_indices(source: BertConfig, target: BertConfig) -> Indices:
    """Which source entries the target keeps, per dimension; the shapes must be selectable."""
    check_selectable(source, target)
    d_source, d_target = head_size(source), head_size(target)
    dims = spread(d_source, d_target)
    heads = spread(source.num_attention_heads, target.num_attention_heads)
    return Indices(
        hidden=spread(source.hidden_size, target.hidden_size),
        # Head h's dims are rows h * D .. h * D + D - 1 of Q/K/V (the view in SelfAttention).
        attention=[h * d_source + d for h in heads for d in dims],
        ffn=spread(source.intermediate_size, target.intermediate_size),
    )


def check_selectable(source: BertConfig, target: BertConfig, n_layers: int | None = None) -> None:
    """One UserError line naming the first dimension where the target is larger than the
    source (or the vocabularies differ). n_layers: the target's layer count, if not its config's."""
    if target.vocab_size != source.vocab_size:
        raise UserError(
            f"weight selection needs the same vocabulary: vocab_size {target.vocab_size} in the "
            f"student, {source.vocab_size} in the source"
        )
    sizes = [
        ("num_hidden_layers", n_layers or target.num_hidden_layers, source.num_hidden_layers),
        ("hidden_size", target.hidden_size, source.hidden_size),
        ("num_attention_heads", target.num_attention_heads, source.num_attention_heads),
        ("head size (hidden_size / num_attention_heads)", head_size(target), head_size(source)),
        ("intermediate_size", target.intermediate_size, source.intermediate_size),
        ("max_position_embeddings", target.max_position_embeddings, source.max_position_embeddings),
        ("type_vocab_size", target.type_vocab_size, source.type_vocab_size),
    ]
    for name, mine, theirs in sizes:
        if mine > theirs:
            raise UserError(
                f"weight selection can only shrink a model, but the student's {name} {mine} is "
                f"larger than the source's {theirs}; use a student with {name} <= {theirs}"
            )


# What each tensor's dimensions are, by name (first match wins; names without the "bert." prefix
# and the layer number). "first": the first rows (positions, token types, vocabulary, labels).
_RULES: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (re.compile(p), roles)
    for p, roles in [
        (r"embeddings\.\w+_embeddings\.weight$", ("first", "hidden")),
        (r"LayerNorm\.(weight|bias)$", ("hidden",)),
        (r"attention\.self\.(query|key|value)\.weight$", ("attention", "hidden")),
        (r"attention\.self\.(query|key|value)\.bias$", ("attention",)),
        (r"attention\.output\.dense\.weight$", ("hidden", "attention")),
        (r"intermediate\.dense\.weight$", ("ffn", "hidden")),
        (r"intermediate\.dense\.bias$", ("ffn",)),
        (r"output\.dense\.weight$", ("hidden", "ffn")),  # the FFN's second half
        (r"(output|pooler)\.dense\.bias$", ("hidden",)),
        (r"pooler\.dense\.weight$", ("hidden", "hidden")),
        (r"classifier\.weight$", ("first", "hidden")),
        (r"classifier\.bias$", ("first",)),
    ]
]
_LAYER = re.compile(r"^(bert\.)?encoder\.layer\.(\d+)\.")


def select_weights(
    source: Mapping[str, Tensor],
    source_config: BertConfig,
    target: AnyBertModel,
    layers: Sequence[int],
) -> list[str]:
    """Fill `target` with a selection of `source`'s tensors, in place.

    source: a state dict of a BERT of `source_config`, with or without the "bert." prefix (a
    task model's or a bare encoder's). layers: the source layer (1-based) each target layer
    starts from. Returns the target tensors left as they were (no source tensor: a pooler or
    classifier the source lacks, or a classifier for other labels).
    """
    config = target.config
    check_selectable(source_config, config, len(layers))
    if len(layers) != config.num_hidden_layers or any(
        not 1 <= i <= source_config.num_hidden_layers for i in layers
    ):
        raise UserError(
            f"weight selection: give one source layer in 1..{source_config.num_hidden_layers} "
            f"per student layer ({config.num_hidden_layers}), got {list(layers)}"
        )
    index = select_indices(source_config, config)
    by_role = {"hidden": index.hidden, "attention": index.attention, "ffn": index.ffn}
    plain = {_strip(k): v for k, v in source.items()}
    same_labels = (source_config.num_labels, source_config.id2label) == (
        config.num_labels,
        config.id2label,
    )
    kept: list[str] = []
    state = {}
    for name, tensor in target.state_dict().items():
        key = _source_name(_strip(name), layers)
        if key not in plain or (key.startswith("classifier.") and not same_labels):
            kept.append(name)
            continue
        roles = next(roles for pattern, roles in _RULES if pattern.search(key))
        state[name] = _take(plain[key], roles, by_role, tensor.shape)
    target.load_state_dict(state, strict=False)
    return kept


def _strip(name: str) -> str:
    """A task model's name without its "bert." prefix: the bare encoder's naming."""
    return name.removeprefix("bert.")


def _source_name(name: str, layers: Sequence[int]) -> str:
    """The source tensor a target tensor is selected from: layer k -> layer layers[k] - 1."""
    found = _LAYER.match(name)
    if found is None:
        return name
    source_layer = layers[int(found.group(2))] - 1
    return f"encoder.layer.{source_layer}.{name[found.end() :]}"


def _take(
    tensor: Tensor, roles: tuple[str, ...], by_role: dict[str, list[int]], shape: torch.Size
) -> Tensor:
    """The entries of `tensor` that `roles` name along each dimension, as a new tensor of
    `shape` (e.g. a Q weight (As*Ds, Hs) -> (At*Dt, Ht))."""
    out = tensor.detach()
    for dim, (role, size) in enumerate(zip(roles, shape, strict=True)):
        rows = list(range(size)) if role == "first" else by_role[role]
        out = out.index_select(dim, torch.tensor(rows, device=out.device))
    return out.clone()
