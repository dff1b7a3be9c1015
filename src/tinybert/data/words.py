"""Words as TinyBERT's augmentation sees them: BERT's basic tokenisation with character spans,
vocabulary entries that are never candidates, and keeping a replaced word's case."""

from __future__ import annotations

import re

from tokenizers import PreTokenizedString, normalizers, pre_tokenizers

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
