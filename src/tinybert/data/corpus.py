"""General-distillation corpus: raw text -> packed BERT sequences in memory-mapped shards.

    stats = prepare_corpus(["wiki/*.txt.gz"], tokenizer_dir="models/teacher", out_dir="corpus/")
    data = CorpusDataset("corpus/", tokenizer_dir="models/teacher")  # checks the vocabulary
    batch = data.collate(list(range(32)))  # input_ids, attention_mask, token_type_ids (B, T)

Input: plain text or WikiExtractor output (one paragraph a line, a blank line between
documents, `<doc ...>` / `</doc>` lines tolerated), optionally .gz or .bz2, in UTF-8. A file
with a NUL byte in its first 8 KiB is binary (or UTF-16) and refused before anything is
written, naming the file. A line that is not valid UTF-8 (e.g. latin-1 accents) is skipped, not
turned into U+FFFD garbage: the skipped lines and bytes are counted per file, with the first
such line, in `CorpusStats.undecodable`, in meta.json and in the command's summary.

Packing follows BERT's pretraining data (create_pretraining_data.py), minus the masking and
next-sentence labels GD does not use: the paragraphs of one document are gathered until they
fill a target length (max_seq_length minus the pair template's special tokens, or with
probability `short_seq_prob` a random shorter one), split at a random paragraph boundary into A
and B, and written with the tokenizer's own template: BERT "[CLS] A [SEP] B [SEP]" (segment ids
0 then 1), RoBERTa "<s> A </s></s> B </s>" (segment ids all 0, as for every model that reads
none: see tokenization.py). Where BERT drops what overflows the target, here the overflowing
paragraph is cut and its rest starts the next sequence: no text is lost. One seeded RNG drives
every choice, in input order, so the output is the same for a given seed however many threads
tokenise.

On disk (`out_dir`):
    meta.json            sequence length, dtype, vocabulary hash, special tokens, template,
                         token_types, counts, shards, sources
    ids-00000.bin ...    (rows, max_seq_length) token ids, padded with the pad token; uint16
                         when every id fits, else int32
    seg-00000.bin ...    (rows, 2) uint16: (real length, length of "[CLS] A [SEP]": the first
                         text with the specials before and after it)
Memory stays flat: text is read, tokenised and written a block at a time.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import io
import json
import random
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from numpy.typing import DTypeLike
from torch import Tensor
from tqdm.auto import tqdm

from tinybert.data.base import QUIET_INTERVAL_S
from tinybert.data.tokenization import (
    AnyTokenizer,
    Template,
    load_tokenizer,
    specials_of,
    tokenizer_info,
)
from tinybert.errors import UserError

META_FILE = "meta.json"
FORMAT_VERSION = 1
_BLOCK_BYTES = 2 << 20  # text per tokenizer call: big enough for the thread pool, bounded memory
_SNIFF_BYTES = 8192  # a NUL byte this early means a binary (or UTF-16) file, not text


@dataclass(frozen=True)
class PackingOptions:
    """How documents become sequences."""

    max_seq_length: int = 128
    short_seq_prob: float = 0.1  # BERT's: some shorter sequences, so the model sees them too
    seed: int = 12345
    shard_rows: int = 1 << 20  # sequences per shard file (256 MiB of uint16 at length 128)
    min_paragraph_tokens: int = 1  # drop shorter paragraphs (headings, stray lines) when > 1

    def check(self) -> None:
        if self.max_seq_length < 8 or self.max_seq_length > 65535:
            raise UserError(f"max_seq_length must be in 8..65535, got {self.max_seq_length}")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise UserError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if self.shard_rows < 1:
            raise UserError(f"shard_rows must be >= 1, got {self.shard_rows}")


@dataclass
class CorpusStats:
    sequences: int = 0
    tokens: int = 0  # real tokens written, [CLS]/[SEP] included
    documents: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    shards: list[dict] = field(default_factory=list)
    # file -> {"lines", "bytes", "first_line"}: lines skipped as not UTF-8 (or holding NULs)
    undecodable: dict[str, dict[str, int]] = field(default_factory=dict)


def vocab_hash(tok: AnyTokenizer) -> str:
    """A fingerprint of the token -> id mapping, the same for vocab.txt and tokenizer.json."""
    vocab = sorted(tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    text = "\n".join(f"{i}\t{t}" for t, i in vocab)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- reading text


def expand_inputs(patterns: Iterable[str]) -> list[Path]:
    """Files named by paths or globs, in a stable order; a pattern matching nothing is an error."""
    files: list[Path] = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else []
        if not matched and Path(pattern).is_file():
            matched = [pattern]
        if not matched:
            raise UserError(f"corpus input '{pattern}' matches no file")
        files += [Path(m) for m in matched if Path(m).is_file()]
    return files


def _open_bytes(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")  # noqa: SIM115 (the caller closes it)


def check_text_file(path: Path) -> None:
    """Refuse a binary file: a NUL byte in its first block (of the decompressed text)."""
    try:
        with _open_bytes(path) as f:
            head = f.read(_SNIFF_BYTES)
    except (OSError, EOFError) as e:  # truncated .gz/.bz2, unreadable file
        raise UserError(f"{path}: cannot read it as text ({e})") from None
    at = head.find(b"\0")
    if at >= 0:
        utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
        raise UserError(
            f"{path}: not a text file (a NUL byte at byte {at}"
            f"{', UTF-16 text' if utf16 else ''}); prepare-corpus reads UTF-8 text, plain, "
            ".gz or .bz2" + ("; save it as UTF-8" if utf16 else "")
        )


def read_documents(
    path: Path, undecodable: dict[str, dict[str, int]] | None = None
) -> Iterator[tuple[list[str], int]]:
    """Yield (paragraphs, bytes read) per document of one UTF-8 file.

    A blank line or a `<doc>` / `</doc>` line ends a document; other lines are paragraphs. A
    line that is not valid UTF-8, or holds a NUL byte, is skipped; when there were any,
    `undecodable[str(path)]` gets {"lines", "bytes", "first_line"} once the file is read.
    """
    paragraphs: list[str] = []
    size = 0
    bad = {"lines": 0, "bytes": 0, "first_line": 0}
    try:
        with _open_bytes(path) as f:
            for lineno, raw in enumerate(f, start=1):
                size += len(raw)
                try:
                    if b"\0" in raw:
                        raise ValueError("NUL byte")
                    line = raw.decode("utf-8")
                except ValueError:  # UnicodeDecodeError too
                    bad["lines"] += 1
                    bad["bytes"] += len(raw)
                    bad["first_line"] = bad["first_line"] or lineno
                    continue
                if lineno == 1:
                    line = line.removeprefix("\ufeff")  # a UTF-8 byte-order mark
                text = line.strip()
                if text and not (text.startswith("<doc") or text == "</doc>"):
                    paragraphs.append(text)
                elif paragraphs:
                    yield paragraphs, size
                    paragraphs, size = [], 0
    except (OSError, EOFError) as e:  # truncated .gz/.bz2, unreadable file
        raise UserError(f"{path}: cannot read it as text ({e})") from None
    if bad["lines"] and undecodable is not None:
        undecodable[str(path)] = bad
    if paragraphs:
        yield paragraphs, size


def _blocks(
    files: list[Path], undecodable: dict[str, dict[str, int]] | None = None
) -> Iterator[tuple[list[list[str]], int]]:
    """Groups of whole documents of about _BLOCK_BYTES, with their byte count."""
    docs: list[list[str]] = []
    size = 0
    for path in files:
        for paragraphs, n in read_documents(path, undecodable):
            docs.append(paragraphs)
            size += n
            if size >= _BLOCK_BYTES:
                yield docs, size
                docs, size = [], 0
    if docs:
        yield docs, size


# --------------------------------------------------------------------------- packing


def pack_document(
    paragraphs: list[list[int]],
    rng: random.Random,
    max_seq_length: int,
    short_seq_prob: float,
    pair_specials: int = 3,
) -> Iterator[tuple[list[int], list[int]]]:
    """Turn one document's tokenised paragraphs into (A, B) segment pairs.

    Paragraphs are gathered in order until they fill the target length; the paragraph that
    overflows it is cut there and its rest starts the next sequence, so no token is lost. Each
    pair fits max_seq_length once the template's `pair_specials` tokens are added (BERT's
    [CLS] A [SEP] B [SEP]: 3, RoBERTa's <s> A </s></s> B </s>: 4); B is empty only for a
    one-token remainder, written as a single text ("[CLS] A [SEP]").
    """
    max_tokens = max_seq_length - pair_specials
    queue = deque(p for p in paragraphs if p)
    target = _target(rng, max_tokens, short_seq_prob)
    chunk: list[list[int]] = []
    size = 0
    while queue:
        piece = queue.popleft()
        room = target - size
        if len(piece) > room:  # cut: this much fills the sequence, the rest comes next
            chunk.append(piece[:room])
            queue.appendleft(piece[room:])
            size = target
        else:
            chunk.append(piece)
            size += len(piece)
        if size >= target or not queue:
            yield _split(chunk, rng)
            chunk, size = [], 0
            target = _target(rng, max_tokens, short_seq_prob)


def _target(rng: random.Random, max_tokens: int, short_seq_prob: float) -> int:
    return rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens


def _split(chunk: list[list[int]], rng: random.Random) -> tuple[list[int], list[int]]:
    """A = the first k pieces, B = the rest (k random); a single piece is cut at a random token.
    The chunk already fits the target length (the packer cuts pieces to fit), so no trimming."""
    if len(chunk) >= 2:
        k = rng.randint(1, len(chunk) - 1)
        a = [t for p in chunk[:k] for t in p]
        b = [t for p in chunk[k:] for t in p]
    else:
        tokens = chunk[0]
        cut = rng.randint(1, len(tokens) - 1) if len(tokens) >= 2 else len(tokens)
        a, b = tokens[:cut], tokens[cut:]
    return a, b


# --------------------------------------------------------------------------- writing shards


class ShardWriter:
    """Appends packed rows to ids-NNNNN.bin / seg-NNNNN.bin, a new pair every `shard_rows`."""

    def __init__(self, out_dir: Path, max_seq_length: int, dtype: DTypeLike, shard_rows: int):
        self.out_dir, self.length, self.dtype = out_dir, max_seq_length, np.dtype(dtype)
        self.shard_rows = shard_rows
        self.shards: list[dict] = []
        self._ids: BinaryIO | None = None
        self._seg: BinaryIO | None = None
        self._rows = 0

    def write(self, ids: np.ndarray, seg: np.ndarray) -> None:
        """ids (N, L) in self.dtype, seg (N, 2) uint16."""
        start = 0
        while start < len(ids):
            if self._ids is None or self._rows == self.shard_rows:
                self._open()
            assert self._ids is not None and self._seg is not None  # _open() made them
            take = min(len(ids) - start, self.shard_rows - self._rows)
            self._ids.write(ids[start : start + take].tobytes())
            self._seg.write(seg[start : start + take].tobytes())
            self._rows += take
            self.shards[-1]["rows"] = self._rows
            start += take

    def _open(self) -> None:
        self.close()
        n = len(self.shards)
        ids_name, seg_name = f"ids-{n:05d}.bin", f"seg-{n:05d}.bin"
        self.shards.append({"ids": ids_name, "seg": seg_name, "rows": 0})
        self._ids = open(self.out_dir / ids_name, "wb")  # noqa: SIM115 (closed in close())
        self._seg = open(self.out_dir / seg_name, "wb")  # noqa: SIM115
        self._rows = 0

    def close(self) -> None:
        for f in (self._ids, self._seg):
            if f is not None:
                f.close()
        self._ids = self._seg = None


def _rows(
    pairs: list[tuple[list[int], list[int]]],
    template: Template,
    pad_id: int,
    length: int,
    dtype: DTypeLike,
) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) pairs -> padded ids (N, L) and (real length, length of the first text with its
    specials: "[CLS] A [SEP]", "<s> A </s></s>") (N, 2). An empty B: the single-text template."""
    before, between, _ = template.pair
    ids = np.full((len(pairs), length), pad_id, dtype=dtype)
    seg = np.zeros((len(pairs), 2), dtype=np.uint16)
    for row, (a, b) in enumerate(pairs):
        tokens = template.wrap(a, b) if b else template.wrap(a)
        ids[row, : len(tokens)] = tokens
        seg[row] = (len(tokens), len(before) + len(a) + len(between) if b else len(tokens))
    return ids, seg


def _id_dtype(tok: AnyTokenizer) -> type:
    """uint16 when every id the tokenizer can produce fits, else int32."""
    return np.uint16 if tokenizer_info(tok)[0] <= 65536 else np.int32


def prepare_corpus(
    inputs: Iterable[str],
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    options: PackingOptions = PackingOptions(),
    progress: bool = True,
) -> CorpusStats:
    """Tokenise and pack text files into `out_dir` (see the module docstring for the layout).

    Binary inputs are refused before anything is written; lines that are not UTF-8 are skipped
    and counted per file (`CorpusStats.undecodable`, meta.json's "undecodable").
    """
    options.check()
    files = expand_inputs(inputs)
    for path in files:
        check_text_file(path)
    tok = load_tokenizer(tokenizer_dir)
    specials = tok.specials
    if options.max_seq_length < specials.template.pair_specials + 2:
        raise UserError(
            f"max_seq_length {options.max_seq_length} leaves no room for two texts beside the "
            f"{specials.template.pair_specials} special tokens of {specials.source}'s template"
        )
    dtype = _id_dtype(tok)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).unlink(missing_ok=True)  # an interrupted run must not look finished
    writer = ShardWriter(out, options.max_seq_length, dtype, options.shard_rows)
    rng = random.Random(options.seed)
    stats = CorpusStats()
    total = sum(f.stat().st_size for f in files)
    bar = tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc="prepare-corpus",
        disable=not progress,
        mininterval=QUIET_INTERVAL_S if not sys.stderr.isatty() else 0.1,
    )
    start = time.perf_counter()
    # Tokenising block k+1 (Rust threads, GIL released) overlaps packing block k (Python).
    with ThreadPoolExecutor(max_workers=1) as pool:
        blocks = _blocks(files, stats.undecodable)
        pending = _submit(pool, tok, next(blocks, None))
        while pending is not None:
            docs, size, future = pending
            pending = _submit(pool, tok, next(blocks, None))
            pairs: list[tuple[list[int], list[int]]] = []
            for paragraphs in _regroup(docs, future.result(), options.min_paragraph_tokens):
                pairs += pack_document(
                    paragraphs,
                    rng,
                    options.max_seq_length,
                    options.short_seq_prob,
                    specials.template.pair_specials,
                )
                stats.documents += 1
            ids, seg = _rows(
                pairs, specials.template, specials.pad_id, options.max_seq_length, dtype
            )
            writer.write(ids, seg)
            stats.sequences += len(pairs)
            stats.tokens += int(seg[:, 0].sum())
            stats.bytes_read += size
            bar.update(size)
    writer.close()
    bar.close()
    stats.seconds = time.perf_counter() - start
    stats.shards = writer.shards
    if stats.sequences == 0:
        raise UserError(f"no text found in {', '.join(map(str, files))}")
    _write_meta(out, tok, dtype, options, stats, files)
    return stats


def _submit(
    pool: ThreadPoolExecutor, tok: AnyTokenizer, block: tuple[list[list[str]], int] | None
) -> tuple[list[list[str]], int, Future[list[list[int]]]] | None:
    if block is None:
        return None
    docs, size = block
    flat = [p for doc in docs for p in doc]
    return docs, size, pool.submit(_tokenize, tok, flat)


def _tokenize(tok: AnyTokenizer, texts: list[str]) -> list[list[int]]:
    return [enc.ids for enc in tok.encode_batch_fast(texts, add_special_tokens=False)]


def _regroup(docs: list[list[str]], ids: list[list[int]], min_tokens: int) -> Iterator[list]:
    """Give each document back its tokenised paragraphs (flat list -> per document)."""
    at = 0
    for doc in docs:
        paragraphs = [p for p in ids[at : at + len(doc)] if len(p) >= min_tokens]
        at += len(doc)
        if paragraphs:
            yield paragraphs


def _write_meta(
    out: Path,
    tok: AnyTokenizer,
    dtype: DTypeLike,
    options: PackingOptions,
    stats: CorpusStats,
    files: Iterable[str | Path],
) -> None:
    meta = {
        "format": "tinybert-corpus",
        "version": FORMAT_VERSION,
        "max_seq_length": options.max_seq_length,
        "dtype": np.dtype(dtype).name,
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "vocab_hash": vocab_hash(tok),
        "pad_id": specials_of(tok).pad_id,
        **tokenizer_meta(tok),
        "short_seq_prob": options.short_seq_prob,
        "seed": options.seed,
        "sequences": stats.sequences,
        "tokens": stats.tokens,
        "documents": stats.documents,
        "bytes": stats.bytes_read,
        "shards": stats.shards,
        "sources": [str(f) for f in files],
        "undecodable": stats.undecodable,  # file -> lines, bytes, first_line skipped (not UTF-8)
    }
    tmp = out / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / META_FILE)  # meta.json appears last, only when the corpus is complete


def tokenizer_meta(tok: AnyTokenizer) -> dict:
    """What meta.json records of the tokenizer beyond its vocabulary, to refuse another later:
    its special tokens, its template's special ids, whether type ids are written."""
    specials = specials_of(tok)
    return {
        "special_tokens": specials.names(),
        "template": specials.template.to_json(),
        "token_types": specials.token_types,
    }


# --------------------------------------------------------------------------- reading shards


class CorpusDataset:
    """A prepared corpus, memory-mapped. Item i is row i across the shards.

    `lengths` (N,) holds each row's real length (for batching); `collate(indices)` returns
    input_ids, attention_mask, token_type_ids as (B, T) long tensors, T = longest in the batch
    (type ids all 0 when the corpus's or the teacher's tokenizer writes none).
    """

    def __init__(self, path: str | Path, tokenizer_dir: str | Path | None = None):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            raise UserError(
                f"{self.path}: not a prepared corpus (no {META_FILE}); run "
                f"`tinybert prepare-corpus` first, or point corpus.path at a TFRecord folder"
            )
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.token_types = bool(self.meta.get("token_types", True))
        if tokenizer_dir is not None:
            tok = load_tokenizer(tokenizer_dir)
            check_vocab(self.meta, tok, self.path, tokenizer_dir)
            self.token_types = self.token_types and tok.specials.token_types
        length, dtype = self.meta["max_seq_length"], np.dtype(self.meta["dtype"])
        self.pad_id = self.meta["pad_id"]
        self._ids, self._seg = [], []
        for shard in self.meta["shards"]:
            rows = shard["rows"]
            self._ids.append(self._map(shard["ids"], dtype, (rows, length)))
            self._seg.append(self._map(shard["seg"], np.uint16, (rows, 2)))
        self._starts = np.cumsum([0] + [len(s) for s in self._seg])
        self.lengths = np.concatenate([s[:, 0] for s in self._seg]).astype(np.int64)

    def _map(self, name: str, dtype: DTypeLike, shape: tuple[int, int]) -> np.memmap:
        file = self.path / name
        want = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if not file.is_file() or file.stat().st_size != want:
            raise UserError(
                f"{file}: missing or truncated ({want} bytes expected); prepare the corpus again"
            )
        return np.memmap(file, dtype=dtype, mode="r", shape=shape)

    def __len__(self) -> int:
        return len(self.lengths)

    def rows(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """ids (B, L) and seg (B, 2) for global row indices."""
        idx = np.asarray(indices, dtype=np.int64)
        shard = np.searchsorted(self._starts, idx, side="right") - 1
        ids = np.empty((len(idx), self.meta["max_seq_length"]), dtype=np.int64)
        seg = np.empty((len(idx), 2), dtype=np.int64)
        for s in np.unique(shard):
            pick = shard == s
            local = idx[pick] - self._starts[s]
            ids[pick] = self._ids[s][local]
            seg[pick] = self._seg[s][local]
        return ids, seg

    def collate(self, indices: Sequence[int]) -> dict[str, Tensor]:
        ids, seg = self.rows(indices)
        return packed_batch(ids, seg[:, 0], seg[:, 1], self.pad_id, self.token_types)


def packed_batch(
    ids: np.ndarray, lengths: np.ndarray, len_a: np.ndarray, pad_id: int, token_types: bool = True
) -> dict[str, Tensor]:
    """Padded rows -> model inputs cut to the batch's longest row.

    ids (B, L); lengths, len_a (B,): real length and length of "[CLS] A [SEP]" per row.
    token_types False: every type id is 0 (a model that reads no segment ids).
    """
    width = int(lengths.max()) if len(lengths) else 0
    pos = np.arange(width)[None, :]
    mask = pos < lengths[:, None]
    type_ids = (pos >= len_a[:, None]) & mask & token_types
    ids = np.where(mask, ids[:, :width], pad_id)
    return {
        "input_ids": torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)),
        "attention_mask": torch.from_numpy(mask.astype(np.int64)),
        "token_type_ids": torch.from_numpy(type_ids.astype(np.int64)),
    }


def check_vocab(meta: dict, tok: AnyTokenizer, corpus: Path, tokenizer_dir: str | Path) -> None:
    """The corpus must have been tokenised with the teacher's vocabulary, and packed with its
    special tokens and template (checked when meta.json records them: corpora made before
    it did were all BERT's)."""
    again = f"run `tinybert prepare-corpus --tokenizer {tokenizer_dir}` again"
    if meta.get("vocab_hash") != vocab_hash(tok):
        raise UserError(
            f"{corpus} was tokenised with another vocabulary (hash {meta.get('vocab_hash')}, "
            f"{meta.get('vocab_size')} tokens) than the teacher's in {tokenizer_dir} (hash "
            f"{vocab_hash(tok)}, {tok.get_vocab_size(with_added_tokens=True)} tokens); {again}"
        )
    ours = tokenizer_meta(tok)
    for key in ("special_tokens", "template"):
        if key in meta and meta[key] != ours[key]:
            raise UserError(
                f"{corpus} was packed with other {key.replace('_', ' ')} ({meta[key]}) than the "
                f"teacher's tokenizer in {tokenizer_dir} ({ours[key]}); {again}"
            )


class TFRecordCorpus:
    """The seed's GD data (TFRecord + schema.json), read into memory; same interface as
    CorpusDataset. For corpora too large for memory, convert once with `prepare-corpus --tfrecord`.
    """

    def __init__(
        self,
        path: str | Path,
        vocab_size: int | None = None,
        pad_id: int = 0,
        token_types: bool = True,
    ):
        from tinybert.data import tfrecord

        self.path = Path(path)
        arrays = tfrecord.read_pretraining(self.path)
        self.ids = arrays["input_ids"]
        self.lengths, self.len_a = tfrecord.segment_lengths(arrays)
        self.pad_id, self.token_types = pad_id, token_types
        top = int(self.ids.max()) if self.ids.size else 0
        if vocab_size is not None and top >= vocab_size:
            raise UserError(
                f"{self.path}: token id {top} is outside the teacher's vocabulary of {vocab_size}; "
                "the data was made with another vocabulary"
            )

    def __len__(self) -> int:
        return len(self.lengths)

    def collate(self, indices: Sequence[int]) -> dict[str, Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        return packed_batch(
            self.ids[idx], self.lengths[idx], self.len_a[idx], self.pad_id, self.token_types
        )


def open_corpus(path: str | Path, tokenizer_dir: str | Path) -> CorpusDataset | TFRecordCorpus:
    """A prepared corpus folder (meta.json) or a seed TFRecord folder (schema.json)."""
    from tinybert.data import tfrecord

    if tfrecord.is_tfrecord_dir(path):
        tok = load_tokenizer(tokenizer_dir)
        s = tok.specials
        return TFRecordCorpus(
            path, tok.get_vocab_size(with_added_tokens=True), s.pad_id, s.token_types
        )
    return CorpusDataset(path, tokenizer_dir)


def convert_tfrecord(
    folders: Iterable[str],
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    options: PackingOptions = PackingOptions(),
) -> CorpusStats:
    """Convert seed TFRecord GD folders into memory-mapped shards (one folder in memory at a
    time). The records keep their own sequence length and packing; only ids are checked.
    """
    from tinybert.data import tfrecord

    folders = list(folders)  # read twice: converted, then listed in meta.json
    tok = load_tokenizer(tokenizer_dir)
    n_vocab = tok.get_vocab_size(with_added_tokens=True)
    dtype = _id_dtype(tok)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).unlink(missing_ok=True)
    stats, writer, length = CorpusStats(), None, None
    start = time.perf_counter()
    for folder in folders:
        data = TFRecordCorpus(folder, n_vocab, tok.specials.pad_id)
        if length is None:
            length = data.ids.shape[1]
            writer = ShardWriter(out, length, dtype, options.shard_rows)
        elif data.ids.shape[1] != length:
            raise UserError(f"{folder}: sequences of {data.ids.shape[1]} tokens, not {length}")
        seg = np.stack([data.lengths, data.len_a], axis=1).astype(np.uint16)
        assert writer is not None  # made with the first folder
        writer.write(data.ids.astype(dtype), seg)
        stats.sequences += len(data)
        stats.tokens += int(data.lengths.sum())
        stats.bytes_read += sum(f.stat().st_size for f in tfrecord.tfrecord_files(Path(folder)))
    if writer is None or length is None:  # (both are set by the first folder)
        raise UserError("prepare-corpus --tfrecord: no input folder given")
    writer.close()
    stats.seconds, stats.shards = time.perf_counter() - start, writer.shards
    _write_meta(out, tok, dtype, replace(options, max_seq_length=length), stats, list(folders))
    return stats
