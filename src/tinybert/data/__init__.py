"""tinybert.data: task files -> examples -> token ids -> padded batches; corpora; metrics.

task = get_task("sst2")                       # the registry (tasks.py): GLUE, CLUE, JSONL/CSV
examples, n_skipped = read_examples(task, "glue/SST-2/train.tsv")
tok = load_tokenizer("models/teacher")        # the teacher's own tokenizer; tok.specials
train = encode_examples(tok, examples, task, max_seq_length=128)
batches = batch_order(train.lengths, 32, shuffle=True, seed=0, epoch=0, group_by_length=True)
batch = collate([train[i] for i in batches[0]], pad_id=tokenizer_info(tok)[1])

load_task_data(cfg.task, model_dir, seed) does all of that for a configured task (task_data.py).
"""

from tinybert.data.base import Example, TaskSpec
from tinybert.data.batching import batch_order, collate
from tinybert.data.tasks import KNOWN_TASKS, get_task, read_examples
from tinybert.data.tokenization import (
    ModelTokenizer,
    Specials,
    TaskDataset,
    Template,
    encode_examples,
    encode_texts,
    load_tokenizer,
    model_token_types,
    specials_of,
    tokenizer_info,
)

__all__ = [
    "KNOWN_TASKS",
    "Example",
    "ModelTokenizer",
    "Specials",
    "Template",
    "TaskDataset",
    "TaskSpec",
    "batch_order",
    "collate",
    "encode_examples",
    "encode_texts",
    "get_task",
    "load_tokenizer",
    "model_token_types",
    "read_examples",
    "specials_of",
    "tokenizer_info",
]
