"""Teachers beyond BERT: RoBERTa, XLM-RoBERTa, ELECTRA, DeBERTa-v2/v3, ModernBERT and DistilBERT,
behind the forward signature and output of tinybert's own BERT (model/bert.py).

    model, report = load_any_model("models/roberta-sst2", head="sequence")
    out = model(input_ids, attention_mask, output_hidden_states=True, output_attention_scores=[1])
    model.attention_signal  # "scores" (pre-softmax) or "probabilities" (DeBERTa)

BERT directories load as today (tinybert.model.bert, bit for bit). Every other family runs as
transformers' own model (the reference implementation: nothing is re-written), with one addition
for the attention TinyBERT distils: an attention function registered with transformers'
AttentionInterface under the name "tinybert". It computes exactly what the eager path computes,
and for the layers whose scores are asked for it keeps the pre-softmax scores (QK^T * scale plus
the mask: padding and, in ModernBERT's local layers, the keys outside the window, all at
finfo(dtype).min, as tinybert's BERT masks). The other layers go through
F.scaled_dot_product_attention, as transformers' SDPA path does. DeBERTa's disentangled attention
adds relative-position terms inside its own module, where no interface reaches them; it runs
transformers' eager path and gives its attention probabilities instead.

Shapes: B batch, T tokens, A heads, H hidden size, C labels, V vocabulary.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinybert.errors import UserError
from tinybert.families import FAMILIES, AttentionSignal, Family, reads_segment_ids
from tinybert.model.bert import (
    ACTIVATIONS,
    AnyBertModel,
    BertConfig,
    BertForMaskedLM,
    BertOutput,
    explicit_is_faster,
    score_layers,
)
from tinybert.model.hub import (
    CONFIG_FILE,
    TOKENIZER_FILES,
    LoadReport,
    head_of,
    load_model,
    read_config_json,
    save_model,
)

Head = Literal["sequence", "token", "encoder", "mlm"]
ATTENTION_NAME = "tinybert"  # the name our attention function is registered under
_SINK = "_tinybert_scores"  # attribute an attention module collects its scores in, when asked


_AUTO = {
    "sequence": "AutoModelForSequenceClassification",
    "token": "AutoModelForTokenClassification",
    "encoder": "AutoModel",
    "mlm": "AutoModelForMaskedLM",
}


def _raw_config(model_dir: str | Path) -> dict[str, Any]:
    return read_config_json(model_dir, "a Hugging Face")


def model_family(model_dir: str | Path) -> Family:
    """The family of the model in `model_dir`, from config.json's model_type (BERT if absent)."""
    model_type = _raw_config(model_dir).get("model_type", "bert")
    if model_type not in FAMILIES:
        raise UserError(
            f"{Path(model_dir) / CONFIG_FILE}: model_type '{model_type}' is not supported; "
            f"supported teachers: {', '.join(FAMILIES)}"
        )
    return FAMILIES[model_type]


def any_saved_head(model_dir: str | Path) -> Literal["sequence", "token"]:
    """The task head a saved model of any family has, from config.json's "architectures":
    "token" for a ...ForTokenClassification, else "sequence" (hub.saved_head for BERT)."""
    model_family(model_dir)  # a clear error for a missing, broken or unsupported config.json
    return head_of(_raw_config(model_dir))


# ---------------------------------------------------------------------------------------------
# the attention function


def _attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **_: Any,
) -> tuple[Tensor, None]:
    """transformers' attention-function contract: q, k, v (B, A, T, D); attention_mask a
    (B, 1, T, T) bool (True = attend; transformers' SDPA mask, sliding windows included) or None.
    Returns the context (B, T, A, D). A module whose `_tinybert_scores` is a list gets its
    pre-softmax scores (B, A, T, T), masked keys at finfo.min, appended to it."""
    scale = query.size(-1) ** -0.5 if scaling is None else scaling
    sink: list[Tensor] | None = getattr(module, _SINK, None)
    p = dropout if module.training else 0.0
    if attention_mask is not None and attention_mask.dtype != torch.bool:  # an additive mask
        attention_mask = attention_mask > torch.finfo(attention_mask.dtype).min / 2
    if sink is not None or explicit_is_faster(query):
        scores = (query @ key.transpose(-1, -2)) * scale
        if attention_mask is not None:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        if sink is not None:
            sink.append(scores)
        probs = F.dropout(scores.softmax(dim=-1), p=p, training=module.training)
        context = probs @ value
    else:
        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=p, scale=scale
        )
    return context.transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    """Make "tinybert" an attention implementation transformers knows, with SDPA's bool masks."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, _attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)


# ---------------------------------------------------------------------------------------------
# the model


class HFModel(nn.Module):
    """A transformers encoder (with a task head, an MLM head or none) that answers like
    tinybert's BERT: forward(...) -> BertOutput. `.config` summarises it as a BertConfig (the
    shape a student copies: vocabulary, usable positions, widths, labels)."""

    hf: Any  # a transformers PreTrainedModel (untyped)

    def __init__(self, hf: nn.Module, family: Family, head: Head):
        super().__init__()
        self.hf = hf
        self.family = family
        self.head = head
        self.config = summary_config(hf.config, family)
        base = getattr(hf, "base_model", hf)
        self._layers: nn.ModuleList = _get(base, family.layers)

    @property
    def attention_signal(self) -> AttentionSignal:
        """ "scores" (pre-softmax, masked at finfo.min) or "probabilities" (DeBERTa)."""
        return self.family.attention

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attention_scores: bool | Collection[int] = False,
    ) -> BertOutput:
        """As BertModel.forward: input_ids (B, T); attention_mask (B, T) 1 = real token;
        token_type_ids (B, T), ignored where the model has no token types. Returns logits
        ((B, C), (B, T, C), (B, T, V) or None), hidden_states L+1 x (B, T, H) and
        attention_scores L x (B, A, T, T) for the layers asked (None elsewhere): scores, or
        probabilities when attention_signal says so."""
        n = len(self._layers)
        wanted = score_layers(output_attention_scores, n)
        if input_ids.size(1) > self.config.max_position_embeddings:
            raise UserError(
                f"sequence of {input_ids.size(1)} tokens is longer than the model takes "
                f"({self.config.max_position_embeddings}); lower max_seq_length"
            )
        kwargs: dict[str, Any] = {"attention_mask": attention_mask}
        if token_type_ids is not None and self.config.type_vocab_size > 1:
            kwargs["token_type_ids"] = token_type_ids
        probabilities = self.family.attention == "probabilities"
        sinks = self._open_sinks(wanted) if wanted and not probabilities else {}
        try:
            out = self.hf(
                input_ids,
                output_hidden_states=output_hidden_states,
                output_attentions=bool(wanted) and probabilities,
                return_dict=True,
                **kwargs,
            )
        finally:
            for i in sinks:
                delattr(self._attention_module(i), _SINK)
        scores: tuple[Tensor | None, ...] | None = None
        if probabilities and wanted:
            scores = tuple(a if i in wanted else None for i, a in enumerate(out.attentions))
        elif wanted:
            scores = tuple(sinks[i][0] if i in sinks else None for i in range(n))
        logits = None if self.head == "encoder" else out.logits
        last = None if self.head == "mlm" else getattr(out, "last_hidden_state", None)
        return BertOutput(
            logits=logits,
            hidden_states=tuple(out.hidden_states) if output_hidden_states else None,
            attention_scores=scores,  # type: ignore[arg-type]  # None = a layer not asked for
            last_hidden_state=last,
            pooled_output=getattr(out, "pooler_output", None),
        )

    def _attention_module(self, i: int) -> nn.Module:
        return _get(self._layers[i], self.family.attention_module)

    def _open_sinks(self, wanted: frozenset[int]) -> dict[int, list[Tensor]]:
        sinks: dict[int, list[Tensor]] = {i: [] for i in wanted}
        for i, sink in sinks.items():
            setattr(self._attention_module(i), _SINK, sink)
        return sinks

    def save(self, out_dir: str | Path) -> None:
        """The model as a Hugging Face directory in its own family's format (save_pretrained,
        safetensors): transformers' Auto classes load it as they loaded the original."""
        self.hf.save_pretrained(out_dir, safe_serialization=True)  # no attention choice saved

    def bert_state_dict(self) -> dict[str, Tensor]:
        """The weights under tinybert BERT names (bert.embeddings..., bert.encoder.layer.N...,
        bert.pooler..., classifier...), for weight selection and student.init=teacher_layers.
        RoBERTa's position table loses its first pad_token_id + 1 rows (its positions start
        there); a RoBERTa sequence head (dense, tanh, out_proj on <s>) is BERT's pooler and
        classifier exactly; ELECTRA's and DistilBERT's sequence heads (GELU/ReLU) are left out."""
        if refusal := self.bert_refusal():
            raise UserError(refusal)
        return _bert_names(self.hf.state_dict(), self.family, self.config, self.head)

    def bert_refusal(self) -> str:
        """Why the weights cannot start a BERT student; "" when they can (RoBERTa, XLM-R,
        DistilBERT, ELECTRA with embeddings as wide as its hidden states)."""
        if self.family.bert_shaped and _embeddings_fit(self.hf.config):
            return ""
        return (
            f"a {self.family.label} teacher's blocks are not BERT's, so its weights cannot "
            "start a BERT student; use student.init=random (or general-distill a student "
            "first and give it as student.path)"
        )


# A teacher: tinybert's BERT, or a model of another family behind the same forward.
Teacher = AnyBertModel | HFModel


def _get(module: nn.Module, dotted: str) -> Any:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _embeddings_fit(config: Any) -> bool:
    """ELECTRA's embeddings may be narrower than its hidden size (a projection between)."""
    return getattr(config, "embedding_size", config_hidden(config)) == config_hidden(config)


def config_hidden(config: Any) -> int:
    return int(getattr(config, "hidden_size", None) or config.dim)


def usable_positions(config: Any, family: Family) -> int:
    """How many tokens the model takes: RoBERTa and XLM-R number positions from
    pad_token_id + 1, so 514 position rows take 512 tokens."""
    n = int(config.max_position_embeddings)
    if family.name in ("roberta", "xlm-roberta"):
        n -= int(config.pad_token_id) + 1
    return n


def summary_config(config: Any, family: Family) -> BertConfig:
    """The transformers config of a `family` model as a tinybert BertConfig: the shape a
    student takes from its teacher (vocabulary, usable positions, pad id) and the teacher's
    depth and widths (layer map, projections), its labels and task kind."""
    distil = family.name == "distilbert"
    types = int(config.type_vocab_size) if reads_segment_ids(family.name, config.to_dict()) else 1
    names = getattr(config, "id2label", None) or {}
    d = {
        "vocab_size": config.vocab_size,
        "hidden_size": config_hidden(config),
        "num_hidden_layers": config.n_layers if distil else config.num_hidden_layers,
        "num_attention_heads": config.n_heads if distil else config.num_attention_heads,
        "intermediate_size": config.hidden_dim if distil else config.intermediate_size,
        "max_position_embeddings": usable_positions(config, family),
        "type_vocab_size": types,
        "pad_token_id": config.pad_token_id,
        # what a BERT student copies: the blocks' activation and LayerNorm epsilon, where the
        # blocks are BERT's (RoBERTa's epsilon is 1e-5, BERT's 1e-12)
        "hidden_act": _activation(config, family),
        "layer_norm_eps": getattr(config, "layer_norm_eps", None) if family.bert_shaped else None,
        "id2label": {str(k): v for k, v in names.items()},
        "num_labels": getattr(config, "num_labels", 2),
        "problem_type": getattr(config, "problem_type", None),
    }
    return BertConfig.from_dict({k: v for k, v in d.items() if v is not None})


def _activation(config: Any, family: Family) -> str | None:
    """The FFN activation a BERT student can copy (None: BERT's gelu): DistilBERT names it
    `activation`; ModernBERT's gated GELU and DeBERTa's blocks have no BERT equivalent."""
    if not family.bert_shaped:
        return None
    act = getattr(config, "activation", None) if family.name == "distilbert" else config.hidden_act
    return act if act in ACTIVATIONS else None


def _bert_names(
    state: dict[str, Tensor], family: Family, config: BertConfig, head: str
) -> dict[str, Tensor]:
    """Rename a bert-shaped family's state dict to tinybert BERT names (see bert_state_dict)."""
    out: dict[str, Tensor] = {}
    for key, tensor in state.items():
        name = _bert_name(key, family, head)
        if name is None:
            continue
        if name == "bert.embeddings.position_embeddings.weight":
            start = tensor.size(0) - config.max_position_embeddings  # RoBERTa: pad_token_id + 1
            tensor = tensor[start:]
        out[name] = tensor
    if family.name == "distilbert":  # no segment embeddings: a zero row adds nothing, exactly
        word = out["bert.embeddings.word_embeddings.weight"]
        out["bert.embeddings.token_type_embeddings.weight"] = word.new_zeros(1, word.size(1))
    return out


_DISTIL = {
    "attention.q_lin.": "attention.self.query.",
    "attention.k_lin.": "attention.self.key.",
    "attention.v_lin.": "attention.self.value.",
    "attention.out_lin.": "attention.output.dense.",
    "sa_layer_norm.": "attention.output.LayerNorm.",
    "ffn.lin1.": "intermediate.dense.",
    "ffn.lin2.": "output.dense.",
    "output_layer_norm.": "output.LayerNorm.",
}


def _bert_name(key: str, family: Family, head: str) -> str | None:
    """One key's tinybert name, or None for a tensor with no BERT counterpart."""
    prefix = {
        "roberta": "roberta.",
        "xlm-roberta": "roberta.",
        "electra": "electra.",
        "distilbert": "distilbert.",
    }[family.name]
    if key.startswith("embeddings.") or key.startswith(("encoder.", "transformer.")):
        key = prefix + key  # a bare encoder's keys
    if key.startswith(prefix):
        rest = key[len(prefix) :]
        if family.name == "distilbert" and rest.startswith("transformer.layer."):
            layer, _, tail = rest[len("transformer.layer.") :].partition(".")
            for old, new in _DISTIL.items():
                if tail.startswith(old):
                    return f"bert.encoder.layer.{layer}.{new}{tail[len(old) :]}"
            return None
        if rest.startswith("embeddings.position_ids") or rest.startswith(
            "embeddings.token_type_ids"
        ):
            return None
        return "bert." + rest
    if family.name in ("roberta", "xlm-roberta") and head == "sequence":
        if key.startswith("classifier.dense."):
            return "bert.pooler.dense." + key.rsplit(".", 1)[1]
        if key.startswith("classifier.out_proj."):
            return "classifier." + key.rsplit(".", 1)[1]
        return None
    if head == "token" and key.startswith("classifier."):
        return key
    return None


# ---------------------------------------------------------------------------------------------
# loading and saving


def load_any_model(
    model_dir: str | Path,
    head: Head = "sequence",
    num_labels: int | None = None,
    id2label: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[AnyBertModel | BertForMaskedLM | HFModel, LoadReport]:
    """A model of any supported family from a Hugging Face directory, in eval mode, on the CPU,
    in `dtype`. BERT loads through tinybert.model.load_model exactly as before; the others
    through transformers. num_labels / id2label shape a head the checkpoint lacks and must agree
    with one it has (as load_model)."""
    family = model_family(model_dir)
    if family.name == "bert":
        return load_model(model_dir, head, num_labels, id2label, dtype)
    transformers = _transformers(family)

    _register_attention()
    auto = getattr(transformers, _AUTO[head])
    impl = "eager" if family.attention == "probabilities" else ATTENTION_NAME
    hf, info = _from_pretrained(auto, Path(model_dir), impl, {})
    initialised = list(info["missing_keys"])
    if head in ("sequence", "token"):
        hf = _fit_head(auto, Path(model_dir), impl, hf, initialised, num_labels, id2label)
    base = getattr(hf, "base_model_prefix", "")
    broken = [k for k in initialised if k.startswith(base + ".") or head in ("encoder", "mlm")]
    if broken:
        raise UserError(
            f"{model_dir}: the weights do not fit config.json: missing from the checkpoint "
            f"({len(broken)}): {', '.join(sorted(broken)[:8])}; use the config.json saved with "
            "these weights" + ("" if head != "mlm" else " (head 'mlm' needs an MLM head)")
        )
    hf.to(dtype).eval()
    report = LoadReport(initialised=sorted(initialised), ignored=sorted(info["unexpected_keys"]))
    return HFModel(hf, family, head), report


def _transformers(family: Family) -> Any:
    try:
        import transformers
    except ImportError:
        raise UserError(
            f"a {family.label} model runs through transformers, which is not installed: "
            "pip install 'tinybert[teachers]' (or transformers==5.24.0)"
        ) from None
    return transformers


def _from_pretrained(auto: Any, path: Path, impl: str, kwargs: dict) -> tuple[Any, dict]:
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity(40)  # logging.ERROR: the load report is ours
    try:
        return auto.from_pretrained(
            path, attn_implementation=impl, output_loading_info=True, **kwargs
        )
    except (OSError, ValueError, RuntimeError) as e:
        reason = " ".join(str(e).split())[:400]
        raise UserError(f"{path}: cannot load the model ({type(e).__name__}: {reason})") from None
    finally:
        transformers.logging.set_verbosity(verbosity)


def _fit_head(
    auto: Any,
    path: Path,
    impl: str,
    hf: Any,
    initialised: list[str],
    num_labels: int | None,
    id2label: Sequence[str] | None,
) -> Any:
    """The head the task asks for: the checkpoint's if it has one (labels must agree), else a
    fresh one shaped by num_labels / id2label (the model is loaded again with them)."""
    base = getattr(hf, "base_model_prefix", "")
    fresh = any(not k.startswith(base + ".") for k in initialised)
    have = int(hf.config.num_labels)
    names = None if id2label is None else [str(n) for n in id2label]
    n = num_labels or (len(names) if names is not None else have)
    if not fresh:
        if n != have:
            raise UserError(
                f"{path} has a trained {have}-label head but {n} labels were asked for; use a "
                "model fine-tuned on this task, or an encoder checkpoint without a classifier"
            )
        return hf
    if n == have and names is None:
        return hf
    labels = names or [f"LABEL_{i}" for i in range(n)]
    kwargs = {
        "num_labels": n,
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
    }
    if n == 1:
        kwargs["problem_type"] = "regression"
    hf, info = _from_pretrained(auto, path, impl, kwargs)
    initialised[:] = list(info["missing_keys"])
    return hf


def save_any_model(
    model: nn.Module, out_dir: str | Path, tokenizer_dir: str | Path | None = None
) -> None:
    """Write a model of any family as a Hugging Face directory (with tokenizer files from
    `tokenizer_dir`): tinybert BERT models through save_model, the others in their own format."""
    model = getattr(model, "_orig_mod", model)
    if not isinstance(model, HFModel):
        save_model(model, out_dir, tokenizer_dir)
        return
    model.save(out_dir)
    if tokenizer_dir is not None:
        copy_tokenizer_files(Path(tokenizer_dir), Path(out_dir))


def copy_tokenizer_files(src: Path, out: Path) -> None:
    """Copy every tokenizer file of `src` (hub.TOKENIZER_FILES: tokenizer.json, vocab.txt, BPE
    and SentencePiece files, their configs) into `out`, unchanged: a fine-tuned teacher keeps
    its family's own tokenizer."""
    for name in TOKENIZER_FILES:
        path = src / name
        if path.is_file() and path.resolve() != (out / name).resolve():
            shutil.copyfile(path, out / name)
