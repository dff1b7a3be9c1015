"""Read and write Hugging Face BERT model directories (config.json + weights + tokenizer files).

Loading is strict: every tensor of the model must be in the checkpoint with the right shape, and
every tensor of the checkpoint must be used, except for three documented allowances:
  - a task head (classifier, pooler) absent because the checkpoint is a bare or differently
    headed encoder is freshly initialised, and the LoadReport says so;
  - pre-training heads ("cls.*"; head "mlm" loads the MLM one, "cls.predictions.*"), the
    position/token-type id buffers, a pooler the token and MLM heads do not use and a classifier
    the bare encoder and MLM head do not use are skipped, and reported;
  - tied aliases (the MLM decoder's weight and bias) may be absent; present, they must agree.
Anything else fails with one UserError that lists every problem at once.

A saved model carries its tokenizer (save_model's tokenizer_dir): the files are copied, and
tokenizer_config.json is adjusted where transformers' AutoTokenizer would otherwise feed the
model other inputs than tinybert does (see serving_tokenizer_config).
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, overload

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from tinybert.errors import UserError
from tinybert.model.bert import (
    AnyBertModel,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    BertTaskModel,
)
from tinybert.paths import follow_umask

CONFIG_FILE = "config.json"
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    # a teacher's byte-level BPE / SentencePiece files (RoBERTa, XLM-R, DeBERTa): tinybert reads
    # tokenizer.json, but they travel with it so the directory stays complete
    "vocab.json",
    "merges.txt",
    "spm.model",
    "sentencepiece.bpe.model",
    "added_tokens.json",
)
TOKENIZER_CONFIG = "tokenizer_config.json"
# transformers' tokenizer classes that build exactly tinybert's WordPiece tokenizer (BertNormalizer,
# BertPreTokenizer, WordPiece, from the same config flags). Any other class is replaced in a
# saved model by the generic one, which runs tokenizer.json as it is, as tinybert does:
# transformers 5's family classes rebuild parts of it with their own defaults (XLM-R's and
# DeBERTa-v2's split double spaces, tabs and special-token text differently; XLM-R's puts
# <unk> at id 3), and a student must get the inputs tinybert gave it.
WORDPIECE_CLASSES = frozenset(
    f"{name}Tokenizer{fast}" for name in ("Bert", "DistilBert", "Electra") for fast in ("", "Fast")
)
GENERIC_TOKENIZER = "PreTrainedTokenizerFast"
_WITH_TYPES = ["input_ids", "token_type_ids", "attention_mask"]  # transformers' BERT default
HEADS: dict[str, type[AnyBertModel | BertForMaskedLM]] = {
    "sequence": BertForSequenceClassification,
    "token": BertForTokenClassification,
    "encoder": BertModel,
    "mlm": BertForMaskedLM,
}
# Checkpoint entries that are never model weights: the NSP pre-training head, id buffers; and
# the MLM pre-training head (_MLM) unless the MLM head is asked for.
_SKIP = re.compile(r"^cls\.seq_relationship\.|embeddings\.(position_ids|token_type_ids)$")
_POOLER, _CLASSIFIER, _MLM = "bert.pooler.", "classifier.", "cls.predictions."


@dataclass
class LoadReport:
    """What load_model did besides copying tensors (names as in the model / the checkpoint)."""

    initialised: list[str] = field(default_factory=list)  # model tensors not in the checkpoint
    ignored: list[str] = field(default_factory=list)  # checkpoint tensors the model does not use


def saved_head(model_dir: str | Path) -> Literal["sequence", "token"]:
    """The head a saved model was trained with, from config.json's "architectures": "token"
    for BertForTokenClassification (NER), else "sequence". The one place that decides it."""
    load_model_config(model_dir)  # a clear error for a missing or broken config.json
    return head_of(read_config_json(model_dir))


def head_of(config: dict[str, Any]) -> Literal["sequence", "token"]:
    """A config.json's task head by its "architectures": "token" for a
    ...ForTokenClassification (BERT's, RoBERTa's, ...), else "sequence"."""
    names = config.get("architectures") or []
    token = any(str(n).endswith("ForTokenClassification") for n in names)
    return "token" if token else "sequence"


def read_config_json(model_dir: str | Path, what: str = "an HF BERT") -> dict[str, Any]:
    """`model_dir`/config.json as a dict; one clear error for a missing folder or file, bad JSON
    or text that is not UTF-8. `what`: the kind of config the message asks for."""
    path = Path(model_dir) / CONFIG_FILE
    if not Path(model_dir).is_dir():
        raise UserError(f"model directory not found: {model_dir}")
    if not path.is_file():
        raise UserError(f"{path}: not found; a model directory needs {what} config.json")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError:  # e.g. saved as UTF-16 by an editor
        raise UserError(f"{path}: not UTF-8 text; save it as UTF-8 (JSON files are)") from None
    if not isinstance(d, dict):
        raise UserError(f"{path}: expected a JSON object of config keys")
    return d


def load_model_config(model_dir: str | Path) -> BertConfig:
    """Read `model_dir`/config.json (an HF BERT config)."""
    path = Path(model_dir) / CONFIG_FILE
    d = read_config_json(model_dir)
    if d.get("model_type", "bert") != "bert":
        raise UserError(
            f"{path}: model_type is '{d['model_type']}'; this needs a BERT (a tinybert student "
            "or a BERT teacher): teachers of other types are read by finetune, general-distill, "
            "task-distill, augment, evaluate and benchmark, and export/predict serve their "
            "students"
        )
    try:
        return BertConfig.from_dict(d)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    except (TypeError, ValueError) as e:  # e.g. an id2label key that is not a number
        raise UserError(f"{path}: bad value ({e})") from None


@overload
def load_model(
    model_dir: str | Path,
    head: Literal["sequence", "token"] = "sequence",
    num_labels: int | None = None,
    id2label: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[BertTaskModel, LoadReport]: ...
@overload
def load_model(
    model_dir: str | Path,
    head: Literal["encoder"],
    num_labels: int | None = None,
    id2label: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[BertModel, LoadReport]: ...
@overload
def load_model(
    model_dir: str | Path,
    head: Literal["mlm"],
    num_labels: int | None = None,
    id2label: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[BertForMaskedLM, LoadReport]: ...
def load_model(
    model_dir: str | Path,
    head: Literal["sequence", "token", "encoder", "mlm"] = "sequence",
    num_labels: int | None = None,
    id2label: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[AnyBertModel | BertForMaskedLM, LoadReport]:
    """Build the model `head` asks for from `model_dir` and load its weights.

    num_labels / id2label shape a head the checkpoint lacks; given for a checkpoint that has a
    head, they must agree with it (a fine-tuned head cannot silently change meaning). They do
    not apply to "encoder" and "mlm" (no labels). "mlm" needs a checkpoint with the MLM head.
    The model is returned in eval mode (dropout off), on the CPU, in `dtype`.
    """
    if head not in HEADS:
        raise UserError(f"unknown model head '{head}'; use one of {sorted(HEADS)}")
    config = load_model_config(model_dir)
    weights_path, raw = _read_weights(Path(model_dir))
    ckpt, ignored = _canonical(raw, keep_mlm=head == "mlm")
    has_head = any(k.startswith(_CLASSIFIER) for k in ckpt)
    if head in ("sequence", "token"):
        config = _head_config(config, head, has_head, num_labels, id2label, Path(model_dir))
    model = HEADS[head](config)

    # Compare in one naming: the head models' ("bert." prefix); the bare encoder has none.
    # Tied aliases are compared with the tensor they alias, then left out.
    prefix = "bert." if head == "encoder" else ""
    tied = BertForMaskedLM.TIED_WEIGHTS if head == "mlm" else {}
    untied = _untie(ckpt, tied)
    own = {prefix + k: v for k, v in model.state_dict().items() if k not in tied}
    if head == "mlm" and not any(k.startswith(_MLM) for k in ckpt):
        raise UserError(_no_mlm_message(weights_path, [k for k in own if k.startswith(_MLM)]))
    absent = [g for g in (_POOLER, _CLASSIFIER) if not any(k.startswith(g) for k in ckpt)]
    initialised = [k for k in own if k not in ckpt and k.startswith(tuple(absent))]
    missing = [k for k in own if k not in ckpt and k not in initialised]
    unused = [k for k in ckpt if k not in own]
    # A pooler the token head drops, a classifier the bare encoder drops: fine, but reported.
    ignored += [k for k in unused if k.startswith((_POOLER, _CLASSIFIER))]
    unexpected = [k for k in unused if not k.startswith((_POOLER, _CLASSIFIER))]
    wrong = [
        f"{k}: model {tuple(v.shape)}, checkpoint {tuple(ckpt[k].shape)}"
        for k, v in own.items()
        if k in ckpt and ckpt[k].shape != v.shape
    ]
    if missing or unexpected or wrong or untied:
        raise UserError(_mismatch_message(weights_path, missing, unexpected, wrong, untied))

    state = {k[len(prefix) :]: ckpt.get(k, v) for k, v in own.items()}
    state |= {alias: state[target] for alias, target in tied.items()}  # same tensor, twice
    model.load_state_dict(state, strict=True)
    model.to(dtype).eval()  # like HF from_pretrained; training code calls .train()
    return model, LoadReport(
        initialised=[k[len(prefix) :] for k in initialised], ignored=sorted(ignored)
    )


def save_model(
    model: nn.Module, out_dir: str | Path, tokenizer_dir: str | Path | None = None
) -> None:
    """Write `model` as an HF directory: config.json, model.safetensors, tokenizer files.

    transformers' AutoModelFor{SequenceClassification,TokenClassification,MaskedLM} / AutoModel
    load the result with no missing or unexpected keys. Writes plain files into `out_dir`
    (created if needed); making the directory appear atomically is the caller's job.
    """
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    if not isinstance(
        model,
        (BertModel, BertForSequenceClassification, BertForTokenClassification, BertForMaskedLM),
    ):
        raise TypeError(f"save_model expects a tinybert BERT model, got {type(model).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # contiguous CPU copies: safetensors refuses views and wants host memory; and it refuses
    # shared tensors, so tied aliases are left out (as save_pretrained does; loaders re-tie)
    tied = BertForMaskedLM.TIED_WEIGHTS if isinstance(model, BertForMaskedLM) else {}
    state = {
        k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in tied
    }
    save_file(state, out / WEIGHTS_FILES[0], metadata={"format": "pt"})
    follow_umask(out / WEIGHTS_FILES[0])  # save_file leaves 0o600
    config = model.config.to_dict(architecture=type(model).__name__)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if tokenizer_dir is not None:
        _copy_tokenizer(Path(tokenizer_dir), out, model.config)


# ---------------------------------------------------------------------------------------------
# helpers


def _read_weights(model_dir: Path) -> tuple[Path, dict[str, Tensor]]:
    """The checkpoint's tensors by name, from a single file or an HF shard index."""
    for name in WEIGHTS_FILES:
        path, index = model_dir / name, model_dir / f"{name}.index.json"
        if path.is_file():
            return path, _read_file(path)
        if index.is_file():
            state: dict[str, Tensor] = {}
            for shard in _shard_names(index, Path(name).suffix):
                state.update(_read_file(model_dir / shard))
            return index, state
    raise UserError(
        f"{model_dir}: no weights file found (looked for {', '.join(WEIGHTS_FILES)}); "
        "point to a directory saved by tinybert or transformers' save_pretrained"
    )


def _shard_names(index: Path, suffix: str) -> list[str]:
    """The shard files an HF shard index names. Each must be a file name ending in `suffix`
    beside the index: an index is never a way to read a file elsewhere, nor to read a
    pickle-based .bin in place of the safetensors its name promises."""
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (ValueError, KeyError, AttributeError, TypeError) as e:  # ValueError: bad JSON/UTF-8
        raise UserError(f"{index}: not a valid shard index ({e})") from None
    for shard in shards:
        if not isinstance(shard, str) or Path(shard).name != shard or not shard.endswith(suffix):
            raise UserError(
                f"{index}: shard {shard!r} is not a {suffix} file name in the same folder; "
                "an index may only name shard files beside it"
            )
    return shards


def _read_file(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise UserError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        # weights_only: a .bin is a pickle; never run code from it
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own message advises turning weights_only off
        raise UserError(
            f"{path}: cannot read weights: the file holds pickled Python objects besides "
            "tensors, which could run code, so it was not loaded; use a model.safetensors "
            "copy of the model (or a .bin that holds only tensors)"
        ) from None
    except Exception as e:  # corrupt/truncated files raise many different types
        reason = " ".join(str(e).split())  # one line
        raise UserError(f"{path}: cannot read weights ({type(e).__name__}: {reason})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    return state


def _canonical(raw: dict[str, Tensor], keep_mlm: bool) -> tuple[dict[str, Tensor], list[str]]:
    """Rename checkpoint keys to head-model names ("bert.encoder..."), drop non-weights (and every
    pre-training head, "cls.*", unless keep_mlm: then only the NSP one).

    Handles bare-encoder keys ("encoder..." -> "bert.encoder...") and TF-era LayerNorm names
    (gamma/beta -> weight/bias). Returns (tensors by canonical name, skipped original keys).
    """
    out, skipped = {}, []
    for key, tensor in raw.items():
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
        if name.startswith(("embeddings.", "encoder.", "pooler.")):
            name = "bert." + name
        if _SKIP.search(name) or (name.startswith("cls.") and not keep_mlm):
            skipped.append(key)
        else:
            out[name] = tensor
    return out, skipped


def _untie(ckpt: dict[str, Tensor], tied: dict[str, str]) -> list[str]:
    """Fold tied aliases (alias -> target) in `ckpt` into their target, in place: an alias stands
    in for an absent target, else must equal it. Returns one line per disagreeing alias."""
    untied = []
    for alias, target in tied.items():
        if alias not in ckpt:
            continue
        tensor = ckpt.pop(alias)
        if target not in ckpt:
            ckpt[target] = tensor
        elif not torch.equal(tensor, ckpt[target]):
            untied.append(f"{alias} differs from {target}")
    return untied


def _head_config(
    config: BertConfig,
    head: str,
    has_head: bool,
    num_labels: int | None,
    id2label: Sequence[str] | None,
    model_dir: Path,
) -> BertConfig:
    """The config for the task head: the checkpoint's if it has one, else the one asked for."""
    names = None if id2label is None else tuple(id2label)
    if has_head:
        if num_labels is not None and num_labels != config.num_labels:
            raise UserError(
                f"{model_dir} has a trained {config.num_labels}-label head but {num_labels} "
                "labels were asked for; use a model fine-tuned on this task, or an encoder "
                "checkpoint without a classifier"
            )
        if names is not None and config.id2label not in (None, names):
            raise UserError(
                f"{model_dir} was trained for labels {list(config.id2label)} but "
                f"{list(names)} were asked for (order matters)"
            )
        if names is not None and len(names) != config.num_labels:
            raise UserError(
                f"{model_dir} has a {config.num_labels}-label head but {len(names)} label names "
                f"were given: {list(names)}"
            )
        return replace(config, id2label=names or config.id2label)
    n = num_labels or (len(names) if names is not None else config.num_labels)
    if names is None and n == config.num_labels:
        names = config.id2label
    problem = None
    if head == "sequence":
        problem = "regression" if n == 1 else "single_label_classification"
    return replace(config, num_labels=n, id2label=names, problem_type=problem)


def _mismatch_message(
    path: Path, missing: list, unexpected: list, wrong: list, untied: list | None = None
) -> str:
    """One line naming every mismatch by kind, then the fix."""
    kinds = [
        (missing, "missing from the checkpoint"),
        (unexpected, "not used by the model"),
        (wrong, "wrong shape"),
        (untied or [], "tied tensors that differ (the model ties them)"),
    ]
    found = "; ".join(
        f"{what} ({len(items)}): {', '.join(items)}" for items, what in kinds if items
    )
    return (
        f"{path}: the weights do not fit the model described by config.json: {found}. Use the "
        "config.json saved with these weights (layers, sizes, vocabulary, labels)"
    )


def _no_mlm_message(path: Path, missing: list[str]) -> str:
    return (
        f"{path}: no masked-LM head; missing from the checkpoint ({len(missing)}): "
        f"{', '.join(missing)}; "
        "head 'mlm' needs a model with an MLM head, e.g. a Hugging Face BertForMaskedLM or "
        "BertForPreTraining directory such as bert-base-uncased (a fine-tuned classifier or a "
        "bare encoder has none)."
    )


def _copy_tokenizer(src: Path, out: Path, config: BertConfig) -> None:
    """Copy `src`'s tokenizer files into `out`; rewrite tokenizer_config.json only where
    serving_tokenizer_config says the copy would not serve a model of `config` as tinybert
    does (a BERT student of a BERT teacher keeps its files byte for byte)."""
    present = [src / n for n in TOKENIZER_FILES if (src / n).is_file()]
    if not present:
        raise UserError(
            f"{src}: no tokenizer files to copy (looked for {', '.join(TOKENIZER_FILES)})"
        )
    # read before copying: `src` may be `out` itself
    tok_config = _json_or_none(src / TOKENIZER_CONFIG) if (src / TOKENIZER_CONFIG).is_file() else {}
    tok_json = src / "tokenizer.json"
    fixed = None
    if tok_config is not None:  # unreadable: copied as it is (loading it reports the problem)
        fixed = serving_tokenizer_config(
            tok_config, config, tok_json if tok_json.is_file() else None
        )
    for path in present:
        if path.resolve() != (out / path.name).resolve():
            shutil.copyfile(path, out / path.name)
    if fixed is not None:
        text = json.dumps(fixed, indent=2, ensure_ascii=False) + "\n"
        (out / TOKENIZER_CONFIG).write_text(text, encoding="utf-8")


def serving_tokenizer_config(
    tok_config: dict, config: BertConfig, tokenizer_json: Path | None
) -> dict | None:
    """The tokenizer_config.json a model of `config` needs so that transformers' AutoTokenizer
    gives it exactly the inputs tinybert's tokenizer gives it; None when `tok_config` (the
    teacher's, {} if it has none) already does. `tokenizer_json`: the tokenizer.json beside it.

    - A model without segment ids (type_vocab_size 1) gets no token_type_ids input
      (model_input_names without it); a model with them keeps it.
    - A tokenizer.json that BERT's WordPiece classes would not rebuild exactly (a BPE or Unigram
      one, or any other class) is read by the generic class, as tinybert reads it, and without
      add_bos_token/add_eos_token (for which transformers replaces its template).
    - Padding and truncation on the right (the model has absolute positions; tinybert pads and
      truncates there), to at most max_position_embeddings tokens.
    """
    new = dict(tok_config)
    names = new.get("model_input_names")
    if config.type_vocab_size <= 1:
        if not isinstance(names, list) or "token_type_ids" in names:
            kept = names if isinstance(names, list) else _WITH_TYPES
            new["model_input_names"] = [n for n in kept if n != "token_type_ids"]
    elif isinstance(names, list) and "token_type_ids" not in names:
        new["model_input_names"] = [*names[:1], "token_type_ids", *names[1:]]
    if tokenizer_json is not None and not _wordpiece_class(
        new.get("tokenizer_class"), tokenizer_json
    ):
        new["tokenizer_class"] = GENERIC_TOKENIZER
        for key in ("add_bos_token", "add_eos_token"):
            new.pop(key, None)
    length = new.get("model_max_length")
    if isinstance(length, (int, float)) and length > config.max_position_embeddings:
        new["model_max_length"] = config.max_position_embeddings
    sides = ("padding_side", "truncation_side")
    if new == tok_config and all(new.get(k, "right") == "right" for k in sides):
        return None
    return new | dict.fromkeys(sides, "right")


def _wordpiece_class(cls: object, tokenizer_json: Path) -> bool:
    """Whether AutoTokenizer reads `tokenizer_json` with a BERT WordPiece class: the one named,
    or, when none is named, the one config.json's model_type "bert" implies (then the file must
    hold a WordPiece model)."""
    if cls is not None:
        return cls in WORDPIECE_CLASSES
    model = (_json_or_none(tokenizer_json) or {}).get("model")
    if not isinstance(model, dict):
        return True  # unreadable: left as it is (the tokenizer loader reports it)
    # files of tokenizers < 0.10 have no "type": a WordPiece model is told by its keys
    kind = model.get("type") or ("WordPiece" if "continuing_subword_prefix" in model else None)
    return kind == "WordPiece" and "merges" not in model


def _json_or_none(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: bad JSON or not UTF-8
        return None
    return data if isinstance(data, dict) else None
