"""Words as TinyBERT's augmentation sees them: BERT's basic tokenisation with character spans,
vocabulary entries that are never candidates, and keeping a replaced word's case.

With a masked LM whose tokenizer is not WordPiece (byte-level BPE: RoBERTa, ModernBERT;
SentencePiece-style Unigram: XLM-R, DeBERTa-v3), a word is what that tokenizer's pre-tokenizer
splits off (`tokenizer_words`), and a whole-word token is one that starts with its word mark,
"Ġ" or "▁" (`word_marker`, `whole_word`): the other pieces continue a word and are never
candidates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import PreTokenizedString, models, normalizers, pre_tokenizers

from tinybert.errors import UserError

# BERT's basic tokenisation without lowercasing or accent stripping, so that each word's span
# in the original text is known: clean_text, CJK characters split off, whitespace/punctuation.
_NORMALIZER = normalizers.BertNormalizer(
    clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
)
_PRE_TOKENIZER = pre_tokenizers.BertPreTokenizer()
# Never a candidate: [CLS]-style specials and [unusedN], <unk>/</s>, ##continuation pieces.
_SPECIAL_WORD = re.compile(r"\[[^\[\]\s]*\]|<[^<>\s]*>|##.*", re.S)


def split_words(text: str) -> list[tuple[int, int]]:
    """The words of `text` as BERT's basic tokenizer splits them (before WordPiece), as
    (start, end) character spans into `text`: "It's 北京!" -> It, ', s, 北, 京, !."""
    pre = PreTokenizedString(text)
    pre.normalize(lambda normalized: _NORMALIZER.normalize(normalized))
    _PRE_TOKENIZER.pre_tokenize(pre)
    return [
        span for _, span, _ in pre.get_splits(offset_referential="original", offset_type="char")
    ]


def is_special_word(word: str) -> bool:
    """[CLS], [unused3], <unk>, </s>, ##ing: vocabulary entries that are never candidates."""
    return _SPECIAL_WORD.fullmatch(word) is not None


def is_cjk_char(word: str) -> bool:
    """One CJK ideograph (the ranges of BERT's basic tokenizer, which makes each one a word)."""
    if len(word) != 1:
        return False
    cp = ord(word)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def match_case(word: str, candidate: str) -> str:
    """`candidate` in the case of `word`: APPLE -> PEAR, Apple -> Pear, apple -> pear (as is)."""
    if len(word) > 1 and word.isupper():
        return candidate.upper()
    if word[:1].isupper():
        return candidate[:1].upper() + candidate[1:]
    return candidate


# --------------------------------------------------------------------------- BPE / Unigram words


def word_marker(tokenizer: Any) -> str | None:
    """The mark that starts a word-initial token: "Ġ" for a byte-level pre-tokenizer (BPE),
    Metaspace's replacement ("▁") for SentencePiece-style tokenizers; None for WordPiece, whose
    words are BERT's and whose continuation pieces start with "##"."""
    if isinstance(tokenizer.model, models.WordPiece):
        return None
    pre = tokenizer.pre_tokenizer  # its JSON only: not the whole (large) vocabulary's
    for part in _parts(None if pre is None else json.loads(pre.__getstate__())):
        if part.get("type") == "ByteLevel":
            return "Ġ"
        if part.get("type") == "Metaspace":
            return str(part.get("replacement", "▁"))
    raise UserError(
        "the masked LM's tokenizer is neither WordPiece nor byte-level BPE nor SentencePiece "
        "(Metaspace): its word-start tokens are unknown; augment with word vectors only"
    )


def _parts(pre: Any) -> list[dict]:
    if not isinstance(pre, dict):
        return []
    if pre.get("type") == "Sequence":
        return [p for sub in pre.get("pretokenizers", []) for p in _parts(sub)]
    return [pre]


def whole_word(tokenizer: Any, token_id: int, marker: str) -> str | None:
    """The word a whole-word token stands for ("Ġgood" -> "good", "▁good" -> "good"), or None
    for a continuation piece, a bare mark, a special token or a partial UTF-8 byte."""
    token = tokenizer.id_to_token(token_id)
    if token is None or not is_word_token(token, marker):
        return None
    word = tokenizer.decode([token_id], skip_special_tokens=True).strip()
    if not word or "\ufffd" in word or any(c.isspace() for c in word):
        return None
    return word


def is_word_token(token: str, marker: str) -> bool:
    """A vocabulary entry that starts a word and is more than the mark (and no special)."""
    return token.startswith(marker) and len(token) > len(marker) and not is_special_word(token)


@dataclass(frozen=True)
class TokenWords:
    """One text as a BPE/Unigram tokenizer sees it: its token ids (no special tokens) and its
    words (the pre-tokenizer's splits): their (start, end) character spans, whitespace trimmed,
    and the tokens of each (ids[first[i] : first[i] + count[i]])."""

    ids: tuple[int, ...]
    spans: list[tuple[int, int]]
    first: list[int]
    count: list[int]


def tokenizer_words(tokenizer: Any, texts: Sequence[str]) -> list[TokenWords]:
    """`texts` tokenised in one batch, grouped into words by the tokenizer's own word ids."""
    out = []
    for text, enc in zip(texts, tokenizer.encode_batch(list(texts), add_special_tokens=False),
                         strict=True):  # fmt: skip
        spans, first, count = [], [], []
        groups: list[list[int]] = []
        last = object()
        for i, word in enumerate(enc.word_ids):
            if word is None or word != last:
                groups.append([])
            groups[-1].append(i)
            last = word
        for group in groups:
            start = min(enc.offsets[i][0] for i in group)
            end = max(enc.offsets[i][1] for i in group)
            while start < end and text[start].isspace():  # "Ġgood" covers " good"
                start += 1
            while end > start and text[end - 1].isspace():
                end -= 1
            if start < end:  # a whitespace-only split ("▁") is no word; its tokens stay
                spans.append((start, end))
                first.append(group[0])
                count.append(len(group))
        out.append(TokenWords(tuple(enc.ids), spans, first, count))
    return out
