"""tinybert.model: a readable BERT with HF-identical parameter names, HF directory I/O, and
teachers of other families (RoBERTa, XLM-R, ELECTRA, DeBERTa, ModernBERT, DistilBERT)."""

from tinybert.families import FAMILIES, Family
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
from tinybert.model.teachers import (
    HFModel,
    Teacher,
    any_saved_head,
    load_any_model,
    model_family,
    save_any_model,
)

__all__ = [
    "FAMILIES",
    "Family",
    "HFModel",
    "Teacher",
    "any_saved_head",
    "load_any_model",
    "model_family",
    "save_any_model",
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
