"""The `tinybert` command line.

    tinybert prepare-corpus wiki/*.txt.gz --tokenizer MODEL_DIR --output corpus/
    tinybert general-distill --config configs/general.yaml teacher=MODEL_DIR corpus.path=corpus/
    tinybert finetune     --config configs/sst2.yaml [key.sub=value ...]
    tinybert task-distill --config configs/sst2.yaml [key.sub=value ...]
    tinybert evaluate     --config configs/sst2.yaml --model runs/sst2/student/prediction/best
    tinybert show-config  --config configs/sst2.yaml [key.sub=value ...]

Every training command also runs under `torchrun --nproc_per_node N tinybert ...` (DDP).
Mistakes a user can make end in one `error: ...` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

from tinybert.config import RunConfig, dump_yaml, load_run_config
from tinybert.errors import UserError


def config_keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted config key with its default, for --help."""
    lines = []
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            lines += config_keys(hints[f.name], prefix + f.name + ".")
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
        "general-distill": "general distillation of a bare student on a prepared corpus; "
        "writes <output_dir>/general",
        "finetune": "fine-tune a BERT directory on a task (the teacher); writes <output_dir>/teacher",
        "task-distill": "TD phase 1 (intermediate layers) and/or phase 2 (prediction layer); "
        "writes <output_dir>/student",
        "evaluate": "evaluate a saved model on the task's dev split(s); prints and writes JSON",
        "show-config": "print the merged, checked configuration as YAML",
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
            p.add_argument("--model", required=True, help="saved model directory to evaluate")
            p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
            p.add_argument(
                "--output", help="JSON file for the metrics (default: <model>/eval_results.json)"
            )
    return parser


def _add_prepare_corpus(sub) -> None:
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


def _prepare_corpus(args) -> None:
    from tinybert.data.corpus import PackingOptions, convert_tfrecord, prepare_corpus

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


def _save_config(cfg: RunConfig, sub: str) -> None:
    if os.environ.get("RANK", "0") != "0":  # under torchrun only the main process writes
        return
    out = Path(cfg.output_dir) / sub
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "prepare-corpus":
        _prepare_corpus(args)
        return 0
    cfg = load_run_config(args.config, args.overrides)
    # Imported here so `--help` and config errors answer instantly, before torch loads.
    from tinybert.distill import recipes

    if args.command == "show-config":
        print(dump_yaml(cfg), end="")
    elif args.command == "general-distill":
        from tinybert.distill.general import run_general_distill

        _save_config(cfg, "general")
        result = run_general_distill(cfg)
        print(f"general distillation: {result.steps} steps -> {result.final_dir}")
    elif args.command == "finetune":
        _save_config(cfg, "teacher")
        result = recipes.run_finetune(cfg)
        print(f"teacher: best {result.best_metric} at step {result.best_step} -> {result.best_dir}")
    elif args.command == "task-distill":
        _save_config(cfg, "student")
        for phase, result in recipes.run_task_distill(cfg).items():
            best = (
                f", best {result.best_metric} at step {result.best_step}" if result.best_dir else ""
            )
            print(f"{phase}: {result.steps} steps{best} -> {result.best_dir or result.final_dir}")
    elif args.command == "evaluate":
        metrics = recipes.run_evaluate(args.model, cfg, args.precision)
        text = json.dumps({"model": args.model, "task": cfg.task.name, **metrics}, indent=2)
        print(text)
        output = Path(args.output or Path(args.model) / "eval_results.json")
        output.write_text(text + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:  # leave torchrun's process group cleanly
            from tinybert.distill.distributed import cleanup

            cleanup()


if __name__ == "__main__":
    sys.exit(main())
