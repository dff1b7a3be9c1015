"""tinybert.model: a readable BERT with HF-identical parameter names, and HF directory I/O."""

from tinybert.model.bert import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    BertOutput,
)
from tinybert.model.hub import LoadReport, load_config, load_model, save_model, saved_head

__all__ = [
    "BertConfig",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "BertOutput",
    "LoadReport",
    "load_config",
    "load_model",
    "save_model",
    "saved_head",
]
