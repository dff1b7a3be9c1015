"""tinybert: two-stage transformer distillation of BERT into TinyBERT students."""

__version__ = "0.1.0"
