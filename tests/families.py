"""Tiny random teachers of every supported model type, saved as Hugging Face directories.

Each is built with transformers from a tiny config (2-4 layers, hidden 32), with a tokenizer
trained on fixture text by the `tokenizers` library in the family's own style (WordPiece for
BERT/ELECTRA/DistilBERT, byte-level BPE for RoBERTa/ModernBERT, SentencePiece-style Unigram for
XLM-R/DeBERTa-v3), its own special tokens and pair template. Nothing is downloaded.

    path = write_teacher(tmp_path / "roberta", "roberta", head="sequence", num_labels=2)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from tests.conftest import FILLER, NEGATIVE, POSITIVE, corpus_text, sst2_rows

MODEL_TYPES = (
    "bert",
    "roberta",
    "xlm-roberta",
    "electra",
    "deberta-v2",
    "modernbert",
    "distilbert",
)


@dataclass(frozen=True)
class Style:
    """A family's tokenizer: its kind and special tokens (cls, sep, pad, unk, mask)."""

    kind: str  # "wordpiece" | "bpe" | "unigram"
    cls: str
    sep: str
    pad: str
    unk: str
    mask: str
    pair_sep: int  # separators between the segments of a pair: 1 (BERT) or 2 (RoBERTa)
    tokenizer_class: str


_BERT = Style("wordpiece", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", 1, "BertTokenizer")
STYLES = {
    "bert": _BERT,
    "electra": Style(
        "wordpiece", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", 1, "ElectraTokenizer"
    ),
    "distilbert": Style(
        "wordpiece", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", 1, "DistilBertTokenizer"
    ),
    "roberta": Style("bpe", "<s>", "</s>", "<pad>", "<unk>", "<mask>", 2, "RobertaTokenizer"),
    "modernbert": Style(
        "bpe", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", 1, "PreTrainedTokenizerFast"
    ),
    "xlm-roberta": Style(
        "unigram", "<s>", "</s>", "<pad>", "<unk>", "<mask>", 2, "XLMRobertaTokenizer"
    ),
    "deberta-v2": Style(
        "unigram", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", 1, "DebertaV2Tokenizer"
    ),
}
# Families whose models read segment ids (token_type_ids) at all.
TOKEN_TYPES = {
    "bert": True,
    "electra": True,
    "roberta": False,
    "xlm-roberta": False,
    "distilbert": False,
    "modernbert": False,
    "deberta-v2": False,
}


def training_text() -> list[str]:
    """The fixture sentences (SST-2 style rows and corpus paragraphs) a tokenizer learns from."""
    rows = [s for s, _ in sst2_rows(200, seed=5)]
    words = " ".join(POSITIVE + NEGATIVE + FILLER)
    return rows + corpus_text(20, seed=3).splitlines() + [words, words.upper()]


def train_tokenizer(model_type: str, vocab_size: int = 200) -> Tokenizer:
    """A tokenizer in `model_type`'s style, trained on training_text(), with the family's pair template."""
    style = STYLES[model_type]
    specials = [style.pad, style.unk, style.cls, style.sep, style.mask]
    if style.cls == "<s>":  # RoBERTa's and XLM-R's own order: <s> 0, <pad> 1, </s> 2, <unk> 3
        specials = [style.cls, style.pad, style.sep, style.unk, style.mask]
    if style.kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=style.unk))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    elif style.kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size + 256,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=specials, unk_token=style.unk
        )
    tok.train_from_iterator(training_text(), trainer)
    cls, sep = style.cls, style.sep
    between = f"{sep} {sep}" if style.pair_sep == 2 else sep
    # segment ids 1 on the second segment where the family's tokenizer writes them
    b_type = ":1" if model_type in ("bert", "electra", "deberta-v2") else ""
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {between} $B{b_type} {sep}{b_type}",
        special_tokens=[(t, tok.token_to_id(t)) for t in (cls, sep)],
    )
    return tok


def write_tokenizer(directory: Path, model_type: str) -> Tokenizer:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json, as save_pretrained
    writes them for a fast tokenizer of this family."""
    style = STYLES[model_type]
    tok = train_tokenizer(model_type)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    names = {
        "cls_token": style.cls,
        "sep_token": style.sep,
        "pad_token": style.pad,
        "unk_token": style.unk,
        "mask_token": style.mask,
    }
    if style.kind != "wordpiece":
        names |= {"bos_token": style.cls, "eos_token": style.sep}
    config = {"tokenizer_class": style.tokenizer_class, "model_max_length": 64, **names}
    if not TOKEN_TYPES[model_type]:
        config["model_input_names"] = ["input_ids", "attention_mask"]
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps(names, indent=2))
    return tok


def tiny_config(model_type: str, tok: Tokenizer, num_labels: int = 2, layers: int = 2):
    """A transformers config of `model_type`, hidden 32, `layers` layers."""
    from transformers import AutoConfig

    vocab = tok.get_vocab_size(with_added_tokens=True)
    style = STYLES[model_type]
    ids = {
        "pad_token_id": tok.token_to_id(style.pad),
        "bos_token_id": tok.token_to_id(style.cls),
        "eos_token_id": tok.token_to_id(style.sep),
    }
    common = dict(vocab_size=vocab, num_labels=num_labels, **ids)
    if model_type == "distilbert":
        shape = dict(dim=32, n_layers=layers, n_heads=4, hidden_dim=37, max_position_embeddings=64)
    elif model_type == "modernbert":
        shape = dict(
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=40,
            max_position_embeddings=64,
            global_attn_every_n_layers=2,
            local_attention=8,  # a window shorter than the test sentences: it masks something
            cls_token_id=ids["bos_token_id"],
            sep_token_id=ids["eos_token_id"],
        )
    else:
        shape = dict(
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=66 if model_type in ("roberta", "xlm-roberta") else 64,
        )
        if model_type == "roberta" or model_type == "xlm-roberta":
            shape["type_vocab_size"] = 1
        if model_type == "electra":
            shape["embedding_size"] = 32
        if model_type == "deberta-v2":
            shape |= dict(
                type_vocab_size=0,
                relative_attention=True,
                pos_att_type=["p2c", "c2p"],
                max_relative_positions=-1,
                position_buckets=16,
                norm_rel_ebd="layer_norm",
                share_att_key=True,
                position_biased_input=False,
            )
    return AutoConfig.for_model(model_type, **common, **shape)


HEAD_CLASSES = {
    "sequence": "AutoModelForSequenceClassification",
    "token": "AutoModelForTokenClassification",
    "encoder": "AutoModel",
    "mlm": "AutoModelForMaskedLM",
}


def write_teacher(
    directory: Path,
    model_type: str,
    head: str = "sequence",
    num_labels: int = 2,
    layers: int = 2,
    seed: int = 0,
    **overrides: object,
) -> Path:
    """A random `model_type` model with `head` (sequence, token, encoder, mlm) saved with
    save_pretrained (safetensors) and its trained tokenizer; `overrides` set config keys."""
    import transformers

    tok = write_tokenizer(directory, model_type)
    config = tiny_config(model_type, tok, num_labels=num_labels, layers=layers)
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = getattr(transformers, HEAD_CLASSES[head]).from_config(config)
    model.save_pretrained(directory)
    return directory
