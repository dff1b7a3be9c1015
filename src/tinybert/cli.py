"""The `tinybert` command line.

    tinybert run          --config configs/demo.yaml     # every stage below, wired, + report
    tinybert report       runs/demo                      # rebuild runs/demo/report from files
    tinybert prepare-corpus wiki/*.txt.gz --tokenizer MODEL_DIR --output corpus/
    tinybert general-distill --config configs/general.yaml teacher=MODEL_DIR corpus.path=corpus/
    tinybert finetune     --config configs/sst2.yaml [key.sub=value ...]
    tinybert task-distill --config configs/sst2.yaml [key.sub=value ...]
    tinybert evaluate     --config configs/sst2.yaml --model runs/sst2/student/prediction/best
    tinybert export       --model runs/sst2/student/prediction/best --int8 --optimize \
                          [--config configs/sst2.yaml]     # -> .../best/onnx
    tinybert evaluate     --config configs/sst2.yaml --model .../best/onnx [--precision int8]
    tinybert predict      --model .../best/onnx sentences.tsv [--output out.jsonl]
    tinybert benchmark    --config configs/sst2.yaml --model .../best   # -> .../best/speed.json
    tinybert augment      --config configs/sst2.yaml augment.word_vectors=glove.txt.gz \
                          [augment.mlm=bert-base-uncased/]   # -> <output_dir>/augmented/
    tinybert show-config  --config configs/sst2.yaml [key.sub=value ...]
    tinybert convert-mindspore tinybert_td.ckpt --vocab vocab.txt --output DIR [--task sst2]
    tinybert convert-mindspore-config td_config_sst2.yaml [--output configs/mine.yaml]

Every training command also runs under `torchrun --nproc_per_node N tinybert ...` (DDP).
Mistakes a user can make end in one `error: ...` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tinybert.config import RunConfig, dump_yaml, load_run_config
from tinybert.errors import UserError
from tinybert.paths import check_output_dir, check_output_file

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def config_keys(defaults: DataclassInstance | None = None, prefix: str = "") -> list[str]:
    """Every dotted config key with its default, for --help. Sections take their defaults from
    the enclosing object (e.g. `general.*` differs from `finetune.*`)."""
    defaults = RunConfig() if defaults is None else defaults
    lines = []
    for f in dataclasses.fields(defaults):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            lines += config_keys(value, prefix + f.name + ".")
        else:
            lines.append(f"  {prefix + f.name} = {value!r}")
    return lines


EPILOG = (
    "overrides: any config key as key.sub=value (YAML values: 1e-4, [2, 4, 6], null).\n"
    "Relative paths are relative to the current directory. Config keys and defaults:\n"
)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="config file (repeat to merge several; later files win)",
    )
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinybert",
        description="Distil a fine-tuned BERT teacher into a small TinyBERT student.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    epilog = EPILOG + "\n".join(config_keys())
    _add_prepare_corpus(sub)
    helps = {
        "run": "run.stages in order (prepare-corpus, general-distill, finetune, augment, "
        "task-distill, evaluate, export, benchmark, report), each stage's output wired to the "
        "next one's input; finished stages are skipped, an interrupted run continues. Exit 3: "
        "the final student is no better than the dev set's trivial baseline (accept it: "
        "run.allow_trivial=true); exit 4: the fine-tuned teacher is not, so the run stopped "
        "before task-distill (go on: run.allow_weak_teacher=true)",
        "general-distill": "general distillation of a bare student on a prepared corpus; "
        "writes <output_dir>/general",
        "finetune": "fine-tune a BERT directory on a task (the teacher); writes <output_dir>/teacher",
        "task-distill": "TD phase 1 (intermediate layers) and/or phase 2 (prediction layer); "
        "writes <output_dir>/student",
        "evaluate": "evaluate a saved model (PyTorch) or an export folder (ONNX Runtime) on the "
        "task's dev split(s), beside the trivial baseline; prints and writes JSON",
        "augment": "TinyBERT's data augmentation of the task's training split (augment.*: "
        "masked-LM and word-vector candidates); writes <output_dir>/augmented/<train file> in "
        "the task's format, for task.train_file",
        "show-config": "print the merged, checked configuration as YAML",
        "benchmark": "inference speed (sequences/s) of a saved model on the task's dev "
        "sentences: PyTorch fp32 (and bf16 where the CPU has AVX512-BF16/AMX), and ONNX Runtime "
        "fp32/int8 where it has an export (DIR/onnx), at each benchmark.batch_sizes, and the "
        "fastest per batch size; writes <model>/speed.json",
        "init-model": "write a randomly initialised BERT of shape student.* with a given "
        "vocabulary (a teacher to fine-tune from scratch where no pre-trained one exists)",
    }
    for name, text in helps.items():
        p = sub.add_parser(
            name,
            help=text,
            description=text,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_config_args(p)
        if name == "evaluate":
            _add_evaluate_args(p)
        if name == "benchmark":
            p.add_argument("--model", required=True, help="saved model directory")
        if name == "init-model":
            p.add_argument("--vocab", required=True, help="WordPiece vocab.txt (one token a line)")
            p.add_argument("--output", required=True, help="folder for the new model")
            p.add_argument("--cased", action="store_true", help="do not lowercase text")
    _add_export(sub, epilog)
    _add_predict(sub)
    text = (
        "rebuild <run dir>/report (report.md, report.html, plots) from the files a run wrote, "
        "running no model; says which parts are missing"
    )
    p = sub.add_parser("report", help=text, description=text)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run's output_dir")
    p.add_argument("--output", help="folder for the report (default: RUN_DIR/report)")
    _add_convert(sub)
    return parser


def _add_convert(sub: argparse._SubParsersAction) -> None:
    text = (
        "convert a MindSpore TinyBERT checkpoint (.ckpt of the seed system: GD student, TD "
        "classification or NER model, BERT teacher) into a Hugging Face directory; MindSpore "
        "is not needed"
    )
    p = sub.add_parser("convert-mindspore", help=text, description=text)
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
    text = (
        "turn a seed td_config_*.yaml or gd_config.yaml into a tinybert YAML (keys with no "
        "meaning here are listed in a comment at its top)"
    )
    p = sub.add_parser("convert-mindspore-config", help=text, description=text)
    p.add_argument("seed_config", metavar="SEED_YAML", help="the seed's YAML config")
    p.add_argument(
        "--task",
        help="the task (sst2, mnli, qnli, cluener, tnews ...); default: the file's task_name, "
        "else its name (td_config_sst2.yaml -> sst2)",
    )
    p.add_argument("--output", help="file to write (default: stdout)")


def _add_evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        help="saved model directory, or an export folder (model.onnx) to evaluate on ONNX Runtime",
    )
    p.add_argument(
        "--onnx",
        metavar="FILE",
        help="evaluate this ONNX file (config.json and tokenizer from --model, else its folder)",
    )
    _add_backend_args(p)
    p.add_argument(
        "--output", help="JSON file for the metrics (default: <model>/eval_results.json)"
    )


def _add_backend_args(p: argparse.ArgumentParser, fastest: bool = False) -> None:
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


def _add_export(sub: argparse._SubParsersAction, epilog: str) -> None:
    text = (
        "export a saved model to ONNX (opset >= 17, dynamic batch and sequence axes) with its "
        "config and tokenizer; checks the export against PyTorch (max logit difference <= 1e-4)"
    )
    more = (
        "With --config (or overrides) the task's dev data is also used: the check runs on it, "
        "and the dev metrics of PyTorch, ONNX fp32 and int8 are reported.\n\n"
    )
    p = sub.add_parser(
        "export",
        help=text,
        description=text,
        epilog=more + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_args(p)
    p.add_argument("--model", required=True, help="saved model directory (config.json, weights)")
    p.add_argument(
        "--output", help="export folder (default: <model>/onnx); replaced if it is an export"
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")
    p.add_argument(
        "--optimize",
        action="store_true",
        help="also write model_optimized.onnx: ONNX Runtime's BERT fusions (fused Attention, "
        "EmbedLayerNormalization, SkipLayerNormalization, BiasGelu)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write model_int8.onnx: dynamic int8 quantisation (per-channel weights)",
    )


def _add_predict(sub: argparse._SubParsersAction) -> None:
    text = "label sentences or sentence pairs from a file or stdin; writes JSONL in input order"
    more = (
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
    p = sub.add_parser(
        "predict",
        help=text,
        description=text,
        epilog=more,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="?", default="-", help="input file (default or '-': stdin)")
    p.add_argument(
        "--model", required=True, help="saved model directory, or an export folder (model.onnx)"
    )
    p.add_argument("--onnx", metavar="FILE", help="run this ONNX file (implies --backend onnx)")
    _add_backend_args(p, fastest=True)
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


def _add_prepare_corpus(sub: argparse._SubParsersAction) -> None:
    text = (
        "tokenise raw text (plain, WikiExtractor; .gz/.bz2) into packed, memory-mapped "
        "sequences for general-distill"
    )
    p = sub.add_parser("prepare-corpus", help=text, description=text)
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


def _prepare_corpus(args: argparse.Namespace) -> None:
    from tinybert.data.corpus import PackingOptions, convert_tfrecord, prepare_corpus

    check_output_dir(Path(args.output), "--output")
    options = PackingOptions(
        max_seq_length=args.max_seq_length,
        short_seq_prob=args.short_seq_prob,
        seed=args.seed,
        shard_rows=args.shard_rows,
    )
    if args.tfrecord:
        stats = convert_tfrecord(args.inputs, args.tokenizer, args.output, options)
    else:
        stats = prepare_corpus(args.inputs, args.tokenizer, args.output, options)
    rate = stats.bytes_read / max(stats.seconds, 1e-9) / 1e6
    print(
        f"{stats.sequences} sequences, {stats.tokens} tokens from {stats.documents} documents "
        f"({stats.bytes_read / 1e6:.1f} MB in {stats.seconds:.1f} s, {rate:.2f} MB/s) -> "
        f"{args.output}"
    )
    for name, bad in stats.undecodable.items():
        print(
            f"  {name}: skipped {bad['lines']} lines ({bad['bytes']} bytes) that are not UTF-8, "
            f"the first at line {bad['first_line']} (counted in meta.json; save the file as "
            "UTF-8 to keep them)"
        )


def check_device(name: str, what: str) -> None:
    """A device this machine has: cpu, cuda[:N] with a GPU present (auto allowed in configs)."""
    from tinybert.train.distributed import resolve_device

    try:
        resolve_device(name)
    except UserError as e:
        raise UserError(f"{what}: {e}") from None


def _check_output_dir(cfg: RunConfig, stage: str) -> None:
    """output_dir must be a folder, and it and the stage's folder in it (a run resumed, maybe
    someone else's) writable. Each stage writes its <stage>/config.yaml itself, once it trains:
    not when it is skipped as finished, nor when its resume is refused."""
    check_output_dir(Path(cfg.output_dir), "output_dir")
    check_output_dir(Path(cfg.output_dir) / stage, "output_dir")


def _export(args: argparse.Namespace) -> None:
    from tinybert.export.onnx import export_for_task
    from tinybert.export.recommend import recommendation_lines

    # A task given (config or overrides): check on, and score, its dev data.
    cfg = load_run_config(args.config, args.overrides) if args.config or args.overrides else None
    output = args.output or str(Path(args.model) / "onnx")
    check_output_dir(Path(output), "--output")  # writable, before the export's work
    result = export_for_task(args.model, output, cfg, args.opset, args.optimize, args.int8)
    print("\n".join(result.summary()))
    print("\n".join(recommendation_lines(args.model)))  # speed.json's fastest, or how to measure
    _refresh_card(args.model)


def _predict(args: argparse.Namespace) -> None:
    from tinybert.predict import PredictOptions, Predictor, fastest_backend, predict_file

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.output:
        inputs = (args.input, args.model, args.onnx)  # nothing it reads, nor in the model folder
        check_output_file(Path(args.output), "--output", inputs)
    check_device(args.device, "--device")
    backend, precision = args.backend, args.precision
    if backend == "fastest":  # speed.json's choice at this batch size, said on stderr
        backend, precision, why = fastest_backend(args.model, args.batch_size, precision)
        print(f"--backend fastest: {why}", file=sys.stderr)
    predictor = Predictor(
        args.model,
        backend,
        precision,
        args.onnx,
        args.device,
        args.threads,
        allow_smaller_vocab=args.allow_smaller_vocab,
    )
    options = PredictOptions(args.batch_size, args.max_seq_length, args.skip_bad)
    progress = False if args.no_progress else None
    stats = predict_file(predictor, args.input, args.output, args.format, options, progress)
    if stats.bad:
        print(
            f"{stats.bad} of {stats.inputs} inputs were bad (error records written)",
            file=sys.stderr,
        )


def _evaluate(args: argparse.Namespace, cfg: RunConfig) -> None:
    from tinybert.evaluate import check_output, default_output, run_evaluate, write_results

    if not args.model and not args.onnx:
        raise UserError("evaluate needs --model DIR (a saved model or an export folder)")
    if args.model and not Path(args.model).is_dir():
        raise UserError(f"--model {args.model}: no such model folder")
    model_dir = args.model or str(Path(args.onnx).parent)
    output = Path(args.output) if args.output else default_output(model_dir)
    check_output(cfg, output, model_dir, args.onnx, args.config)
    results = run_evaluate(cfg, model_dir, args.backend, args.precision, args.onnx)
    if results.get("skipped_rows"):
        print(
            f"skipped {results['skipped_rows']} malformed or blank dev rows (blank lines "
            "always, malformed ones with task.on_bad_row=skip); the metrics leave them out",
            file=sys.stderr,
        )
    print(write_results(results, output))  # stdout: the JSON alone (notices: stderr, or in it)
    _warn_if_trivial(results)
    if output == default_output(model_dir):
        _refresh_card(model_dir)


def _warn_if_trivial(results: dict) -> None:
    """A model no better than the dev set's trivial baseline is called that, on stderr."""
    from tinybert.report.files import is_trivial, trivial_sentence, verdict_of

    verdict = verdict_of(results)
    if is_trivial(verdict):
        print(f"warning: {trivial_sentence('model', verdict)}", file=sys.stderr)


def _refresh_card(*model_dirs: str | Path | None) -> None:
    """(Re)write the model card (README.md) of models a tinybert stage saved (a folder of a
    stage that logs metrics.jsonl, or one that already has our card) from the files beside
    them. Other folders (a downloaded teacher, an export folder) are left alone, and so is a
    README.md that tinybert did not write."""
    from tinybert.report.card import write_cards

    if os.environ.get("RANK", "0") != "0":  # under torchrun: the main process only
        return
    folders = [Path(d) for d in model_dirs if d is not None]
    write_cards(
        [
            d
            for d in folders
            if (d.parent / "metrics.jsonl").is_file() or (d / "README.md").is_file()
        ]
    )


def _benchmark(args: argparse.Namespace, cfg: RunConfig) -> None:
    from tinybert.speed import SPEED_FILE, SpeedOptions, run_benchmark, summary_lines

    if Path(args.model).is_dir():  # a missing one: the model loader's message
        check_output_file(Path(args.model) / SPEED_FILE, "benchmark result")  # before measuring
    result, path = run_benchmark(cfg, args.model, SpeedOptions.from_config(cfg.benchmark))
    print("\n".join(summary_lines(result)))
    print(f"-> {path}")
    _refresh_card(args.model)


def _report(args: argparse.Namespace) -> None:
    from tinybert.report import build_report

    if args.output:  # the default, RUN_DIR/report, is checked once the run is found
        check_output_dir(Path(args.output), "--output")
    built = build_report(args.run_dir, args.output)
    print(f"report: {built.md}\n        {built.html}")
    for line in built.missing:
        print(f"missing: {line}", file=sys.stderr)


def _convert_mindspore(args: argparse.Namespace) -> None:
    from tinybert.convert.mindspore import convert_checkpoint

    check_output_dir(Path(args.output), "--output")
    labels: list[str] | None = None
    head = args.head
    if args.task:
        from tinybert.data.tasks import get_task

        task = get_task(args.task)
        labels, head = list(task.labels), head or task.kind
    if args.labels:
        labels = [label.strip() for label in args.labels.split(",")]
    if args.num_attention_heads is not None and args.num_attention_heads < 1:
        raise UserError(f"--num-attention-heads must be >= 1, got {args.num_attention_heads}")
    result = convert_checkpoint(
        args.checkpoint,
        args.output,
        args.vocab,
        labels,
        args.seed_config,
        head=head,
        prefix=args.prefix,
        num_attention_heads=args.num_attention_heads,
        classifier_activation=None if args.classifier_activation == "none" else "relu",
    )
    print("\n".join(result.summary()))


def _convert_mindspore_config(args: argparse.Namespace) -> None:
    from tinybert.convert.seed_config import convert_config

    text = convert_config(args.seed_config, task=args.task)
    if not args.output:
        print(text, end="")
        return
    check_output_file(Path(args.output), "--output", (args.seed_config,))
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"-> {args.output} (check it: tinybert show-config --config {args.output})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; overrides may come before, between and after options (argparse alone
    takes a list of positionals only once: `evaluate a=1 --model DIR b=2` would refuse b=2)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and (not hasattr(args, "overrides") or any(a.startswith("-") for a in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    own_arguments = {  # commands that parse their own arguments (export: a config only if given)
        "prepare-corpus": _prepare_corpus,
        "export": _export,
        "predict": _predict,
        "report": _report,
        "convert-mindspore": _convert_mindspore,
        "convert-mindspore-config": _convert_mindspore_config,
    }
    if args.command in own_arguments:
        own_arguments[args.command](args)
        return 0
    cfg = load_run_config(args.config, args.overrides)
    # Recipes are imported only here, so `--help` and config errors answer before torch loads.
    if args.command == "show-config":
        print(dump_yaml(cfg), end="")
    elif args.command == "run":
        from tinybert.pipeline import run_pipeline

        run_pipeline(args.config, args.overrides)
    elif args.command == "benchmark":
        _benchmark(args, cfg)
    elif args.command == "general-distill":
        from tinybert.recipes.general_distill import STAGE, run_general_distill

        _check_output_dir(cfg, STAGE)
        result = run_general_distill(cfg)
        _refresh_card(result.final_dir)
        print(f"general distillation: {result.steps} steps -> {result.final_dir}")
    elif args.command == "finetune":
        from tinybert.recipes.finetune import STAGE, run_finetune

        _check_output_dir(cfg, STAGE)
        result = run_finetune(cfg)
        _refresh_card(result.best_dir, result.final_dir)
        print(f"teacher: best {result.best_metric} at step {result.best_step} -> {result.best_dir}")
    elif args.command == "task-distill":
        from tinybert.recipes.task_distill import STAGE, run_task_distill

        _check_output_dir(cfg, STAGE)
        for phase, result in run_task_distill(cfg).items():
            _refresh_card(result.best_dir, result.final_dir)
            best = (
                f", best {result.best_metric} at step {result.best_step}" if result.best_dir else ""
            )
            print(f"{phase}: {result.steps} steps{best} -> {result.best_dir or result.final_dir}")
    elif args.command == "augment":
        from tinybert.recipes.augment import run_augment

        augmented = run_augment(cfg)
        print("\n".join(augmented.summary.lines()))
        print(f"-> {augmented.output} (summary: {augmented.summary_path})")
        print(f"train on it with task.train_file={augmented.output}")
    elif args.command == "evaluate":
        _evaluate(args, cfg)
    elif args.command == "init-model":
        from tinybert.recipes.init_model import run_init_model

        out = run_init_model(cfg, args.vocab, args.output, lowercase=not args.cased)
        s = cfg.student
        print(
            f"random BERT {s.num_hidden_layers}L-{s.hidden_size} (heads {s.num_attention_heads}, "
            f"FFN {s.intermediate_size}) with {args.vocab} -> {out}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    code = 1
    try:
        code = run(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = getattr(exc, "exit_code", 2)  # Interrupted: 128 + the signal (130, 143)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    finally:
        _leave_process_group(code)
    return code


def _leave_process_group(code: int) -> None:
    """Leave torchrun's process group cleanly, without importing anything: only a finished
    import of tinybert.train.distributed can have joined one. After Ctrl-C during start-up,
    torch is half imported, and importing it again fails ("Only a single TORCH_LIBRARY ...")."""
    module = sys.modules.get("tinybert.train.distributed")
    if module is None or getattr(module.__spec__, "_initializing", False):
        return
    module.cleanup(synchronise=code == 0)


if __name__ == "__main__":
    sys.exit(main())
