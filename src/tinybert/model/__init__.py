"""tinybert.model: a readable BERT with HF-identical parameter names, and HF directory I/O."""

from tinybert.model.bert import (
    AnyBertModel,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    BertOutput,
    BertTaskModel,
)
from tinybert.model.hub import LoadReport, load_model, load_model_config, save_model, saved_head

__all__ = [
    "AnyBertModel",
    "BertConfig",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "BertOutput",
    "BertTaskModel",
    "LoadReport",
    "load_model_config",
    "load_model",
    "save_model",
    "saved_head",
]
