"""Each command's own options (beyond --config and key=value overrides, which the parser adds
to every command that reads the config), and the longer --help texts after them (export,
predict). The command registry (commands.py) names, per command, the function here that adds
them.

No imports beyond argparse: `tinybert --help` answers before anything heavy loads.
"""

from __future__ import annotations

import argparse


def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        help="saved model directory, or an export folder (model.onnx) to evaluate on ONNX Runtime",
    )
    p.add_argument(
        "--onnx",
        metavar="FILE",
        help="evaluate this ONNX file (config.json and tokenizer from --model, else its folder)",
    )
    add_backend_args(p)
    p.add_argument(
        "--output", help="JSON file for the metrics (default: <model>/eval_results.json)"
    )


def add_backend_args(p: argparse.ArgumentParser, fastest: bool = False) -> None:
    p.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx", *(["fastest"] if fastest else [])],
        default="auto",
        help="auto (default): ONNX Runtime for an export folder without PyTorch weights or "
        "with --onnx, else PyTorch"
        + (
            "; fastest: the backend and precision `tinybert benchmark` measured fastest at "
            "the nearest batch size (<model>/speed.json)"
            if fastest
            else ""
        ),
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "int8"],
        default="auto",
        help="auto (default): torch bf16 where this CPU has AVX512-BF16/AMX (or a bf16 GPU), "
        "else fp32; ONNX fp32. torch: fp32 or bf16 (autocast); onnx: fp32 "
        "(model_optimized.onnx if exported, else model.onnx) or int8 (model_int8.onnx)",
    )


EXPORT_MORE = (
    "With --config (or overrides) the task's dev data is also used: the check runs on it, "
    "and the dev metrics of PyTorch, ONNX fp32 and int8 are reported.\n\n"
)


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="saved model directory (config.json, weights)")
    p.add_argument(
        "--output", help="export folder (default: <model>/onnx); replaced if it is an export"
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")
    p.add_argument(
        "--optimize",
        action="store_true",
        help="also write model_optimized.onnx: ONNX Runtime's BERT fusions (fused Attention, "
        "EmbedLayerNormalization, BiasGelu)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write model_int8.onnx: dynamic int8 quantisation (per-channel weights)",
    )


PREDICT_MORE = (
    "input formats (--format, default from the extension; stdin: text):\n"
    "  text   one input a line: sentence, or sentence<TAB>pair\n"
    "  tsv    as text; a first line naming a text column (text, sentence, sentence1, "
    "question, ...) is a header,\n"
    "         and only the text (and pair: text_pair, sentence2, ...) columns are read;\n"
    "         every official GLUE file (train, dev, test; CoLA without header) reads as is\n"
    "  csv    header row as for tsv, CSV quoting\n"
    '  jsonl  {"text": ..., "text_pair": ... (optional)} a line\n'
    'output: {"line": N, "label": ..., "probs": {label: p, ...}} a line ({"value": x} for '
    "regression)\n"
    "bad input stops with file:line and exit 2, or with --skip-bad is reported and gets "
    '{"line": N, "error": ...};\n'
    "input of which no line can be read stops with exit 2 either way\n"
)


def add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", default="-", help="input file (default or '-': stdin)")
    p.add_argument(
        "--model", required=True, help="saved model directory, or an export folder (model.onnx)"
    )
    p.add_argument("--onnx", metavar="FILE", help="run this ONNX file (implies --backend onnx)")
    add_backend_args(p, fastest=True)
    p.add_argument("--output", "-o", help="JSONL file to write (default: stdout)")
    p.add_argument("--format", choices=["auto", "text", "tsv", "csv", "jsonl"], default="auto")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass")
    p.add_argument(
        "--max-seq-length",
        type=int,
        help="tokens per input incl. [CLS]/[SEP]; longer inputs are truncated (pairs longest "
        "first). Default 128, or the model's max_position_embeddings if smaller",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="report a bad line on stderr, write an error record for it and go on",
    )
    p.add_argument(
        "--allow-smaller-vocab",
        action="store_true",
        help="accept a vocab.txt with fewer tokens than the model's embedding table (refused "
        "by default: a truncated vocabulary turns words into [UNK])",
    )
    p.add_argument("--device", default="cpu", help="torch backend: cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, help="CPU threads (default: the library's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_prepare_corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_GLOB", help="text files or globs")
    p.add_argument("--tokenizer", required=True, help="model directory whose tokenizer to use")
    p.add_argument("--output", required=True, help="folder for the shards and meta.json")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--short-seq-prob", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--shard-rows", type=int, default=1 << 20, help="sequences per shard file")
    p.add_argument(
        "--tfrecord",
        action="store_true",
        help="the inputs are seed TFRecord folders (schema.json): convert them to shards",
    )


def add_benchmark_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="saved model directory")


def add_init_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vocab", required=True, help="WordPiece vocab.txt (one token a line)")
    p.add_argument("--output", required=True, help="folder for the new model")
    p.add_argument("--cased", action="store_true", help="do not lowercase text")


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run's output_dir")
    p.add_argument("--output", help="folder for the report (default: RUN_DIR/report)")


def add_convert_mindspore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="the MindSpore .ckpt file")
    p.add_argument("--output", required=True, help="folder for the converted model")
    p.add_argument("--vocab", required=True, help="the vocab.txt the model was trained with")
    p.add_argument(
        "--labels", help="class names in index order, comma-separated (default: the task's)"
    )
    p.add_argument("--task", help="task name whose labels to use (sst2, mnli, qnli, cluener ...)")
    p.add_argument(
        "--seed-config",
        metavar="YAML",
        help="the seed's gd_config.yaml / td_config_*.yaml: its net cfg is checked against "
        "the tensors (and gives the number of attention heads)",
    )
    p.add_argument(
        "--num-attention-heads",
        type=int,
        help="attention heads (not in the tensors); default: --seed-config's, else 12 where it "
        "divides the hidden size, else hidden/64",
    )
    p.add_argument(
        "--head",
        choices=["sequence", "token"],
        help="what a dense_1 head is: sequence classification or NER (token); default: "
        "--seed-config's task_type, else the --task's kind, else sequence",
    )
    p.add_argument("--prefix", help="the network to convert where the file holds several")
    p.add_argument(
        "--classifier-activation",
        choices=["relu", "none"],
        default="relu",
        help="the seed's TD heads compute dense_1(relu(x)) (default relu); none for a model "
        "zoo BERT fine-tuned without it",
    )


def add_convert_mindspore_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("seed_config", metavar="SEED_YAML", help="the seed's YAML config")
    p.add_argument(
        "--task",
        help="the task (sst2, mnli, qnli, cluener, tnews ...); default: the file's task_name, "
        "else its name (td_config_sst2.yaml -> sst2)",
    )
    p.add_argument("--output", help="file to write (default: stdout)")
