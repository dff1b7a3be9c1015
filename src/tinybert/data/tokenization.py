"""The model directory's own tokenizer (WordPiece, byte-level BPE, SentencePiece-style Unigram)
and the encoded dataset.

    tok = load_tokenizer("models/bert-base-uncased-sst2")
    tok.specials.cls, tok.specials.pad_id   # "[CLS]", 0 (RoBERTa: "<s>", its <pad> id)
    train = encode_examples(tok, examples, task, max_seq_length=128)
    train[0]  # {"input_ids": [101, ..., 102], "token_type_ids": [0, ...], "label": 1, "index": 0}

The tokenizer is tokenizer.json when the directory has one, else (WordPiece only) vocab.txt with
tokenizer_config.json. Its special tokens are named by tokenizer_config.json /
special_tokens_map.json (cls_token, sep_token, pad_token, unk_token, mask_token; BERT's names by
default) and its inputs follow its own template (tokenizer.json's post_processor: BERT
"[CLS] A [SEP] B [SEP]", RoBERTa "<s> A </s></s> B </s>"). When the directory's config.json
says the model reads no segment ids (RoBERTa, XLM-R, DistilBERT, ModernBERT, type_vocab_size <= 1)
every type id is 0.

Sequences are stored unpadded (each as long as it needs, up to max_seq_length); `collate` pads
each batch to its own longest sequence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from torch.utils.data import Dataset

from tinybert.data.base import Example, TaskSpec
from tinybert.errors import UserError
from tinybert.families import FAMILIES, reads_segment_ids

_CHUNK = 8192  # examples per encode_batch call: bounds the memory held by Encoding objects
# Special-token kinds as tokenizer_config.json names them, with BERT's tokens as defaults.
_KINDS = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "unk": "[UNK]", "mask": "[MASK]"}
_REQUIRED = ("pad", "unk", "cls", "sep")  # every encoded input needs these (mask: augment only)
_WORDPIECE_FAMILIES = frozenset(f.name for f in FAMILIES.values() if f.wordpiece)
# Files of tokenizers that only transformers can read (vocab.json+merges.txt, SentencePiece).
_SLOW_FILES = ("vocab.json", "merges.txt", "spm.model", "sentencepiece.bpe.model")


# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class Template:
    """The special-token ids the tokenizer's post_processor puts around one text (single) or
    two (pair): BERT single ([CLS],), ([SEP],); pair ([CLS],), ([SEP],), ([SEP],); RoBERTa pair
    (<s>,), (</s>, </s>), (</s>,)."""

    single: tuple[tuple[int, ...], tuple[int, ...]]  # before A, after A
    pair: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # before A, between, after B

    @property
    def pair_specials(self) -> int:
        """Special tokens a pair gets (BERT 3, RoBERTa 4)."""
        return sum(map(len, self.pair))

    def wrap(self, a: Sequence[int], b: Sequence[int] | None = None) -> list[int]:
        """The ids of "A" or "A B" with the template's special tokens."""
        if b is None:
            return [*self.single[0], *a, *self.single[1]]
        return [*self.pair[0], *a, *self.pair[1], *b, *self.pair[2]]

    def to_json(self) -> dict[str, list[list[int]]]:
        return {"single": [list(x) for x in self.single], "pair": [list(x) for x in self.pair]}


@dataclass(frozen=True)
class Specials:
    """A tokenizer's special tokens (names and ids), its template, and whether its model reads
    segment ids (token_types False: every type id is 0). unk_id/mask_id are None when the
    vocabulary lacks the named token (only augmentation needs a mask)."""

    cls: str
    sep: str
    pad: str
    unk: str
    mask: str
    cls_id: int
    sep_id: int
    pad_id: int
    unk_id: int | None
    mask_id: int | None
    token_types: bool
    template: Template
    source: str  # the tokenizer file, for messages

    def names(self) -> dict[str, str]:
        return {"cls": self.cls, "sep": self.sep, "pad": self.pad, "unk": self.unk,
                "mask": self.mask}  # fmt: skip


class ModelTokenizer:
    """A `tokenizers.Tokenizer` (which cannot be subclassed) with its directory's `specials`:
    every attribute and method not defined here is the wrapped tokenizer's, so it encodes,
    saves and configures exactly as a Tokenizer does."""

    __slots__ = ("specials", "tokenizer")

    def __init__(self, tokenizer: Tokenizer, specials: Specials):
        object.__setattr__(self, "tokenizer", tokenizer)
        object.__setattr__(self, "specials", specials)

    def __getattr__(self, name: str) -> Any:
        if name in ModelTokenizer.__slots__:  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.tokenizer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ModelTokenizer.__slots__:
            object.__setattr__(self, name, value)
        else:  # tok.post_processor = ..., as on a Tokenizer
            setattr(self.tokenizer, name, value)

    def __getstate__(self) -> tuple[Tokenizer, Specials]:
        return self.tokenizer, self.specials

    def __setstate__(self, state: tuple[Tokenizer, Specials]) -> None:
        object.__setattr__(self, "tokenizer", state[0])
        object.__setattr__(self, "specials", state[1])


AnyTokenizer = Tokenizer | ModelTokenizer


def load_tokenizer(model_dir: str | Path) -> ModelTokenizer:
    """The tokenizer of a model directory: tokenizer.json if present, else vocab.txt (WordPiece).

    Inputs follow the tokenizer's template ("[CLS] A [SEP] B [SEP]" for BERT, type ids 0 then
    1; all type ids 0 where config.json says the model has none). Padding and truncation
    configured in tokenizer.json are turned off: encode_examples truncates, collate pads per
    batch. A missing special token, or a non-BERT directory without tokenizer.json, is a
    UserError naming the file.
    """
    model_dir = Path(model_dir)
    model_type, token_types = _model_types(model_dir)
    names, origin = _special_names(model_dir)
    if (model_dir / "tokenizer.json").is_file():
        path = model_dir / "tokenizer.json"
        tok = _from_tokenizer_json(path, names, origin, token_types)
    elif (model_dir / "vocab.txt").is_file() and model_type in (None, *_WORDPIECE_FAMILIES):
        path = model_dir / "vocab.txt"
        tok = _from_vocab(model_dir, names, origin, token_types)
    else:
        raise UserError(_no_tokenizer(model_dir, model_type))
    tok.no_padding()
    tok.no_truncation()
    return ModelTokenizer(tok, _specials(tok, names, origin, path, token_types))


def specials_of(tok: AnyTokenizer) -> Specials:
    """`tok.specials`; for a plain Tokenizer (built by hand), BERT's tokens looked up in it."""
    if isinstance(tok, ModelTokenizer):
        return tok.specials
    return _specials(tok, dict(_KINDS), {}, Path("the tokenizer"), token_types=True)


def tokenizer_info(tok: AnyTokenizer) -> tuple[int, int]:
    """(ids the tokenizer can produce: highest id + 1, added tokens included; id of its pad).

    The id range, not the entry count: a vocab.txt with a repeated line keeps the line numbers
    as ids, so it has fewer entries than ids, and the embedding table needs a row per id."""
    if isinstance(tok, ModelTokenizer):
        pad_id = tok.specials.pad_id
    else:
        found = tok.token_to_id("[PAD]")
        if found is None:  # a hand-built Tokenizer may lack it
            raise UserError("the tokenizer has no [PAD] token; BERT needs one")
        pad_id = found
    return max(tok.get_vocab(with_added_tokens=True).values()) + 1, pad_id


def model_token_types(model_dir: str | Path) -> bool:
    """Whether the model in `model_dir` reads segment ids (see the module docstring); True
    without config.json (a tokenizer-only directory keeps BERT's 0/1)."""
    return _model_types(Path(model_dir))[1]


def table_may_be_padded(model_dir: str | Path) -> bool:
    """Whether the model's embedding table may have more rows than its tokenizer has tokens:
    the released RoBERTa, XLM-R, DeBERTa-v3 and ModernBERT checkpoints pad theirs (ModernBERT
    50,368 rows for 50,280 tokens, DeBERTa-v3 128,100 for 128,001). A WordPiece model's table
    (BERT, ELECTRA, DistilBERT) matches its vocab.txt: fewer tokens there mean a wrong or
    truncated vocabulary (task.allow_smaller_vocab accepts it)."""
    model_type = _model_types(Path(model_dir))[0]
    return model_type in FAMILIES and model_type not in _WORDPIECE_FAMILIES


def _model_types(model_dir: Path) -> tuple[str | None, bool]:
    """(config.json's model_type or None, whether the model reads segment ids)."""
    path = model_dir / "config.json"
    if not path.is_file():
        return None, True
    cfg = _json_object(path)
    model_type = cfg.get("model_type")
    model_type = model_type if isinstance(model_type, str) else None
    return model_type, reads_segment_ids(model_type, cfg)


def _no_tokenizer(model_dir: Path, model_type: str | None) -> str:
    slow = [name for name in _SLOW_FILES if (model_dir / name).is_file()]
    if slow or model_type not in (None, *_WORDPIECE_FAMILIES):
        what = f" ({', '.join(slow)})" if slow else ""
        return (
            f"{model_dir}: no tokenizer.json{what}; tinybert reads the {model_type or 'non-BERT'} "
            "tokenizer from tokenizer.json: write it with transformers, "
            f"`AutoTokenizer.from_pretrained('{model_dir}').save_pretrained('{model_dir}')`"
        )
    return (
        f"{model_dir}: no tokenizer found; expected tokenizer.json or vocab.txt "
        f"(with optional tokenizer_config.json) in the model directory"
    )


def _special_names(model_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(kind -> token name, kind -> the file that named it): tokenizer_config.json, then
    special_tokens_map.json (which wins, as in transformers), else BERT's names."""
    names, origin = dict(_KINDS), {}
    for file in ("tokenizer_config.json", "special_tokens_map.json"):
        path = model_dir / file
        if not path.is_file():
            continue
        cfg = _json_object(path)
        for kind in _KINDS:
            value = cfg.get(f"{kind}_token")
            if isinstance(value, dict):  # {"content": "<s>", "lstrip": false, ...}
                value = value.get("content")
            if isinstance(value, str) and value:
                names[kind], origin[kind] = value, file
    return names, origin


def _specials(
    tok: Tokenizer, names: dict[str, str], origin: dict[str, str], path: Path, token_types: bool
) -> Specials:
    _specials_present(tok, names, origin, path)
    ids = {kind: tok.token_to_id(name) for kind, name in names.items()}
    cls_id, sep_id, pad_id = ids["cls"], ids["sep"], ids["pad"]
    assert cls_id is not None and sep_id is not None and pad_id is not None  # checked above
    return Specials(
        cls=names["cls"], sep=names["sep"], pad=names["pad"], unk=names["unk"], mask=names["mask"],
        cls_id=cls_id, sep_id=sep_id, pad_id=pad_id, unk_id=ids["unk"], mask_id=ids["mask"],
        token_types=token_types, template=_template(tok, path, token_types), source=str(path),
    )  # fmt: skip


def _template(tok: Tokenizer, path: Path, token_types: bool) -> Template:
    """The special ids around one and two texts, read off the post_processor's output."""
    single, pair = tok.encode("a"), tok.encode("a", "b")
    if not token_types and any(pair.type_ids):
        raise UserError(f"{path}: its post_processor writes segment ids the model does not read")

    def parts(enc: Any, n: int) -> tuple[tuple[int, ...], ...]:
        out: list[list[int]] = [[]]
        seen = None
        for token_id, seq in zip(enc.ids, enc.sequence_ids, strict=True):
            if seq is None:
                out[-1].append(token_id)
            elif seq != seen:  # a new text starts: the specials so far went before it
                seen = seq
                out.append([])
        if len(out) != n:
            raise UserError(f"{path}: its post_processor does not keep one run per text")
        return tuple(tuple(x) for x in out)

    s, p = parts(single, 2), parts(pair, 3)
    return Template(single=(s[0], s[1]), pair=(p[0], p[1], p[2]))


def _from_tokenizer_json(
    path: Path, names: dict[str, str], origin: dict[str, str], token_types: bool
) -> Tokenizer:
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises plain Exceptions for bad JSON / schema
        raise UserError(f"{path}: not a readable tokenizers file ({e})") from None
    _specials_present(tok, names, origin, path)
    if tok.post_processor is None:  # some exports leave it out; the model needs [CLS]/[SEP]
        tok.post_processor = _bert_template(tok, names, token_types)
    elif not token_types:
        _without_type_ids(tok)
    return tok


def _specials_present(
    tok: Tokenizer, names: dict[str, str], origin: dict[str, str], path: Path
) -> None:
    """A tokenizer without a required special token is refused, naming the token, the config
    key and the file that named it."""
    missing = [k for k in _REQUIRED if tok.token_to_id(names[k]) is None]
    if missing:
        said = ", ".join(
            f"{names[k]} ({k}_token{' in ' + origin[k] if k in origin else ''})" for k in missing
        )
        raise UserError(f"{path}: its vocabulary has no {said}; the model needs it")


def _without_type_ids(tok: Tokenizer) -> None:
    """Give `tok` a post_processor that writes type id 0 everywhere (its JSON, rewritten)."""
    spec = _zero_types(json.loads(tok.post_processor.__getstate__()))
    processor = processors.ByteLevel()  # any processor: its state is replaced by `spec`
    processor.__setstate__(json.dumps(spec).encode())  # (the pickle protocol: one from JSON)
    tok.post_processor = processor


def _zero_types(pp: dict) -> dict:
    kind = pp.get("type")
    if kind == "Sequence":
        return {**pp, "processors": [_zero_types(p) for p in pp.get("processors", [])]}
    if kind == "TemplateProcessing":
        for piece in [*pp.get("single", []), *pp.get("pair", [])]:
            for value in piece.values():
                value["type_id"] = 0
        return pp
    if kind == "BertProcessing":  # "[CLS] A [SEP] B [SEP]" with type ids 1 on B: as a template
        (cls, cls_id), (sep, sep_id) = pp["cls"], pp["sep"]
        return json.loads(
            processors.TemplateProcessing(
                single=f"{cls} $A {sep}",
                pair=f"{cls} $A {sep} $B {sep}",
                special_tokens=[(cls, cls_id), (sep, sep_id)],
            ).__getstate__()
        )
    return pp  # RobertaProcessing, ByteLevel: type ids are 0 already


def _from_vocab(
    model_dir: Path, names: dict[str, str], origin: dict[str, str], token_types: bool
) -> Tokenizer:
    """WordPiece + BERT normaliser/pre-tokeniser, as configured in tokenizer_config.json."""
    cfg = _tokenizer_config(model_dir)
    vocab_path = model_dir / "vocab.txt"
    tok = Tokenizer(WordPiece.from_file(str(vocab_path), unk_token=names["unk"]))
    missing = [names[k] for k in _REQUIRED if tok.token_to_id(names[k]) is None]
    if missing:
        raise UserError(
            f"{vocab_path}: not a BERT WordPiece vocabulary: missing {', '.join(missing)}"
        )
    lowercase = bool(cfg.get("do_lower_case", True))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(cfg.get("tokenize_chinese_chars", True)),
        strip_accents=cfg.get("strip_accents"),  # None: strip exactly when lowercasing
        lowercase=lowercase,
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    # Special tokens in raw text stay single tokens (and are never lowercased), as in HF BERT.
    tok.add_special_tokens([t for t in names.values() if tok.token_to_id(t) is not None])
    tok.post_processor = _bert_template(tok, names, token_types)
    return tok


def _tokenizer_config(model_dir: Path) -> dict:
    path = model_dir / "tokenizer_config.json"
    return _json_object(path) if path.is_file() else {}


def _json_object(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
    return cfg


def _bert_template(
    tok: Tokenizer, names: dict[str, str], token_types: bool
) -> processors.TemplateProcessing:
    cls, sep = names["cls"], names["sep"]
    b = ":1" if token_types else ""
    return processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B{b} {sep}{b}",
        special_tokens=[(t, tok.token_to_id(t)) for t in (cls, sep)],
    )


# --------------------------------------------------------------------------- dataset


@dataclass
class TaskDataset(Dataset):
    """Encoded examples, unpadded, stored flat (compact even for MNLI's 393k pairs).

    Example i's tokens are ids[offsets[i]:offsets[i + 1]]; lengths[i] is their count.
    Item i -> {"input_ids": list[int], "token_type_ids": list[int], "label": int | float, "index": i}
    """

    ids: np.ndarray  # (total_tokens,) int32
    type_ids: np.ndarray  # (total_tokens,) int8
    offsets: np.ndarray  # (N + 1,) int64
    labels: list[int] | list[float]  # class index, or score for regression
    lengths: list[int]  # (N,) tokens per example, including [CLS]/[SEP]
    # Token tasks (NER) only: per token, the tag index (-100 on [CLS]/[SEP]: never scored) and
    # its character span [start, end) in the text; per example, the gold entities.
    tag_ids: np.ndarray | None = None  # (total_tokens,) int16
    char_spans: np.ndarray | None = None  # (total_tokens, 2) int32
    gold_spans: list[frozenset] | None = None  # (type, start, end inclusive) per entity

    def __len__(self) -> int:
        return len(self.lengths)

    def subset(self, keep: Sequence[int]) -> TaskDataset:
        """A new dataset of the examples `keep`, in that order."""
        parts = [slice(self.offsets[i], self.offsets[i + 1]) for i in keep]
        lengths = [self.lengths[i] for i in keep]
        offsets = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])

        def cat(a: np.ndarray) -> np.ndarray:
            return np.concatenate([a[p] for p in parts] or [a[:0]])

        def cat_optional(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else cat(a)

        return TaskDataset(
            ids=cat(self.ids),
            type_ids=cat(self.type_ids),
            offsets=offsets,
            labels=[self.labels[i] for i in keep],
            lengths=lengths,
            tag_ids=cat_optional(self.tag_ids),
            char_spans=cat_optional(self.char_spans),
            gold_spans=None if self.gold_spans is None else [self.gold_spans[i] for i in keep],
        )

    def __getitem__(self, i: int) -> dict:
        start, end = self.offsets[i], self.offsets[i + 1]
        item = {
            "input_ids": self.ids[start:end].tolist(),
            "token_type_ids": self.type_ids[start:end].tolist(),
            "label": self.labels[i],
            "index": i,
        }
        if self.tag_ids is not None:
            item["tag_ids"] = self.tag_ids[start:end].tolist()
        return item

    def token_char_spans(self, i: int) -> list[tuple[int, int]]:
        """Token tasks: example i's tokens' character spans [start, end) ((0, 0) = special)."""
        if self.char_spans is None:
            raise ValueError("token_char_spans: not a token-task dataset (no char_spans)")
        start, end = self.offsets[i], self.offsets[i + 1]
        return [tuple(span) for span in self.char_spans[start:end].tolist()]


def encode_examples(
    tokenizer: AnyTokenizer, examples: Sequence[Example], task: TaskSpec, max_seq_length: int
) -> TaskDataset:
    """Tokenise examples into BERT inputs of at most max_seq_length tokens (specials included).

    Pairs are truncated "longest_first": tokens come off the longer segment first.
    Labels become class indices in task.labels order (float scores for regression).
    """
    if task.kind == "token":
        return _encode_token_examples(tokenizer, examples, task, max_seq_length)
    labels = [_label_value(task, ex) for ex in examples]
    texts = [ex.text_a if ex.text_b is None else (ex.text_a, ex.text_b) for ex in examples]
    return _encode_dataset(tokenizer, texts, labels, max_seq_length)


def encode_texts(
    tokenizer: AnyTokenizer, texts: Sequence[str | tuple[str, str]], max_seq_length: int
) -> TaskDataset:
    """Tokenise unlabelled inputs (a sentence, or a (sentence, pair) tuple each) for prediction,
    truncated exactly as encode_examples does; every label is a placeholder 0."""
    return _encode_dataset(tokenizer, texts, [0] * len(texts), max_seq_length)


def _encode_dataset(
    tokenizer: AnyTokenizer, texts: Sequence, labels: list, max_seq_length: int
) -> TaskDataset:
    ids, type_ids, lengths = [np.zeros(0, np.int32)], [np.zeros(0, np.int8)], []
    for start in range(0, len(texts), _CHUNK):  # flatten chunk by chunk: few Python ints alive
        encodings = _encode(tokenizer, texts[start : start + _CHUNK], max_seq_length)
        ids.append(_flat([enc.ids for enc in encodings], np.int32))
        type_ids.append(_flat([enc.type_ids for enc in encodings], np.int8))
        lengths += [len(enc) for enc in encodings]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TaskDataset(np.concatenate(ids), np.concatenate(type_ids), offsets, labels, lengths)


def _encode_token_examples(
    tokenizer: AnyTokenizer, examples: Sequence[Example], task: TaskSpec, max_seq_length: int
) -> TaskDataset:
    """NER: tokens with their character spans and tags (from the examples' entity spans)."""
    from tinybert.data.clue import char_tags, token_tags

    tag_index = {t: i for i, t in enumerate(task.labels)}
    ids, type_ids, tag_ids, spans, lengths = [], [], [], [], []
    for start in range(0, len(examples), _CHUNK):
        chunk = examples[start : start + _CHUNK]
        encodings = _encode(tokenizer, [ex.text_a for ex in chunk], max_seq_length, offsets=True)
        for ex, enc in zip(chunk, encodings, strict=True):
            char_offsets = [
                _trim(ex.text_a, a, b) if m == 0 else (0, 0)
                for (a, b), m in zip(enc.offsets, enc.special_tokens_mask, strict=True)
            ]
            tags = token_tags(char_offsets, char_tags(len(ex.text_a), ex.spans or ()))
            ids.append(enc.ids)
            type_ids.append(enc.type_ids)
            tag_ids.append([-100 if t is None else tag_index[t] for t in tags])
            spans.append(char_offsets)
            lengths.append(len(enc))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TaskDataset(
        ids=_flat(ids, np.int32),
        type_ids=_flat(type_ids, np.int8),
        offsets=offsets,
        labels=[0] * len(examples),  # unused: the labels are per token
        lengths=lengths,
        tag_ids=_flat(tag_ids, np.int16),
        char_spans=np.array([s for row in spans for s in row], dtype=np.int32).reshape(-1, 2),
        gold_spans=[frozenset(ex.spans or ()) for ex in examples],
    )


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """A token's span without the whitespace a byte-level BPE token ("Ġword") may cover, so
    that it takes its first real character's tag; (0, 0) for a whitespace-only token."""
    while start < end and text[start].isspace():
        start += 1
    return (start, end) if start < end else (0, 0)


def _flat(rows: list[list[int]], dtype: type) -> np.ndarray:
    return np.fromiter(chain.from_iterable(rows), dtype=dtype, count=sum(map(len, rows)))


def _encode(tok: AnyTokenizer, texts: Sequence, max_seq_length: int, offsets: bool = False) -> list:
    """encode_batch (multi-threaded) with our truncation; the tokenizer's settings are restored."""
    smallest = tok.num_special_tokens_to_add(is_pair=True) + 2  # one token of each segment
    if max_seq_length < smallest:
        raise UserError(
            f"task.max_seq_length={max_seq_length} is too small; use at least {smallest}"
        )
    old_trunc, old_pad = tok.truncation, tok.padding
    tok.enable_truncation(max_seq_length, strategy="longest_first")
    tok.no_padding()
    try:
        # encode_batch_fast skips the character offsets; token tasks need them.
        return tok.encode_batch(texts) if offsets else tok.encode_batch_fast(texts)
    except Exception as e:  # tokenizers raises plain Exceptions
        raise UserError(f"tokenisation failed ({e}); try a larger task.max_seq_length") from None
    finally:
        _restore(tok, old_trunc, old_pad)


def _restore(tok: AnyTokenizer, trunc: dict | None, pad: dict | None) -> None:
    if trunc is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(**trunc)
    if pad is not None:
        tok.enable_padding(**pad)


def _label_value(task: TaskSpec, ex: Example) -> int | float:
    if task.is_regression:
        if ex.label is None:
            raise UserError(f"{ex.source}: missing score")
        return float(ex.label)
    try:
        return task.labels.index(ex.label)
    except ValueError:
        allowed = ", ".join(task.labels)
        raise UserError(f"{ex.source}: unknown label {ex.label!r}; allowed: {allowed}") from None
