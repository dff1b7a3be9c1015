"""BERT (Devlin et al. 2018) in one file: config, encoder, two task heads and the MLM head.

Parameter names are exactly those of Hugging Face transformers' BertModel,
BertForSequenceClassification, BertForTokenClassification and BertForMaskedLM, so state dicts move
between the two unchanged. What this file adds is the hook TinyBERT needs: every layer can hand
back its attention *scores* (scaled and masked, before softmax), which the attention-distillation
loss matches.

Shapes: B batch, T tokens, H hidden size, A attention heads, D = H / A head size, C labels,
V vocabulary size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, fields
from functools import partial
from typing import ClassVar, TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinybert.errors import UserError

# Hidden activations by their HF config name. "gelu_new" is the tanh approximation (GPT-2, Google's
# original BERT code); PyTorch computes the same curve as gelu(approximate="tanh").
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
}
# Activations on a head's input (BertConfig.classifier_activation).
HEAD_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu}

# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class BertConfig:
    """Model shape and head. Field names are the HF config.json keys, so files interchange."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    initializer_range: float = 0.02
    num_labels: int = 2
    id2label: tuple[str, ...] | None = None  # label names in class-index order; None = unnamed
    problem_type: str | None = None  # "single_label_classification" | "regression" | None
    classifier_dropout: float | None = None  # None: use hidden_dropout_prob (as HF does)
    # An activation on the classifier's input: "relu" for models converted from the MindSpore
    # seed, whose heads compute dense(relu(features)). Not a transformers key: transformers
    # loads such a model without it (its logits then differ). None: plain BERT heads.
    classifier_activation: str | None = None

    def __post_init__(self) -> None:
        if self.id2label is not None:  # accept any sequence, store a hashable tuple
            object.__setattr__(self, "id2label", tuple(str(n) for n in self.id2label))
            if len(self.id2label) != self.num_labels:
                raise UserError(
                    f"model config: id2label has {len(self.id2label)} names but num_labels is "
                    f"{self.num_labels}; give one name per label"
                )
        if self.hidden_size % self.num_attention_heads:
            raise UserError(
                f"model config: hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise UserError(
                f"model config: hidden_act '{self.hidden_act}' is not supported; "
                f"use one of {sorted(ACTIVATIONS)}"
            )
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise UserError(
                f"model config: pad_token_id {self.pad_token_id} is outside the vocabulary "
                f"(vocab_size {self.vocab_size})"
            )
        if self.num_labels < 1:
            raise UserError(f"model config: num_labels must be >= 1, got {self.num_labels}")
        if self.classifier_activation not in (None, *HEAD_ACTIVATIONS):
            raise UserError(
                f"model config: classifier_activation '{self.classifier_activation}' is not "
                f"supported; use null or one of {sorted(HEAD_ACTIVATIONS)}"
            )

    @classmethod
    def from_dict(cls, d: dict) -> BertConfig:
        """Read an HF config.json dict; unrelated HF keys are ignored.

        The label count comes from id2label ({"0": "neg", "1": "pos"}) when present, else from
        num_labels. Generic names ("LABEL_0", ...) are dropped: they name nothing.
        """
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise UserError(
                f"model config: position_embedding_type '{d['position_embedding_type']}' is not "
                "supported; only 'absolute' BERT models can be loaded"
            )
        known = {f.name for f in fields(cls)} - {"id2label", "num_labels"}
        kwargs = {k: v for k, v in d.items() if k in known}
        names = d.get("id2label")
        if names:
            names = [names[k] for k in sorted(names, key=int)]  # JSON keys are strings
            kwargs["num_labels"] = len(names)
            if names != [f"LABEL_{i}" for i in range(len(names))]:
                kwargs["id2label"] = tuple(names)
        elif "num_labels" in d:
            kwargs["num_labels"] = d["num_labels"]
        return cls(**kwargs)

    def to_dict(self, architecture: str | None = None) -> dict:
        """An HF-compatible config.json dict; `architecture` is the model class name, if any."""
        d = asdict(self)
        names = self.id2label or tuple(f"LABEL_{i}" for i in range(self.num_labels))
        del d["num_labels"]  # HF derives it from id2label
        d["id2label"] = {str(i): n for i, n in enumerate(names)}
        d["label2id"] = {n: i for i, n in enumerate(names)}
        d["model_type"] = "bert"
        d["position_embedding_type"] = "absolute"
        if architecture is not None:
            d["architectures"] = [architecture]
        return d


@dataclass
class BertOutput:
    """What every model's forward returns; fields a model does not compute are None."""

    logits: Tensor | None  # (B, C) sequence, (B, T, C) token, (B, T, V) MLM head; None encoder
    hidden_states: tuple[Tensor, ...] | None  # L+1 x (B, T, H); [0] is the embedding output
    # L x (B, A, T, T), scaled + masked, pre-softmax; a layer not asked for (see
    # BertModel.forward) holds None
    attention_scores: tuple[Tensor, ...] | None
    last_hidden_state: Tensor | None = None  # (B, T, H); (B, 1, H) under pooled_only
    pooled_output: Tensor | None = None  # (B, H)


# ---------------------------------------------------------------------------------------------
# encoder


class Embeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        """(B, T) ids and segment ids -> (B, T, H)."""
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention; optionally also returns the pre-softmax scores."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(
        self, x: Tensor, keep: Tensor | None, return_scores: bool = False, first_only: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, H), keep (B, T) bool, True = real token (None: all real).

        Returns the context (B, R, H) and, if asked, the scores (B, A, R, T): QK^T/sqrt(D) with
        masked keys set to finfo(dtype).min, i.e. exactly what HF's eager path feeds to softmax.
        R = T, or 1 with first_only: only position 0 queries (keys and values are every token).
        """
        B = x.size(0)
        rows = x[:, :1] if first_only else x
        q, k, v = (
            lin(y).view(B, -1, self.num_heads, self.head_size).transpose(1, 2)  # (B, A, R|T, D)
            for lin, y in ((self.query, rows), (self.key, x), (self.value, x))
        )
        # A finite minimum (not -inf, not a bool mask) keeps a fully padded sequence NaN-free:
        # its softmax is uniform instead of 0/0. Built in the compute dtype so autocast keeps it.
        masked = None if keep is None else ~keep[:, None, None, :]  # (B, 1, 1, T)
        if return_scores or explicit_is_faster(q):
            scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_size))
            if masked is not None:
                # Same values as adding (1 - mask) * min: score + min rounds to min in fp32.
                scores = scores.masked_fill(masked, torch.finfo(scores.dtype).min)
            probs = self.dropout(scores.softmax(dim=-1))
            context = probs @ v
        else:
            bias = None
            if masked is not None:
                bias = torch.zeros(masked.shape, dtype=q.dtype, device=q.device)
                bias = bias.masked_fill(masked, torch.finfo(q.dtype).min)
            p = self.dropout.p if self.training else 0.0
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
            scores = None
        context = context.transpose(1, 2).reshape(B, rows.size(1), -1)  # (B, R, H)
        return context, scores if return_scores else None


def explicit_is_faster(q: Tensor) -> bool:
    """Whether the explicit attention path beats F.scaled_dot_product_attention for q's device
    and dtype: on CPU in bf16 it does. There SDPA's fused kernel took 2x as long forward
    and 4-5x forward + backward as two batched matmuls and a softmax (batch 32, 12 heads, 64-128
    tokens, head size 26 and 64; AVX512-BF16 EPYC, torch 2.13; BENCHMARKS.md, TD step); in
    fp32, and on GPUs, SDPA is the faster one."""
    return q.device.type == "cpu" and q.dtype == torch.bfloat16


class ResidualOutput(nn.Module):
    """dense -> dropout -> + residual -> LayerNorm. Ends both the attention block (HF's
    "BertSelfOutput", input H) and the feed-forward block ("BertOutput", input intermediate_size).
    """

    def __init__(self, config: BertConfig, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        """(B, T, in_features), (B, T, H) -> (B, T, H)."""
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    """Self-attention block: `.self` (Q, K, V) and `.output` (projection), as HF names them."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = ResidualOutput(config, config.hidden_size)

    def forward(
        self, x: Tensor, keep: Tensor | None, return_scores: bool, first_only: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """(B, T, H) -> (B, R, H) (R = T, or 1 with first_only) and the scores or None."""
        context, scores = self.self(x, keep, return_scores, first_only)
        return self.output(context, x[:, :1] if first_only else x), scores


class Intermediate(nn.Module):
    """First feed-forward half: H -> intermediate_size, then the activation."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACTIVATIONS[config.hidden_act]

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, H) -> (B, T, intermediate_size)."""
        return self.act(self.dense(x))


class Layer(nn.Module):
    """One post-LayerNorm transformer layer: attention block, then feed-forward block."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = ResidualOutput(config, config.intermediate_size)

    def forward(
        self, x: Tensor, keep: Tensor | None, return_scores: bool, first_only: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """(B, T, H) -> (B, T, H) and the layer's scores (B, A, T, T) or None. first_only:
        position 0's output alone, (B, 1, H) (every token still serves as key and value)."""
        h, scores = self.attention(x, keep, return_scores, first_only)
        return self.output(self.intermediate(h), h), scores


class Encoder(nn.Module):
    """The stack of layers, `.layer[i]`; BertModel runs them, collecting per-layer outputs."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))


class Pooler(nn.Module):
    """tanh(dense(h_[CLS])): the sentence vector the sequence classifier reads."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, h: Tensor) -> Tensor:
        """(B, T, H) -> (B, H)."""
        return torch.tanh(self.dense(h[:, 0]))


class PredictionHeadTransform(nn.Module):
    """dense -> activation -> LayerNorm on every token: the first half of the MLM head."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACTIVATIONS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: Tensor) -> Tensor:
        """(B, T, H) -> (B, T, H)."""
        return self.LayerNorm(self.transform_act_fn(self.dense(h)))


class LMPredictionHead(nn.Module):
    """The transform, then a score for every vocabulary word: `.decoder` (H -> V), whose weight
    IS the given word embeddings' weight (tied: one Parameter under two names) and whose bias IS
    `.bias`. Both aliases are HF's layout, so state dicts keep HF's names, aliases included.
    """

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = PredictionHeadTransform(config)
        self.transform.apply(partial(init_weights, std=config.initializer_range))
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.weight = word_embeddings.weight  # (V, H)
        self.decoder.bias = self.bias  # (V,)

    def forward(self, h: Tensor) -> Tensor:
        """(B, T, H) -> (B, T, V) word scores."""
        return self.decoder(self.transform(h))


class MLMHead(nn.Module):
    """The masked-LM head as HF nests it: `cls.predictions` (HF's "BertOnlyMLMHead")."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = LMPredictionHead(config, word_embeddings)

    def forward(self, h: Tensor) -> Tensor:
        """(B, T, H) -> (B, T, V)."""
        return self.predictions(h)


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's init: N(0, std) weights, zero biases (and padding row), LayerNorm 1 / 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------
# models


class BertModel(nn.Module):
    """The bare encoder: `.embeddings`, `.encoder.layer[i]`, `.pooler` (None if not added)."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config) if add_pooling_layer else None
        self.apply(partial(init_weights, std=config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attention_scores: bool | Collection[int] = False,
        pooled_only: bool = False,
    ) -> BertOutput:
        """input_ids (B, T) long; attention_mask (B, T) 1 = real token, 0 = padding (None: all
        real); token_type_ids (B, T) segment ids (None: all 0).

        pooled_only: the caller reads the pooled [CLS] vector and nothing else per token (a
        sequence head's logits). Unless hidden states or the last layer's scores are asked for,
        the last layer then computes position 0 alone (its keys and values still come from
        every token), so last_hidden_state is (B, 1, H): the same pooled output (within float
        rounding) for about 1/L less work, forward and backward.

        With output_attention_scores, attention is computed explicitly so that the scores exist;
        otherwise it goes through F.scaled_dot_product_attention (fused kernels, less memory),
        except on CPU in bf16, where the explicit path is faster. output_attention_scores
        may also name the layers (0-based) whose scores are wanted: only those return them, the
        others are None in `attention_scores` (a phase-1 teacher needs its mapped layers' only).
        """
        seq_len = input_ids.size(1)
        if seq_len > self.config.max_position_embeddings:
            raise UserError(
                f"sequence of {seq_len} tokens is longer than the model's max_position_embeddings "
                f"({self.config.max_position_embeddings}); lower max_seq_length"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        keep = None if attention_mask is None else attention_mask.bool()
        if keep is not None and bool(keep.all()):
            keep = None  # no padding: skip the mask (and let SDPA pick its mask-free kernels)
        h = self.embeddings(input_ids, token_type_ids)
        wanted = score_layers(output_attention_scores, len(self.encoder.layer))
        hidden, scores = [h], []
        last = len(self.encoder.layer) - 1
        first_only = pooled_only and not output_hidden_states and last not in wanted
        for i, layer in enumerate(self.encoder.layer):
            h, s = layer(h, keep, i in wanted, first_only and i == last)
            hidden.append(h)
            scores.append(s)
        return BertOutput(
            logits=None,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attention_scores=tuple(scores) if wanted else None,
            last_hidden_state=h,
            pooled_output=self.pooler(h) if self.pooler is not None else None,
        )


class _Classifier(nn.Module):
    """What both task heads share: the encoder, then dropout, the config's
    classifier_activation (if any) and a linear layer on the features `_features` picks."""

    # Whether the logits read the [CLS] row alone (then the last layer computes only it).
    reads_cls_only: ClassVar[bool] = False

    def __init__(self, config: BertConfig, add_pooling_layer: bool):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=add_pooling_layer)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        init_weights(self.classifier, config.initializer_range)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attention_scores: bool | Collection[int] = False,
    ) -> BertOutput:
        """Same inputs as BertModel.forward; logits (B, C), or (B, T, C) for a token head."""
        out = self.bert(
            input_ids,
            attention_mask,
            token_type_ids,
            output_hidden_states,
            output_attention_scores,
            pooled_only=self.reads_cls_only,
        )
        out.logits = self.head(self._features(out))
        return out

    def head(self, features: Tensor) -> Tensor:
        """Features (B, H) or (B, T, H) -> logits (B, C) or (B, T, C)."""
        x = self.dropout(features)
        act = self.config.classifier_activation
        return self.classifier(HEAD_ACTIVATIONS[act](x) if act else x)

    def _features(self, out: BertOutput) -> Tensor:
        raise NotImplementedError


class BertForSequenceClassification(_Classifier):
    """Encoder + dropout + linear on the pooled [CLS] vector; num_labels == 1 is regression."""

    reads_cls_only = True

    def __init__(self, config: BertConfig):
        super().__init__(config, add_pooling_layer=True)

    def _features(self, out: BertOutput) -> Tensor:
        assert out.pooled_output is not None  # this encoder has its pooler
        return out.pooled_output  # (B, H)


class BertForTokenClassification(_Classifier):
    """Encoder + dropout + linear on every token. No pooler, like HF (its weights would be unused)."""

    def __init__(self, config: BertConfig):
        super().__init__(config, add_pooling_layer=False)

    def _features(self, out: BertOutput) -> Tensor:
        assert out.last_hidden_state is not None
        return out.last_hidden_state  # (B, T, H)


class BertForMaskedLM(nn.Module):
    """Encoder + MLM head: scores every vocabulary word at every position (e.g. the top-k words
    for a [MASK]). No pooler, like HF. The decoder is tied to the word embeddings."""

    # Tied names in state_dict(): alias -> the tensor it is. A checkpoint may omit the aliases
    # (save_model and HF's save_pretrained do); one that has them must agree.
    TIED_WEIGHTS: ClassVar[dict[str, str]] = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = MLMHead(config, self.bert.embeddings.word_embeddings)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attention_scores: bool | Collection[int] = False,
    ) -> BertOutput:
        """Same inputs as BertModel.forward; logits (B, T, V)."""
        out = self.bert(
            input_ids, attention_mask, token_type_ids, output_hidden_states, output_attention_scores
        )
        out.logits = self.cls(out.last_hidden_state)
        return out


# The models above by what they offer: every one has `.config`; a task model also has `.bert`
# (its encoder) and `.classifier`. Typing a model as one of these, not nn.Module, lets the type
# checker see those attributes (nn.Module's own __getattr__ types them Tensor | Module).
# BertForMaskedLM is in neither: it has no `.classifier`, and training/distillation never take it.
BertTaskModel: TypeAlias = BertForSequenceClassification | BertForTokenClassification
AnyBertModel: TypeAlias = BertModel | BertTaskModel


def score_layers(wanted: bool | Collection[int], n_layers: int) -> frozenset[int]:
    """The 0-based layers whose attention scores a forward returns: all (True), none (False), or
    the given ones, each checked to exist."""
    if isinstance(wanted, bool):
        return frozenset(range(n_layers)) if wanted else frozenset()
    layers = frozenset(wanted)
    if not all(0 <= i < n_layers for i in layers):
        raise ValueError(
            f"attention scores asked of layers {sorted(layers)}; the model has {n_layers}"
        )
    return layers


def _classifier_dropout(config: BertConfig) -> float:
    if config.classifier_dropout is None:
        return config.hidden_dropout_prob
    return config.classifier_dropout
