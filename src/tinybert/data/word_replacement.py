"""TinyBERT's data augmentation (Jiao et al. 2020, section 3 "Data Augmentation", Algorithm 1).

    vectors = load_word_vectors("glove.6B.300d.txt.gz")
    summary = augment_file(task, "SST-2/train.tsv", "aug/train.tsv", AugmentOptions(n=20),
                           vectors, mlm=None)

Every training example is written once as it is and then `n` times as a copy in which each
word (a whole word of BERT's basic tokenisation: split on whitespace and punctuation, every CJK
character a word of its own) is replaced with probability `p` by one of its `k` candidates,
drawn uniformly. A word that is a single WordPiece token of the masked LM's vocabulary gets the
MLM's top-k predictions for it replaced by [MASK] in its sentence; any other word (every word
when there is no MLM) gets its k nearest neighbours by cosine in a word-vector file. A word with
no candidates stays. The text around a replaced word is kept byte for byte, so unreplaced text
and labels are copied exactly.

An MLM with a byte-level BPE or SentencePiece-style tokenizer (RoBERTa, XLM-R, ...) works the
same way in its own terms (words.py): a word is what its pre-tokenizer splits off, the masked
sentence is "<s> ... <mask> ... </s>" (the tokenizer's own specials and template), and only
whole-word tokens ("Ġword", "▁word") are candidates, as the word they stand for.

The work is done a block of examples at a time, so memory does not grow with the input: every
masked sentence of a block goes through the MLM together (sorted by length, one forward pass per
batch, through the `MaskedLM.topk` callable the recipe builds: this layer knows no model), and the
neighbours of a block's new words come from one matrix product over the unit-length vectors
(each word's neighbours are computed once per run and cached). One seeded random stream, drawn in
example order, makes the output identical for a given seed whatever the block size.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from tinybert.data.base import QUIET_INTERVAL_S, Example, OnError, TaskSpec, split_source
from tinybert.data.tasks import ExampleStream, row_writer
from tinybert.data.tokenization import AnyTokenizer, specials_of
from tinybert.data.word_vectors import SPARE, WordVectors
from tinybert.data.words import (
    TokenWords,
    is_special_word,
    is_word_token,
    match_case,
    split_words,
    tokenizer_words,
    whole_word,
    word_marker,
)
from tinybert.errors import UserError
from tinybert.paths import write_atomic

# --------------------------------------------------------------------------- masked LM

# topk(rows, k): token id rows "[CLS] ... [MASK] ... [SEP]" (the tokenizer's own specials)
# with one mask each -> a (len(rows), k) integer array of the ids most likely at the mask,
# best first.
MlmTopK = Callable[[list[list[int]], int], np.ndarray]


@dataclass
class MaskedLM:
    """A masked LM as this layer sees it: its tokenizer and a top-k callable (see MlmTopK)
    that never returns an id of `candidate_exclusions(tokenizer)`. `max_len`: tokens of a
    masked sentence with its specials ([CLS]/[SEP], <s>/</s>); a longer sentence is cut to a
    window around the mask. `batch_size`: rows per topk call."""

    tokenizer: AnyTokenizer
    topk: MlmTopK
    max_len: int = 128
    batch_size: int = 128

    def __post_init__(self) -> None:
        if isinstance(self.tokenizer, Tokenizer):  # hand-built: BERT's tokens, as they were
            ids = {t: self.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[MASK]", "[UNK]")}
            missing = [t for t, i in ids.items() if i is None]
            if missing:
                raise UserError(f"the masked LM's vocabulary lacks {', '.join(missing)}")
        specials = specials_of(self.tokenizer)
        if specials.mask_id is None:
            raise UserError(
                f"the masked LM's vocabulary ({specials.source}) lacks its mask token "
                f"{specials.mask} (mask_token)"
            )
        self.cls_id, self.sep_id = specials.cls_id, specials.sep_id
        self.mask_id, self.unk_id = specials.mask_id, specials.unk_id
        self.prefix, self.suffix = specials.template.single  # "[CLS]", "[SEP]"
        self.marker = word_marker(self.tokenizer)  # None: WordPiece (BERT's words)
        least = len(self.prefix) + len(self.suffix) + 1
        if self.max_len < least:
            raise UserError(
                f"masked LM rows need at least {least} tokens, got max_len={self.max_len}"
            )


def candidate_exclusions(tokenizer: AnyTokenizer) -> list[int]:
    """Token ids that are never candidates: [PAD]/[UNK]/[CLS]/[SEP]/[MASK], [unusedN], other
    bracketed specials, and ##continuation pieces (they are not words); for a BPE/Unigram
    tokenizer every token that does not start a word ("Ġ"/"▁") and its special tokens."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    marker = word_marker(tokenizer)
    if marker is None:
        return sorted(i for token, i in vocab.items() if is_special_word(token))
    specials = set(specials_of(tokenizer).names().values())
    specials |= {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    return sorted(
        i for token, i in vocab.items() if token in specials or not is_word_token(token, marker)
    )


# --------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentOptions:
    """n copies per example; each word replaced with probability p by one of its k candidates;
    `fields`: which texts ("a" first, "b" second of a pair); `dedupe`: drop a copy equal to its
    original or to an earlier copy; `block_size`: examples held and augmented together."""

    n: int = 20
    p: float = 0.4
    k: int = 15
    seed: int = 42
    fields: tuple[str, ...] = ("a", "b")
    dedupe: bool = True
    block_size: int = 1024

    def __post_init__(self) -> None:
        if self.n < 1 or self.k < 1 or not 0 <= self.p <= 1 or self.block_size < 1:
            raise UserError(f"augment: need n >= 1, k >= 1 and p in [0, 1], got {self}")
        if not self.fields or not set(self.fields) <= {"a", "b"}:
            raise UserError(f"augment.fields: a, b or both, got {list(self.fields)}")


@dataclass
class AugmentSummary:
    """What an augmentation did. `words` counts the words of the written copies (not of the
    originals) by what happened to them: replaced from MLM or vector candidates, or kept
    because the word was drawn but had no candidates, or was not drawn."""

    rows_in: int = 0
    rows_out: int = 0
    copies: int = 0
    duplicates_dropped: int = 0
    skipped_rows: int = 0
    words: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("replaced_mlm", "replaced_vectors", "kept_no_candidates", "kept_not_drawn"), 0
        )
    )
    mlm_sentences: int = 0  # masked sentences run through the MLM
    vector_words: int = 0  # distinct vector words whose neighbours were computed
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        w = self.words
        total = sum(w.values())
        replaced = w["replaced_mlm"] + w["replaced_vectors"]
        return [
            f"{self.rows_in} rows in -> {self.rows_out} rows out ({self.copies} copies; "
            f"{self.duplicates_dropped} duplicate copies dropped; {self.skipped_rows} bad or "
            f"blank rows skipped) in {self.seconds:.1f} s",
            f"words of the copies: {total}; replaced {replaced} (MLM {w['replaced_mlm']}, "
            f"vectors {w['replaced_vectors']}); kept {w['kept_no_candidates']} without "
            f"candidates, {w['kept_not_drawn']} not drawn",
        ]


class _Text:
    """One text of one example being augmented: its words, the draws of its n copies, and the
    candidates of the words some copy replaces."""

    __slots__ = ("text", "spans", "words", "replace", "choice", "cands", "source", "tokens")

    def __init__(
        self, text: str, rng: np.random.Generator, n: int, p: float, tokens: TokenWords | None
    ):
        self.text = text
        self.tokens = tokens  # the MLM tokenizer's words and tokens (BPE/Unigram), else None
        self.spans = split_words(text) if tokens is None else tokens.spans
        self.words = [text[a:b] for a, b in self.spans]
        draws = rng.random((2, n, len(self.spans)))
        self.replace: np.ndarray = draws[0] < p  # (n, W): copy j replaces word i
        self.choice: np.ndarray = draws[1]  # (n, W): which candidate, as a fraction
        self.cands: list[Sequence[str]] = [()] * len(self.spans)
        self.source = [0] * len(self.spans)  # 1: MLM, 2: vectors

    def drawn(self) -> list[int]:
        """Words that at least one copy replaces: only these need candidates."""
        return np.flatnonzero(self.replace.any(axis=0)).tolist()

    def copy(self, j: int, counts: list[int]) -> str:
        """Copy j's text; counts[source] += 1 per replaced word, counts[0] per word without
        candidates."""
        parts, prev = [], 0
        for i in np.flatnonzero(self.replace[j]).tolist():
            cands = self.cands[i]
            if not cands:
                counts[0] += 1
                continue
            start, end = self.spans[i]
            parts += [self.text[prev:start], cands[int(self.choice[j, i] * len(cands))]]
            prev = end
            counts[self.source[i]] += 1
        return "".join(parts) + self.text[prev:] if parts else self.text


class Augmenter:
    """Augments a stream of examples block by block (see the module docstring)."""

    def __init__(self, options: AugmentOptions, vectors: WordVectors | None, mlm: MaskedLM | None):
        if vectors is None and mlm is None:
            raise UserError("augment needs word vectors, a masked LM, or both")
        self.options, self.vectors, self.mlm = options, vectors, mlm
        self.rng = np.random.Generator(np.random.PCG64(options.seed))
        self.summary = AugmentSummary()
        self._pieces: dict[str, tuple[int, ...]] = {}  # word -> the MLM's WordPiece ids
        self._words: dict[int, str | None] = {}  # token id -> its word as a candidate, or None

    def run(self, examples: Iterable[Example]) -> Iterator[Example]:
        """Every example followed by its copies, in input order."""
        block: list[Example] = []
        for ex in examples:
            block.append(ex)
            if len(block) >= self.options.block_size:
                yield from self._block(block)
                block = []
        if block:
            yield from self._block(block)

    def _block(self, block: list[Example]) -> Iterator[Example]:
        opts = self.options
        chosen = [
            {
                key: text
                for key, text in (("a", ex.text_a), ("b", ex.text_b))
                if key in opts.fields and text is not None
            }
            for ex in block
        ]
        # WordPiece MLM or none: BERT's words; BPE/Unigram: the MLM tokenizer's, in one batch
        tokens: Iterator[TokenWords | None] = itertools.repeat(None)
        if self.mlm is not None and self.mlm.marker is not None:
            flat = [text for fields in chosen for text in fields.values()]
            tokens = iter(tokenizer_words(self.mlm.tokenizer, flat))
        work: list[dict[str, _Text]] = [
            {key: _Text(text, self.rng, opts.n, opts.p, next(tokens)) for key, text in f.items()}
            for f in chosen
        ]
        self._find_candidates([t for texts in work for t in texts.values()])
        for ex, texts in zip(block, work, strict=True):
            yield from self._copies(ex, texts)

    # ------------------------------------------------------------------ candidates

    def _find_candidates(self, texts: list[_Text]) -> None:
        k = self.options.k
        for_vectors: list[tuple[_Text, int]] = []
        requests: dict[tuple[int, ...], list[tuple[_Text, int]]] = {}
        if self.mlm is not None:
            self._encode_words(t.words for t in texts if t.tokens is None)
        for t in texts:
            drawn = t.drawn()
            if self.mlm is None:
                for_vectors += [(t, i) for i in drawn]
                continue
            context, starts = self._context(t)
            for i in drawn:
                pieces = self._word_pieces(t, i)
                if len(pieces) == 1 and pieces[0] != self.mlm.unk_id:
                    masked = self._masked_row(context, starts[i])
                    requests.setdefault(masked, []).append((t, i))
                else:
                    for_vectors.append((t, i))
        if requests:
            self._ask_mlm(requests, k)
        if self.vectors is not None and for_vectors:
            vectors = self.vectors
            rows = [vectors.lookup(t.words[i]) for t, i in for_vectors]
            found = vectors.neighbours((r for r in rows if r is not None), k)
            self.summary.vector_words = vectors.computed
            for (t, i), row in zip(for_vectors, rows, strict=True):
                if row is not None and len(found[row]):
                    word = t.words[i]
                    t.cands[i] = [match_case(word, vectors.words[j]) for j in found[row]]
                    t.source[i] = 2

    def _context(self, t: _Text) -> tuple[list[int], list[int]]:
        """The text's MLM token ids and each word's first token."""
        if t.tokens is not None:
            return list(t.tokens.ids), list(t.tokens.first)
        context: list[int] = []
        starts = []
        for word in t.words:
            starts.append(len(context))
            context += self._pieces[word]
        return context, starts

    def _word_pieces(self, t: _Text, i: int) -> tuple[int, ...]:
        if t.tokens is not None:
            first = t.tokens.first[i]
            return t.tokens.ids[first : first + t.tokens.count[i]]
        return self._pieces[t.words[i]]

    def _candidate(self, token_id: int) -> str | None:
        """The word a predicted token would put in the text, or None: never a special token
        or a piece that continues a word."""
        assert self.mlm is not None
        if self.mlm.marker is None:
            token = self.mlm.tokenizer.id_to_token(token_id)
            return None if token is None or is_special_word(token) else token
        if token_id not in self._words:
            self._words[token_id] = whole_word(self.mlm.tokenizer, token_id, self.mlm.marker)
        return self._words[token_id]

    def _encode_words(self, words: Iterable[Iterable[str]]) -> None:
        assert self.mlm is not None
        new = list(dict.fromkeys(w for ws in words for w in ws if w not in self._pieces))
        if new:
            encodings = self.mlm.tokenizer.encode_batch_fast(new, add_special_tokens=False)
            self._pieces.update((w, tuple(e.ids)) for w, e in zip(new, encodings, strict=True))

    def _masked_row(self, context: list[int], at: int) -> tuple[int, ...]:
        """[CLS] context [SEP] (the tokenizer's single template) with context[at] = [MASK], cut
        to a window of max_len tokens around the mask when longer."""
        assert self.mlm is not None
        mlm = self.mlm
        width = mlm.max_len - len(mlm.prefix) - len(mlm.suffix)
        start = min(max(0, at - width // 2), max(0, len(context) - width))
        window = context[start : start + width]
        window[at - start] = mlm.mask_id
        return (*mlm.prefix, *window, *mlm.suffix)

    def _ask_mlm(self, requests: dict[tuple[int, ...], list[tuple[_Text, int]]], k: int) -> None:
        """All masked rows of a block through the MLM, shortest first, batch_size at a time."""
        assert self.mlm is not None
        mlm = self.mlm
        rows = sorted(requests, key=len)
        self.summary.mlm_sentences += len(rows)
        for start in range(0, len(rows), mlm.batch_size):
            batch = rows[start : start + mlm.batch_size]
            top = np.asarray(mlm.topk([list(r) for r in batch], k + SPARE))
            if top.shape[0] != len(batch):
                raise RuntimeError(f"MLM top-k returned {top.shape[0]} rows for {len(batch)}")
            for row, ids in zip(batch, top.tolist(), strict=True):
                for t, i in requests[row]:
                    word = t.words[i]
                    own = {
                        word.lower(),
                        (self._candidate(self._word_pieces(t, i)[0]) or "").lower(),
                    }
                    cands = []
                    for token_id in ids:
                        token = self._candidate(token_id)
                        if token is None or token.lower() in own:
                            continue
                        cands.append(match_case(word, token))
                        if len(cands) == k:
                            break
                    if cands:
                        t.cands[i], t.source[i] = cands, 1

    # ------------------------------------------------------------------ copies

    def _copies(self, ex: Example, texts: dict[str, _Text]) -> Iterator[Example]:
        summary, opts = self.summary, self.options
        summary.rows_in += 1
        summary.rows_out += 1
        yield ex
        seen = {(ex.text_a, ex.text_b)}
        words = summary.words
        for j in range(opts.n):
            counts = [0, 0, 0]
            new = {key: t.copy(j, counts) for key, t in texts.items()}
            pair = (new.get("a", ex.text_a), new.get("b", ex.text_b))
            if opts.dedupe and pair in seen:
                summary.duplicates_dropped += 1
                continue
            seen.add(pair)
            n_words = sum(len(t.spans) for t in texts.values())
            words["kept_no_candidates"] += counts[0]
            words["replaced_mlm"] += counts[1]
            words["replaced_vectors"] += counts[2]
            words["kept_not_drawn"] += n_words - sum(counts)
            summary.copies += 1
            summary.rows_out += 1
            yield dataclasses.replace(
                ex, text_a=pair[0], text_b=pair[1], source=f"{ex.source} (copy {j + 1})"
            )


# --------------------------------------------------------------------------- files


def augment_file(
    task: TaskSpec,
    source: str | Path,
    output: str | Path,
    options: AugmentOptions,
    vectors: WordVectors | None,
    mlm: MaskedLM | None,
    on_error: OnError = "raise",
    progress: bool = True,
) -> AugmentSummary:
    """Augment `task`'s training file `source` into `output`, in the task's own format (read
    back by the task's reader), and write the summary as JSON beside it
    (`<output>.summary.json`). Both are written under temporary names and renamed at the end,
    so an interrupted run leaves no partial file."""
    if task.kind == "token":
        raise UserError(
            f"task {task.name!r} labels entity spans (character offsets into the text), which "
            "cannot survive replacing words; augment sentence (pair) classification tasks"
        )
    source, output = Path(source), Path(output)
    if not output.parent.is_dir():
        raise UserError(f"augment.output {output}: folder {output.parent} does not exist")
    file = split_source(source)[0]
    if output.exists() and file.exists() and output.resolve() == file.resolve():
        raise UserError(f"augment.output {output} is the input file; write it elsewhere")
    started = time.perf_counter()
    augmenter = Augmenter(options, vectors, mlm)
    stream = ExampleStream(task, source, on_error)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    bar = tqdm(
        total=_count_lines(source),
        unit="ex",
        desc="augment",
        disable=not progress,
        mininterval=QUIET_INTERVAL_S if not sys.stderr.isatty() else 0.1,
    )
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            write = row_writer(task, f)
            for ex in augmenter.run(_counted(stream, bar)):
                write(ex)
        bar.total = bar.n
        bar.close()
        summary = augmenter.summary
        summary.skipped_rows = stream.skipped + stream.blank  # blank lines are left out too
        summary.seconds = round(time.perf_counter() - started, 3)
        os.replace(tmp, output)
    finally:
        bar.close()
        tmp.unlink(missing_ok=True)
    report = {
        "task": task.name,
        "input": str(source),
        "output": str(output),
        "options": dataclasses.asdict(options),
        "mlm": mlm is not None,
        "word_vectors": None if vectors is None else vectors.source,
        **summary.to_dict(),
    }
    summary_path = summary_file(output)
    write_atomic(summary_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return summary


def summary_file(output: str | Path) -> Path:
    """Where augment_file writes its summary: `<output>.summary.json`."""
    output = Path(output)
    return output.with_name(output.name + ".summary.json")


def _counted(examples: Iterable[Example], bar: tqdm) -> Iterator[Example]:
    for ex in examples:
        bar.update(1)
        yield ex


def _count_lines(path: Path) -> int:
    """Lines in a file (an estimate of its rows for the progress bar), read 1 MiB at a time."""
    count = 0
    with open(split_source(path)[0], "rb") as f:  # SICK.txt#TRAIN: all of SICK.txt
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
    return count
