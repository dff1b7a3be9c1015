"""The model types tinybert takes as teachers, and what the layers above need to know of each:
the data layer (tokenizer kind, segment ids) and the model layer (attention signal, layout).
One table, so the two agree.

    FAMILIES["roberta"].segment_ids         # False: RoBERTa reads no token_type_ids
    reads_segment_ids("deberta-v2", {})      # False: DeBERTa-v3 has type_vocab_size 0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

AttentionSignal = Literal["scores", "probabilities"]


@dataclass(frozen=True)
class Family:
    """What tinybert needs to know of a model type (config.json's model_type)."""

    name: str  # config.json model_type
    label: str  # how a person names it
    attention: AttentionSignal  # what the student's attention loss reads (model/teachers.py)
    # The model reads segment ids (token_type_ids) when its config's type_vocab_size > 1;
    # `default_types` is transformers' default for a config that does not say.
    segment_ids: bool
    default_types: int
    wordpiece: bool  # a vocab.txt (WordPiece) is enough for its tokenizer
    bert_shaped: bool  # post-LayerNorm BERT blocks: the weights map onto tinybert's BERT
    layers: str  # the encoder's layer list, from the transformers base model
    attention_module: str  # a layer's self-attention module (the one calling the interface)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("bert", "BERT", "scores", True, 2, True, True, "encoder.layer", "attention.self"),
        Family(
            "roberta", "RoBERTa", "scores", False, 1, False, True, "encoder.layer",
            "attention.self",
        ),
        Family(
            "xlm-roberta", "XLM-RoBERTa", "scores", False, 1, False, True, "encoder.layer",
            "attention.self",
        ),
        Family(
            "electra", "ELECTRA", "scores", True, 2, True, True, "encoder.layer", "attention.self"
        ),
        Family(
            "deberta-v2", "DeBERTa-v2/v3", "probabilities", True, 0, False, False,
            "encoder.layer", "",
        ),
        Family("modernbert", "ModernBERT", "scores", False, 0, False, False, "layers", "attn"),
        Family(
            "distilbert", "DistilBERT", "scores", False, 0, True, True, "transformer.layer",
            "attention",
        ),
    )
}  # fmt: skip


def reads_segment_ids(model_type: str | None, config: Mapping[str, Any]) -> bool:
    """Whether a model of `model_type` with this config.json reads segment ids: BERT and
    ELECTRA do (type_vocab_size 2); RoBERTa, XLM-R, DistilBERT and ModernBERT never; DeBERTa
    when its type_vocab_size > 1 (DeBERTa-v3: 0). An unknown type: by its type_vocab_size."""
    family = FAMILIES.get(model_type or "bert")
    if family is not None and not family.segment_ids:
        return False
    size = config.get("type_vocab_size", family.default_types if family else 2)
    return not isinstance(size, int) or size > 1
