"""Word vectors (GloVe or word2vec text format, plain or .gz) and their nearest neighbours by
cosine: the candidates of a word that is not a single WordPiece (every word without an MLM)."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from tinybert.data.words import is_cjk_char, is_special_word
from tinybert.errors import UserError

# Neighbours asked for beyond k: the word itself and its case variants are dropped afterwards.
SPARE = 4
_SCORES_PER_CHUNK = 1 << 24  # similarity scores held at once (64 MB of float32)
_VECTOR_LINES_PER_CHUNK = 16384  # vector-file lines converted to float32 at once


class WordVectors:
    """Word vectors for nearest-neighbour candidates: one unit-length row per distinct word.

    A word of the text is looked up as it is, else lowercased (GloVe is uncased). Its
    neighbours are the words of highest cosine similarity, leaving out the word itself (and its
    case variants), special entries (<unk>, [UNK], ##x) and zero vectors; a single CJK character
    gets single CJK characters only, so a replaced character stays one word.
    """

    def __init__(self, words: list[str], matrix: np.ndarray, source: str = ""):
        self.words, self.source = words, source
        self.index = {w: i for i, w in enumerate(words)}
        norms = np.linalg.norm(matrix, axis=1)
        usable = (norms > 0) & np.array([not is_special_word(w) for w in words], dtype=bool)
        cjk = np.array([is_cjk_char(w) for w in words], dtype=bool)
        # Candidates and queries: the usable rows only, unit length (a zero vector or a special
        # entry has no neighbours and is nobody's). Single CJK characters also form a pool.
        self.rows = np.flatnonzero(usable)  # pool position -> row
        self.position = np.full(len(words), -1, dtype=np.int64)  # row -> pool position
        self.position[self.rows] = np.arange(len(self.rows))
        unit = matrix[self.rows] / norms[self.rows, None]
        self.unit = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))
        self.cjk = cjk
        self._cjk_rows = np.flatnonzero(usable & cjk)
        self._cjk_unit = self.unit[torch.from_numpy(self.position[self._cjk_rows])]
        self._cache: dict[int, np.ndarray] = {}  # row -> neighbour rows, best first
        self._k = 0

    @property
    def dim(self) -> int:
        return int(self.unit.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    @property
    def computed(self) -> int:
        """Words whose neighbours have been computed (and are cached)."""
        return len(self._cache)

    def lookup(self, word: str) -> int | None:
        """The row of `word` (as is, else lowercased), or None."""
        row = self.index.get(word)
        return self.index.get(word.lower()) if row is None else row

    def neighbours(self, rows: Iterable[int], k: int) -> dict[int, np.ndarray]:
        """Each row's (at most) k nearest rows, best first; computed once per row and cached."""
        if k != self._k:
            self._cache, self._k = {}, k
        wanted = list(dict.fromkeys(rows))
        todo = [r for r in wanted if r not in self._cache]
        step = max(1, _SCORES_PER_CHUNK // max(1, len(self.words)))
        for start in range(0, len(todo), step):
            self._compute(todo[start : start + step], k)
        return {r: self._cache[r] for r in wanted}

    def _compute(self, chunk: list[int], k: int) -> None:
        queries = [r for r in chunk if self.position[r] >= 0]
        for row in chunk:
            self._cache[row] = np.zeros(0, dtype=np.int32)
        for cjk in (False, True):
            group = [r for r in queries if bool(self.cjk[r]) == cjk]
            pool_rows, pool = (self._cjk_rows, self._cjk_unit) if cjk else (self.rows, self.unit)
            if not group or not len(pool_rows):
                continue
            scores = self.unit[torch.from_numpy(self.position[group])] @ pool.T  # cosine
            top = torch.topk(scores, min(k + SPARE, len(pool_rows)), dim=1).indices
            for row, found in zip(group, pool_rows[top.numpy()], strict=True):
                own = self.words[row].lower()  # the word itself and its case variants
                keep = [j for j in found.tolist() if self.words[j].lower() != own][:k]
                self._cache[row] = np.asarray(keep, dtype=np.int32)


def load_word_vectors(path: str | Path, max_vectors: int | None = None) -> WordVectors:
    """Read a word-vector text file: GloVe (`word v1 ... vD` a line) or word2vec's text format
    (the same after an `N D` header line); plain or gzip-compressed. `max_vectors`: read only
    the first N words (the files list frequent words first). A repeated word keeps its first
    vector; an entry whose word holds spaces (a few in GloVe 840B) is left out. A line with
    the wrong number of values, or a value that is not a finite number, is an error naming
    file:line."""
    path = Path(path)
    if not path.is_file():
        state = "is a directory" if path.is_dir() else "not found"
        raise UserError(f"augment.word_vectors {path}: {state}; give a GloVe or word2vec text file")
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    words: list[str] = []
    seen: set[str] = set()
    blocks: list[np.ndarray] = []
    pending: list[list[str]] = []
    pending_lines: list[int] = []
    dim: int | None = None
    first = 0  # the line that fixed the dimension (0: the word2vec header)
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(
                    f"{path}:{lineno}: not UTF-8 text; word vectors must be a text file (GloVe, "
                    "or word2vec saved with binary=False)"
                ) from None
            parts = line.split()
            if not parts:
                continue
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                dim = int(parts[1])  # word2vec header: N D
                if dim < 1:
                    raise UserError(f"{path}:1: the header says {dim} dimensions")
                continue
            if dim is None:
                dim, first = len(parts) - 1, lineno
                if dim < 1:
                    raise UserError(
                        f"{path}:{lineno}: expected a word and its vector, got {line!r}"
                    )
            if len(parts) != dim + 1:
                if len(parts) > dim + 1 and not any(_is_number(p) for p in parts[1:-dim]):
                    continue  # a word with spaces in it: never a word of BERT's basic tokeniser
                raise UserError(_dimension_error(path, lineno, len(parts) - 1, dim, first))
            if parts[0] in seen:
                continue
            seen.add(parts[0])
            words.append(parts[0])
            pending.append(parts[1:])
            pending_lines.append(lineno)
            if len(pending) >= _VECTOR_LINES_PER_CHUNK:
                blocks.append(_to_floats(path, pending, pending_lines))
                pending, pending_lines = [], []
            if max_vectors is not None and len(words) >= max_vectors:
                break
    if pending:
        blocks.append(_to_floats(path, pending, pending_lines))
    if not words or dim is None:
        raise UserError(f"{path}: no word vectors in it (expected `word v1 ... vD` lines)")
    return WordVectors(words, np.concatenate(blocks), source=str(path))


def _dimension_error(path: Path, lineno: int, got: int, dim: int, first: int) -> str:
    if first == 0:
        return (
            f"{path}:{lineno}: {got} values, but the word2vec header (line 1) says {dim} "
            f"dimensions; every line must be a word and {dim} numbers"
        )
    return (
        f"{path}:{lineno}: {got} values, but line {first} has {dim}: vectors of mixed dimensions "
        f"or a broken line; every line must be a word and {dim} numbers"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _to_floats(path: Path, rows: list[list[str]], lines: list[int]) -> np.ndarray:
    try:
        out = np.array(rows, dtype=np.float32)
    except ValueError:
        for values, lineno in zip(rows, lines, strict=True):
            bad = next((v for v in values if not _is_number(v)), None)
            if bad is not None:
                raise UserError(f"{path}:{lineno}: {bad!r} is not a number") from None
        raise
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        lineno = lines[int(np.argmin(finite))]
        raise UserError(f"{path}:{lineno}: the vector holds a value that is not finite (nan, inf)")
    return out
