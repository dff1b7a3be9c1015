"""BERT WordPiece tokenisation with the `tokenizers` library, and the encoded dataset.

    tok = load_tokenizer("models/bert-base-uncased-sst2")
    train = encode_examples(tok, examples, task, max_seq_length=128)
    train[0]  # {"input_ids": [101, ..., 102], "token_type_ids": [0, ...], "label": 1, "index": 0}

Sequences are stored unpadded (each as long as it needs, up to max_seq_length); `collate` pads
each batch to its own longest sequence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from torch.utils.data import Dataset

from tinybert.data.base import Example, TaskSpec
from tinybert.errors import UserError

_REQUIRED = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
_SPECIAL = (*_REQUIRED, "[MASK]")
_CHUNK = 8192  # examples per encode_batch call: bounds the memory held by Encoding objects


# --------------------------------------------------------------------------- tokenizer


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    """The BERT tokenizer of a model directory: tokenizer.json if present, else vocab.txt.

    Output ids follow BERT: "[CLS] A [SEP]" or "[CLS] A [SEP] B [SEP]" with type ids 0 for the
    first segment and 1 for the second. Padding and truncation configured in tokenizer.json are
    turned off: encode_examples truncates, collate pads per batch.
    """
    model_dir = Path(model_dir)
    if (model_dir / "tokenizer.json").is_file():
        tok = _from_tokenizer_json(model_dir / "tokenizer.json")
    elif (model_dir / "vocab.txt").is_file():
        tok = _from_vocab(model_dir)
    else:
        raise UserError(
            f"{model_dir}: no tokenizer found; expected tokenizer.json or vocab.txt "
            f"(with optional tokenizer_config.json) in the model directory"
        )
    tok.no_padding()
    tok.no_truncation()
    return tok


def tokenizer_info(tok: Tokenizer) -> tuple[int, int]:
    """(ids the tokenizer can produce: highest id + 1, added tokens included; id of [PAD]).

    The id range, not the entry count: a vocab.txt with a repeated line keeps the line numbers
    as ids, so it has fewer entries than ids, and the embedding table needs a row per id."""
    pad_id = tok.token_to_id("[PAD]")
    if pad_id is None:  # load_tokenizer guarantees [PAD]; a hand-built Tokenizer may lack it
        raise UserError("the tokenizer has no [PAD] token; BERT needs one")
    return max(tok.get_vocab(with_added_tokens=True).values()) + 1, pad_id


def _from_tokenizer_json(path: Path) -> Tokenizer:
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises plain Exceptions for bad JSON / schema
        raise UserError(f"{path}: not a readable tokenizers file ({e})") from None
    _check_specials(tok, path)
    if tok.post_processor is None:  # some exports leave it out; BERT needs [CLS]/[SEP]
        tok.post_processor = _bert_template(tok)
    return tok


def _from_vocab(model_dir: Path) -> Tokenizer:
    """WordPiece + BERT normaliser/pre-tokeniser, as configured in tokenizer_config.json."""
    cfg = _tokenizer_config(model_dir)
    vocab_path = model_dir / "vocab.txt"
    tok = Tokenizer(WordPiece.from_file(str(vocab_path), unk_token="[UNK]"))
    _check_specials(tok, vocab_path)
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
    tok.add_special_tokens([t for t in _SPECIAL if tok.token_to_id(t) is not None])
    tok.post_processor = _bert_template(tok)
    return tok


def _tokenizer_config(model_dir: Path) -> dict:
    path = model_dir / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
    return cfg


def _check_specials(tok: Tokenizer, path: Path) -> None:
    missing = [t for t in _REQUIRED if tok.token_to_id(t) is None]
    if missing:
        raise UserError(f"{path}: not a BERT WordPiece vocabulary: missing {', '.join(missing)}")


def _bert_template(tok: Tokenizer) -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
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
    tokenizer: Tokenizer, examples: Sequence[Example], task: TaskSpec, max_seq_length: int
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
    tokenizer: Tokenizer, texts: Sequence[str | tuple[str, str]], max_seq_length: int
) -> TaskDataset:
    """Tokenise unlabelled inputs (a sentence, or a (sentence, pair) tuple each) for prediction,
    truncated exactly as encode_examples does; every label is a placeholder 0."""
    return _encode_dataset(tokenizer, texts, [0] * len(texts), max_seq_length)


def _encode_dataset(
    tokenizer: Tokenizer, texts: Sequence, labels: list, max_seq_length: int
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
    tokenizer: Tokenizer, examples: Sequence[Example], task: TaskSpec, max_seq_length: int
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
                (a, b) if m == 0 else (0, 0)
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


def _flat(rows: list[list[int]], dtype: type) -> np.ndarray:
    return np.fromiter(chain.from_iterable(rows), dtype=dtype, count=sum(map(len, rows)))


def _encode(tok: Tokenizer, texts: Sequence, max_seq_length: int, offsets: bool = False) -> list:
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


def _restore(tok: Tokenizer, trunc: dict | None, pad: dict | None) -> None:
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
