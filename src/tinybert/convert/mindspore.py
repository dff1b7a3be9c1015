"""Convert the seed's MindSpore TinyBERT checkpoints into Hugging Face BERT directories.

The seed (mindspore-ai/models research/nlp/tinybert/src/tinybert_model.py) builds every model
from one encoder, BertModel (cells `bert_*`) or TinyBertModel (cells `tinybert_*`, the general-
distillation student), and saves it with the prefix of the cell that held it:

    GD student     save_checkpoint(netwithloss.bert)   bert.tinybert_*, bert.dense (pooler)
    TD / teacher   BertModelCLS or BertModelNER        bert.bert.bert_*, bert.bert.dense,
                                                        bert.dense_1
    BERT-base      BertPreTraining (pre-training)      bert.bert.bert_*, bert.cls1.*, bert.cls2.*
    standalone     a cell built on its own             tinybert_* / bert.bert_*, dense_1 ...

Names (seed -> ours), with E the encoder cells' prefix (e.g. "bert.bert.bert_"), E' the same
without its "bert_"/"tinybert_" (the pooler's cell), P the parent cell's prefix ("bert.") and i a
layer; ours are Hugging Face's, with "bert." in front of the encoder's in a task model:

    E embedding_lookup.embedding_table -> embeddings.word_embeddings.weight
    E embedding_postprocessor.full_position_embedding.embedding_table
        -> embeddings.position_embeddings.weight
    E embedding_postprocessor.token_type_embedding.embedding_table
        -> embeddings.token_type_embeddings.weight
    E embedding_postprocessor.layernorm.gamma / beta -> embeddings.LayerNorm.weight / bias
    E encoder.layers.i.attention.attention.{query,key,value}_layer.weight / bias
        -> encoder.layer.i.attention.self.{query,key,value}.weight / bias
    E encoder.layers.i.attention.output.dense.* -> encoder.layer.i.attention.output.dense.*
    E encoder.layers.i.attention.output.layernorm.gamma / beta
        -> encoder.layer.i.attention.output.LayerNorm.weight / bias
    E encoder.layers.i.intermediate.weight / bias -> encoder.layer.i.intermediate.dense.*
    E encoder.layers.i.output.dense.* -> encoder.layer.i.output.dense.*
    E encoder.layers.i.output.layernorm.gamma / beta -> encoder.layer.i.output.LayerNorm.*
    E' dense.weight / bias -> pooler.dense.weight / bias
    P dense_1.weight / bias -> classifier.weight / bias
    P cls1.dense.*, cls1.layernorm.gamma / beta -> cls.predictions.transform.{dense,LayerNorm}.*
    P cls1.output_bias -> cls.predictions.bias
    P cls2.dense.* -> cls.seq_relationship.*

MindSpore's nn.Dense stores its weight (out, in), like torch.nn.Linear; Q, K and V are separate
Dense cells and the heads are contiguous slices of their outputs, as in Hugging Face's BERT: every
tensor is copied as it is. The seed's numerics, as written into config.json: GELU is the tanh
approximation (nn.Dense(activation="gelu") is nn.GELU(approximate=True)): "gelu_new"; LayerNorm
epsilon is MindSpore's default 1e-7; both task heads apply a ReLU before dense_1 (a cell named
"dropout" that is nn.ReLU()): "classifier_activation": "relu", and have no dropout. The attention
mask adds -10000 to padded keys (ours adds the dtype's minimum): the same outputs wherever a
sequence has one real token.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

from tinybert.convert.ms_checkpoint import MsTensor, read_entries
from tinybert.data.tokenization import load_tokenizer
from tinybert.errors import UserError
from tinybert.model.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)
from tinybert.model.hub import load_model
from tinybert.paths import build_dir, check_new_output_dir, follow_umask

HeadKind = Literal["encoder", "sequence", "token", "pretraining"]
ARCHITECTURES: dict[str, str] = {
    "encoder": "BertModel",
    "sequence": "BertForSequenceClassification",
    "token": "BertForTokenClassification",
    "pretraining": "BertForPreTraining",
}
LAYER_NORM_EPS = 1e-7  # mindspore.nn.LayerNorm's default; the seed never sets it
ACTIVATIONS = {"gelu": "gelu_new", "relu": "relu"}  # seed hidden_act -> ours (tanh GELU)
HEADS_PER_RULE = 12  # every seed config (and BERT-base, TinyBERT-4L-312) has 12 heads

_EMBEDDINGS = {
    "embedding_lookup.embedding_table": "embeddings.word_embeddings.weight",
    "embedding_postprocessor.full_position_embedding.embedding_table": (
        "embeddings.position_embeddings.weight"
    ),
    "embedding_postprocessor.token_type_embedding.embedding_table": (
        "embeddings.token_type_embeddings.weight"
    ),
    "embedding_postprocessor.layernorm.gamma": "embeddings.LayerNorm.weight",
    "embedding_postprocessor.layernorm.beta": "embeddings.LayerNorm.bias",
}
_LAYER = {
    **{
        f"attention.attention.{n}_layer.{p}": f"attention.self.{n}.{p}"
        for n in ("query", "key", "value")
        for p in ("weight", "bias")
    },
    **{
        f"{c}.dense.{p}": f"{c}.dense.{p}"
        for c in ("attention.output", "output")
        for p in ("weight", "bias")
    },
    "attention.output.layernorm.gamma": "attention.output.LayerNorm.weight",
    "attention.output.layernorm.beta": "attention.output.LayerNorm.bias",
    "intermediate.weight": "intermediate.dense.weight",
    "intermediate.bias": "intermediate.dense.bias",
    "output.layernorm.gamma": "output.LayerNorm.weight",
    "output.layernorm.beta": "output.LayerNorm.bias",
}
_POOLER = {"dense.weight": "pooler.dense.weight", "dense.bias": "pooler.dense.bias"}
_CLASSIFIER = {"dense_1.weight": "classifier.weight", "dense_1.bias": "classifier.bias"}
_PRETRAINING = {
    "cls1.dense.weight": "cls.predictions.transform.dense.weight",
    "cls1.dense.bias": "cls.predictions.transform.dense.bias",
    "cls1.layernorm.gamma": "cls.predictions.transform.LayerNorm.weight",
    "cls1.layernorm.beta": "cls.predictions.transform.LayerNorm.bias",
    "cls1.output_bias": "cls.predictions.bias",
    "cls2.dense.weight": "cls.seq_relationship.weight",
    "cls2.dense.bias": "cls.seq_relationship.bias",
}
_ENCODER = re.compile(
    r"^((?:\w+\.)*?)(bert|tinybert)_(?:embedding_lookup|embedding_postprocessor|encoder)\."
)
# Optimizer slots (MindSpore's optimizers clone the parameters under these prefixes) and state.
_OPTIMIZER = re.compile(
    r"^(?:adam_[mv]|lamb_[mv]|moments?[12]?|vhat|accum\w*|accu_grads|grad_accum\w*|linear"
    r"|mean_square|mean_grad|exp_avg\w*)\.|(?:^|\.)accum"
)
# Counters, schedules and loss-scale state, matched on the name's last part.
_TRAINING_STATE = frozenset(
    ("global_step", "learning_rate", "beta1_power", "beta2_power", "scale_sense", "loss_scale")
    + ("overflow", "accu_overflow", "current_iterator_step", "last_overflow_iterator_step")
    + ("epoch_num", "step_num", "cur_step_num", "cur_epoch_num")
)
_NET_KEYS = {  # seed *_net_cfg key -> (our config field, the tensor it is read from)
    "vocab_size": ("vocab_size", "embedding_lookup.embedding_table rows"),
    "hidden_size": ("hidden_size", "embedding_lookup.embedding_table columns"),
    "num_hidden_layers": ("num_hidden_layers", "encoder.layers.N count"),
    "intermediate_size": ("intermediate_size", "layers.0.intermediate.weight rows"),
    "max_position_embeddings": ("max_position_embeddings", "full_position_embedding rows"),
    "type_vocab_size": ("type_vocab_size", "token_type_embedding rows"),
}


@dataclass
class ConvertResult:
    """What convert_checkpoint wrote and why."""

    head: HeadKind  # encoder (GD student, bare BERT), sequence, token (NER), pretraining
    architecture: str  # config.json "architectures"[0]
    config: BertConfig  # the model's shape and numerics
    prefix: str  # the converted network's cell prefix in the checkpoint, e.g. "bert.bert."
    tensors_used: int  # checkpoint entries copied into model.safetensors (each exactly once)
    skipped: dict[str, int]  # entries left out, counted by kind
    output: Path
    lines: list[str] = field(default_factory=list)  # what happened, for people

    def summary(self) -> list[str]:
        """What was read, inferred, kept, skipped and written: one line each, for the CLI."""
        return list(self.lines)


@dataclass(frozen=True)
class _Network:
    """One encoder found in the checkpoint: cells E = prefix + family + "_"."""

    prefix: str  # e.g. "bert.bert."
    family: str  # "bert" (BertModel) or "tinybert" (TinyBertModel)
    layers: int

    @property
    def cells(self) -> str:
        return f"{self.prefix}{self.family}_"

    @property
    def parent(self) -> str | None:
        """The prefix of the cell holding this encoder (where dense_1 / cls1 live), if any."""
        if not self.prefix:
            return None
        return self.prefix[: self.prefix.rstrip(".").rfind(".") + 1]

    def names(self) -> dict[str, tuple[str, str]]:
        """Every name this network may have -> (our name, group)."""
        out = {self.cells + k: (v, "encoder") for k, v in _EMBEDDINGS.items()}
        for i in range(self.layers):
            for k, v in _LAYER.items():
                out[f"{self.cells}encoder.layers.{i}.{k}"] = (f"encoder.layer.{i}.{v}", "encoder")
        out |= {self.prefix + k: (v, "pooler") for k, v in _POOLER.items()}
        if self.parent is not None:
            out |= {self.parent + k: (v, "classifier") for k, v in _CLASSIFIER.items()}
            out |= {self.parent + k: (v, "pretraining") for k, v in _PRETRAINING.items()}
        return out

    def describe(self) -> str:
        cls = (
            "TinyBertModel (general-distillation student)"
            if self.family == "tinybert"
            else "BertModel"
        )
        return f"{cls} under '{self.prefix}'" if self.prefix else cls


@dataclass
class _Plan:
    """Every checkpoint entry sorted: model tensors by our name, the rest by skip kind."""

    network: _Network
    tensors: dict[str, np.ndarray]  # our name (encoder-relative or head) -> array
    sources: dict[str, str]  # our name -> checkpoint tag
    groups: set[str]
    skipped: dict[str, list[str]]
    ms_types: dict[str, str]  # our name -> the checkpoint's tensor_type


def convert_checkpoint(
    ckpt: str | Path,
    output: str | Path,
    vocab: str | Path,
    labels: Sequence[str] | None = None,
    seed_config: str | Path | None = None,
    *,
    head: Literal["sequence", "token"] | None = None,
    prefix: str | None = None,
    num_attention_heads: int | None = None,
    do_lower_case: bool | None = None,
    classifier_activation: Literal["relu"] | None = "relu",
) -> ConvertResult:
    """Convert a seed MindSpore checkpoint into a Hugging Face BERT directory at `output`.

    ckpt: the .ckpt; vocab: the vocab.txt the model was trained with (copied); labels: class names
    in index order for a dense_1 head; seed_config: the seed's YAML (gd_config.yaml,
    td_config_*.yaml), checked against the tensors and the source of num_attention_heads, hidden
    act and, for dense_1, the task type. head: "sequence" or "token" for a dense_1 head without a
    seed config (default "sequence"); prefix: which network to take from a checkpoint that holds
    several (default: the one not under "teacher."); num_attention_heads: heads are not stored in
    checkpoints (default: the seed config's, else 12 when it divides the hidden size);
    do_lower_case: default from the vocabulary (lowercase unless it has upper-case tokens).
    classifier_activation: "relu", as the seed's BertModelCLS/BertModelNER apply before dense_1;
    None for a dense_1 head trained outside the seed (the model zoo's BERT fine-tuning has none).

    `output` must not exist or be empty; it appears complete or not at all.
    """
    ckpt, vocab_path, out = Path(ckpt), Path(vocab), Path(output)
    check_new_output_dir(out, "output")  # before the (possibly long) reading
    entries = read_entries(ckpt)
    plan = _plan(entries, ckpt, prefix)
    del entries  # optimizer state and the like: not needed any more
    seed = _read_seed_config(Path(seed_config)) if seed_config is not None else None
    kind = _head_kind(plan, head, seed, ckpt)
    if kind == "token":  # BertForTokenClassification has no pooler (HF drops it too)
        for name in [n for n in plan.tensors if n.startswith("pooler.")]:
            plan.skipped.setdefault("pooler (a token head has none)", []).append(plan.sources[name])
            del plan.tensors[name]
    shape = _shape(plan, ckpt)
    notes: list[str] = []
    if seed is not None:
        notes += _check_seed_config(seed, shape)
    heads, heads_from = _num_heads(shape["hidden_size"], num_attention_heads, seed, ckpt)
    if heads_from == "assumed":
        notes.append(
            f"num_attention_heads {heads} is ASSUMED: checkpoints do not store it (rule: 12 when "
            "it divides the hidden size, as in every seed config, else hidden/64); give the "
            "seed config to be sure"
        )
    tokens = _read_vocab(vocab_path, shape["vocab_size"])
    act = classifier_activation if kind in ("sequence", "token") else None
    config = _config(shape, heads, kind, labels, seed, tokens, ckpt, act)
    state = _state(plan, kind, config, ckpt)
    lower, lower_note = _lowercase(tokens, do_lower_case)
    build_dir(out, lambda tmp: _write(tmp, state, config, kind, vocab_path, lower), "output")
    skipped = {k: len(v) for k, v in plan.skipped.items()}
    result = ConvertResult(
        kind, ARCHITECTURES[kind], config, plan.network.prefix, len(state), skipped, out
    )
    result.lines = _summary(result, plan, ckpt, heads_from, lower_note, tokens, notes)
    return result


# ---------------------------------------------------------------------------------------------
# sorting the checkpoint's entries


def _plan(entries: dict[str, MsTensor], ckpt: Path, prefix: str | None) -> _Plan:
    skipped: dict[str, list[str]] = {}
    rest = {}
    for tag, t in entries.items():
        kind = _non_model_kind(tag, t)
        if kind is None:
            rest[tag] = t
        else:
            skipped.setdefault(kind, []).append(tag)
    networks = _find_networks(rest, ckpt)
    chosen = _choose(networks, prefix, ckpt)
    own = chosen.names()
    others = {n: o.prefix for o in networks if o != chosen for n in o.names()}
    tensors, sources, groups, unknown = {}, {}, set(), []
    for tag, t in rest.items():
        if tag in own:
            name, group = own[tag]
            tensors[name], sources[name] = _float_tensor(t, ckpt), tag
            groups.add(group)
        elif tag in others:
            skipped.setdefault(f"another network ('{others[tag]}')", []).append(tag)
        elif re.search(r"(^|\.)fit_dense\.", tag):
            skipped.setdefault("distillation projection (fit_dense)", []).append(tag)
        elif t.array.size <= 1 and not tag.startswith(chosen.cells):
            skipped.setdefault("training state", []).append(tag)
        else:
            unknown.append(tag)
    if unknown:
        raise UserError(_unknown_message(unknown, chosen, ckpt))
    ms_types = {name: entries[tag].ms_type for name, tag in sources.items()}
    plan = _Plan(chosen, tensors, sources, groups, skipped, ms_types)
    _check_complete(plan, own, ckpt)
    return plan


def _non_model_kind(tag: str, t: MsTensor) -> str | None:
    """Why an entry is not a model tensor whatever the network, or None."""
    if t.ms_type in ("str", "random_op"):
        return "metadata"
    if _OPTIMIZER.search(tag):
        return "optimizer state"
    if tag.rsplit(".", 1)[-1] in _TRAINING_STATE:
        return "training state"
    return None


def _find_networks(entries: dict[str, MsTensor], ckpt: Path) -> list[_Network]:
    """The encoders in the checkpoint: each (prefix, family) with its layer count."""
    found: dict[tuple[str, str], int] = {}
    for tag in entries:
        match = _ENCODER.match(tag)
        if match:
            key = (match.group(1), match.group(2))
            cells = f"{key[0]}{key[1]}_encoder.layers."
            layer = re.match(r"(\d+)\.", tag[len(cells) :]) if tag.startswith(cells) else None
            found[key] = max(found.get(key, 0), int(layer.group(1)) + 1 if layer else 0)
    if not found:
        sample = ", ".join(list(entries)[:3]) or "(nothing but optimizer/training state)"
        raise UserError(
            f"{ckpt}: no BERT/TinyBERT encoder found (no '*bert_embedding_lookup.*' entry; "
            f"first entries: {sample}); expected a checkpoint of the seed's TinyBERT networks"
        )
    return [_Network(p, f, n) for (p, f), n in found.items()]


def _choose(networks: list[_Network], prefix: str | None, ckpt: Path) -> _Network:
    """The network to convert: the one asked for, the only one, or the one not a teacher."""
    listed = ", ".join(f"'{n.prefix}' ({n.family}_*)" for n in networks)
    if prefix is not None:
        want = prefix if prefix.endswith(".") or not prefix else prefix + "."
        hits = [n for n in networks if n.prefix == want]
        if len(hits) != 1:
            raise UserError(f"{ckpt}: no single network under prefix '{want}'; it holds {listed}")
        return hits[0]
    if len(networks) == 1:
        return networks[0]
    students = [n for n in networks if not n.prefix.startswith("teacher")]
    if len(students) == 1:
        return students[0]
    raise UserError(
        f"{ckpt}: holds several networks ({listed}); choose one with --prefix "
        f"(e.g. '{networks[0].prefix}')"
    )


def _float_tensor(t: MsTensor, ckpt: Path) -> np.ndarray:
    if t.array.dtype.kind != "f":
        raise UserError(
            f"{ckpt}: '{t.tag}' is {t.ms_type}, not a floating-point weight; the file is not a "
            "seed model checkpoint or is corrupt"
        )
    return t.array.astype(np.float32, copy=False)  # fp16/bf16 widen exactly


def _check_complete(plan: _Plan, own: dict[str, tuple[str, str]], ckpt: Path) -> None:
    """Encoder and pooler complete; a head group is complete or absent (never partial)."""
    required = {"encoder", "pooler"} | (plan.groups - {"encoder", "pooler"})
    missing = [t for t, (name, g) in own.items() if g in required and name not in plan.tensors]
    if plan.network.layers == 0:
        raise UserError(
            f"{ckpt}: {plan.network.describe()} has no encoder layers "
            f"('{plan.network.cells}encoder.layers.0.*')"
        )
    if {"classifier", "pretraining"} <= plan.groups:
        raise UserError(
            f"{ckpt}: '{plan.network.parent}' has both a dense_1 classifier and the cls1/cls2 "
            "pre-training heads; a seed network has one or the other"
        )
    if missing:
        shown = ", ".join(missing[:6]) + (
            f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        )
        raise UserError(
            f"{ckpt}: {len(missing)} tensors of the {plan.network.layers}-layer "
            f"{plan.network.describe()} are missing: {shown}; a checkpoint saved by the seed has "
            "all of them (was it filtered, or cut short?)"
        )


def _unknown_message(unknown: list[str], net: _Network, ckpt: Path) -> str:
    shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    if any("relative_positions" in t for t in unknown):
        return (
            f"{ckpt}: the model uses relative positions ({shown}); use_relative_positions=True "
            "models cannot be converted (our BERT has absolute positions only)"
        )
    heads = "" if net.parent is None else f", {net.parent}dense_1.* or {net.parent}cls1/cls2.*"
    return (
        f"{ckpt}: {len(unknown)} entries are not parameters of the seed's networks: {shown}; "
        f"expected {net.cells}* (embeddings, layers 0-{net.layers - 1}), {net.prefix}dense.* "
        f"(pooler){heads}, besides optimizer and training state"
    )


# ---------------------------------------------------------------------------------------------
# shape, head and the seed's config


def _head_kind(plan: _Plan, head: str | None, seed: dict[str, Any] | None, ckpt: Path) -> HeadKind:
    if head not in (None, "sequence", "token"):
        raise UserError(f"unknown head '{head}'; use 'sequence' or 'token'")
    if "pretraining" in plan.groups:
        if head is not None:
            raise UserError(
                f"{ckpt}: --head {head}: the checkpoint has pre-training heads (cls1/cls2), "
                "not dense_1"
            )
        return "pretraining"
    if "classifier" not in plan.groups:
        if head is not None:
            raise UserError(
                f"{ckpt}: --head {head}: the checkpoint has no dense_1 classifier; convert it "
                "without --head (an encoder) and let task distillation add the head"
            )
        return "encoder"
    task = (seed or {}).get("task_type")
    from_seed = {"classification": "sequence", "ner": "token"}.get(str(task)) if task else None
    if head is not None and from_seed is not None and head != from_seed:
        raise UserError(
            f"--head {head} contradicts the seed config's task_type '{task}' ({from_seed}); "
            "drop one"
        )
    return head or from_seed or "sequence"  # type: ignore[return-value]


def _shape(plan: _Plan, ckpt: Path) -> dict[str, int]:
    t = plan.tensors
    words = t["embeddings.word_embeddings.weight"]
    if words.ndim != 2:
        raise UserError(f"{ckpt}: '{plan.sources['embeddings.word_embeddings.weight']}' is not 2-D")
    shape = {
        "vocab_size": words.shape[0],
        "hidden_size": words.shape[1],
        "num_hidden_layers": plan.network.layers,
        "intermediate_size": t["encoder.layer.0.intermediate.dense.weight"].shape[0],
        "max_position_embeddings": t["embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": t["embeddings.token_type_embeddings.weight"].shape[0],
    }
    if "classifier.weight" in t:
        shape["num_labels"] = t["classifier.weight"].shape[0]
    return {k: int(v) for k, v in shape.items()}


def _read_seed_config(path: Path) -> dict[str, Any]:
    """The seed YAML's first document (the second and third are its help text and choices)."""
    if not path.is_file():
        raise UserError(f"{path}: seed config not found")
    try:
        doc = next(yaml.safe_load_all(path.read_text(encoding="utf-8")), None)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable YAML file ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise UserError(
            f"{path}: expected the seed's YAML mapping (gd_config.yaml, td_config_*.yaml)"
        )
    sections = {
        str(k): v for k, v in doc.items() if str(k).endswith("_net_cfg") and isinstance(v, dict)
    }
    if not sections and "hidden_size" in doc:
        sections = {"(top level)": doc}
    if not sections:
        raise UserError(
            f"{path}: no *_net_cfg section (bert_student_net_cfg, td_student_net_cfg, ...); "
            "give the seed's gd_config.yaml or td_config_*.yaml"
        )
    return {
        "path": path,
        "sections": sections,
        **{k: doc.get(k) for k in ("task_type", "task_name", "num_labels")},
    }


def _check_seed_config(seed: dict[str, Any], shape: dict[str, int]) -> list[str]:
    """Pick the *_net_cfg section that describes these tensors; any disagreement is an error."""
    path, sections = seed["path"], seed["sections"]

    def mismatches(cfg: dict) -> list[str]:
        return [k for k in _NET_KEYS if k in cfg and _as_int(cfg[k]) != shape[_NET_KEYS[k][0]]]

    name = min(sections, key=lambda s: (len(mismatches(sections[s])), "student" not in s))
    cfg, bad = sections[name], mismatches(sections[name])
    if bad:
        what = "; ".join(
            f"{name}.{k} is {cfg[k]} but the checkpoint has {shape[_NET_KEYS[k][0]]} "
            f"({_NET_KEYS[k][1]})"
            for k in bad
        )
        raise UserError(f"{path}: {what}; give the config this checkpoint was trained with")
    if cfg.get("use_relative_positions") in (True, "True", "true"):
        raise UserError(
            f"{path}: {name}.use_relative_positions is True; such models cannot be converted"
        )
    act = str(cfg.get("hidden_act", "gelu"))
    if act not in ACTIVATIONS:
        raise UserError(
            f"{path}: {name}.hidden_act '{act}' is not supported; the seed's models use 'gelu'"
        )
    labels = seed.get("num_labels")
    if labels is not None and "num_labels" in shape and _as_int(labels) != shape["num_labels"]:
        raise UserError(
            f"{path}: num_labels is {labels} but the checkpoint's dense_1 has "
            f"{shape['num_labels']} rows; give the config of this task"
        )
    seed["section"] = cfg
    notes = [f"seed config {path.name}: section {name} agrees with the tensors"]
    seq = _as_int(cfg.get("seq_length"))
    if seq is not None and seq > shape["max_position_embeddings"]:
        raise UserError(
            f"{path}: {name}.seq_length {seq} exceeds the {shape['max_position_embeddings']} "
            "position embeddings of the checkpoint"
        )
    if seq is not None:
        notes.append(
            f"the seed ran it at seq_length {seq} (ours takes any length up to "
            f"{shape['max_position_embeddings']})"
        )
    return notes


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _num_heads(
    hidden: int, given: int | None, seed: dict[str, Any] | None, ckpt: Path
) -> tuple[int, str]:
    """Heads are not stored in checkpoints: the argument, the seed config, else a rule.
    Returns (heads, where the number came from)."""
    raw = (seed or {}).get("section", {}).get("num_attention_heads")
    from_seed = None if raw is None else _as_int(raw)
    if raw is not None and from_seed is None:
        raise UserError(f"{seed and seed['path']}: num_attention_heads '{raw}' is not a number")
    if given is not None and from_seed is not None and from_seed != given:
        raise UserError(
            f"num_attention_heads {given} contradicts the seed config's {from_seed}; drop one"
        )
    if given is not None or from_seed is not None:
        heads = given if given is not None else from_seed
        source = "given" if given is not None else "from the seed config"
        assert heads is not None
        if heads < 1 or hidden % heads:
            raise UserError(
                f"num_attention_heads {heads} ({source}) does not divide hidden size {hidden}"
            )
        return heads, source
    for heads in (HEADS_PER_RULE, hidden // 64 if hidden % 64 == 0 else 0):
        if heads and hidden % heads == 0:
            return heads, "assumed"
    raise UserError(
        f"{ckpt}: hidden size {hidden} is divisible by neither 12 nor 64, so the number of "
        "attention heads cannot be guessed; pass the seed config (--seed-config) or the head count"
    )


def _config(
    shape: dict[str, int],
    heads: int,
    kind: HeadKind,
    labels: Sequence[str] | None,
    seed: dict[str, Any] | None,
    tokens: list[str],
    ckpt: Path,
    head_activation: str | None,
) -> BertConfig:
    section = (seed or {}).get("section", {})
    act = ACTIVATIONS[str(section.get("hidden_act", "gelu"))]
    n = shape.get("num_labels", 2)
    names = None if labels is None else tuple(labels)
    if names is not None and kind not in ("sequence", "token"):
        raise UserError(f"{ckpt}: labels were given but the checkpoint has no classifier (dense_1)")
    if names is not None and len(names) != n:
        raise UserError(
            f"{ckpt}: {len(names)} labels given ({', '.join(names)}) but dense_1 has {n} rows"
        )
    problem = None
    if kind == "sequence":
        problem = "regression" if n == 1 else "single_label_classification"
    return BertConfig(
        vocab_size=shape["vocab_size"],
        hidden_size=shape["hidden_size"],
        num_hidden_layers=shape["num_hidden_layers"],
        intermediate_size=shape["intermediate_size"],
        max_position_embeddings=shape["max_position_embeddings"],
        type_vocab_size=shape["type_vocab_size"],
        num_attention_heads=heads,
        hidden_act=act,
        layer_norm_eps=LAYER_NORM_EPS,
        pad_token_id=tokens.index("[PAD]"),
        initializer_range=float(section.get("initializer_range", 0.02)),
        num_labels=n,
        id2label=names,
        problem_type=problem,
        hidden_dropout_prob=float(section.get("hidden_dropout_prob", 0.1)),
        attention_probs_dropout_prob=float(section.get("attention_probs_dropout_prob", 0.1)),
        classifier_dropout=0.0 if kind in ("sequence", "token") else None,
        classifier_activation=head_activation,  # the seed's: none
    )


# ---------------------------------------------------------------------------------------------
# the state dict and the directory


def _state(plan: _Plan, kind: HeadKind, config: BertConfig, ckpt: Path) -> dict[str, torch.Tensor]:
    """Our state dict (HF names), checked name by name and shape by shape against our model."""
    body = "" if kind == "encoder" else "bert."  # a task model's encoder is its `.bert`

    def ours(name: str) -> str:
        return name if name.startswith(("classifier.", "cls.")) else body + name

    state = {ours(n): torch.from_numpy(a) for n, a in plan.tensors.items()}
    source = {ours(n): plan.sources[n] for n in plan.tensors}
    expected = _expected_shapes(kind, config)
    wrong = [
        f"{source[k]} is {tuple(v.shape)}, expected {expected[k]}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    if wrong:
        raise UserError(
            f"{ckpt}: tensors disagree with the model the embeddings describe "
            f"(hidden {config.hidden_size}, intermediate {config.intermediate_size}): "
            + "; ".join(wrong[:4])
        )
    extra = sorted(set(state) - set(expected))
    absent = sorted(set(expected) - set(state))
    if extra or absent:  # the name tables and our model disagree: a bug here, not in the file
        raise RuntimeError(f"name map out of date: unexpected {extra}, missing {absent}")
    return {k: v.contiguous() for k, v in state.items()}


def _expected_shapes(kind: HeadKind, config: BertConfig) -> dict[str, tuple[int, ...]]:
    """Our model's tensor names and shapes for `kind`, built on the meta device (no memory)."""
    with torch.device("meta"):
        if kind == "pretraining":
            mlm = BertForMaskedLM(config).state_dict()
            shapes = {
                k: tuple(v.shape) for k, v in mlm.items() if k not in BertForMaskedLM.TIED_WEIGHTS
            }
            pooler = BertModel(config).pooler
            assert pooler is not None
            shapes |= {f"bert.pooler.{k}": tuple(v.shape) for k, v in pooler.state_dict().items()}
            hidden = config.hidden_size
            return shapes | {
                "cls.seq_relationship.weight": (2, hidden),
                "cls.seq_relationship.bias": (2,),
            }
        model_class = {
            "encoder": BertModel,
            "sequence": BertForSequenceClassification,
            "token": BertForTokenClassification,
        }[kind]
        return {k: tuple(v.shape) for k, v in model_class(config).state_dict().items()}


def _read_vocab(path: Path, rows: int) -> list[str]:
    """vocab.txt's tokens, one a line (as BERT's loaders count them); checked against `rows`."""
    if not path.is_file():
        raise UserError(f"{path}: vocabulary file not found")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if lines and lines[-1] == "":
        lines.pop()
    tokens = [line.rstrip("\r") for line in lines]
    if len(tokens) > rows:
        raise UserError(
            f"{path}: {len(tokens)} tokens but the checkpoint's word embeddings have {rows} rows; "
            "give the vocabulary the model was trained with"
        )
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in tokens]
    if missing:
        raise UserError(f"{path}: not a BERT WordPiece vocabulary: missing {', '.join(missing)}")
    return tokens


def _lowercase(tokens: list[str], given: bool | None) -> tuple[bool, str]:
    if given is not None:
        return given, f"do_lower_case {given} (given)"
    cased = [t for t in tokens if not (t.startswith("[") and t.endswith("]")) and t != t.lower()]
    if cased:
        return False, f"do_lower_case false: the vocabulary has cased tokens (e.g. '{cased[0]}')"
    return True, "do_lower_case true: the vocabulary has no upper-case tokens"


def _write(
    tmp: Path,
    state: dict[str, torch.Tensor],
    config: BertConfig,
    kind: HeadKind,
    vocab: Path,
    lower: bool,
) -> None:
    save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
    follow_umask(tmp / "model.safetensors")
    cfg = config.to_dict(architecture=ARCHITECTURES[kind])
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(vocab, tmp / "vocab.txt")
    tok_cfg = {
        "do_lower_case": lower,
        "model_max_length": config.max_position_embeddings,
        "tokenizer_class": "BertTokenizer",
    }
    (tmp / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    load_tokenizer(tmp)  # the directory must load as every tinybert command loads it
    load_model(tmp, head={"pretraining": "mlm"}.get(kind, kind))  # type: ignore[call-overload]


def _summary(
    r: ConvertResult,
    plan: _Plan,
    ckpt: Path,
    heads_from: str,
    lower_note: str,
    tokens: list[str],
    notes: list[str],
) -> list[str]:
    c = r.config
    counts = Counter(plan.ms_types[name] for name in plan.tensors)
    dtypes = ", ".join(f"{n} {t}" for t, n in counts.items())
    lines = [
        f"read {ckpt}: {plan.network.describe()}, {r.tensors_used} tensors ({dtypes})",
        f"shape: {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
        f"{c.num_attention_heads} attention heads ({heads_from}), "
        f"intermediate {c.intermediate_size}, vocabulary {c.vocab_size}, "
        f"{c.max_position_embeddings} positions, {c.type_vocab_size} token types",
        f"head: {r.head} -> {r.architecture}" + _labels_note(r),
        f"numerics kept: GELU tanh approximation (hidden_act {c.hidden_act}), LayerNorm eps "
        f"{c.layer_norm_eps:g}" + _head_note(r),
        f"vocabulary: {len(tokens)} tokens for {c.vocab_size} embedding rows"
        + ("" if len(tokens) == c.vocab_size else f" (rows {len(tokens)}+ are never used)")
        + f"; {lower_note}",
        *notes,
    ]
    for kind, tags in sorted(plan.skipped.items()):
        shown = ", ".join(tags[:4]) + (", ..." if len(tags) > 4 else "")
        lines.append(f"skipped {len(tags)} {kind}: {shown}")
    lines.append(f"wrote {r.output}")
    return lines


def _head_note(r: ConvertResult) -> str:
    if r.head not in ("sequence", "token"):
        return ""
    if r.config.classifier_activation is None:
        return "; no activation before the classifier (as asked: not the seed's ReLU)"
    note = f", {r.config.classifier_activation} before the classifier as in the seed's heads"
    if r.head == "token":  # BertModelNER.construct(ids, mask, types), called (ids, types, mask)
        note += (
            "; NOTE the seed trained and evaluated its NER models with input_mask and "
            "token_type_ids swapped (BertModelNER's argument order): given the same swapped "
            "inputs this model reproduces them, given correct inputs it computes what the "
            "seed's code meant"
        )
    return note


def _labels_note(r: ConvertResult) -> str:
    if r.head not in ("sequence", "token"):
        return ""
    names = r.config.id2label
    if names is None:
        return f", {r.config.num_labels} unnamed labels (pass the task's labels to name them)"
    return f", labels {', '.join(names)}"
