"""The `tinybert` command line.

    tinybert finetune     --config configs/sst2.yaml [key.sub=value ...]
    tinybert task-distill --config configs/sst2.yaml [key.sub=value ...]
    tinybert evaluate     --config configs/sst2.yaml --model runs/sst2/student/prediction/best
    tinybert show-config  --config configs/sst2.yaml [key.sub=value ...]

Mistakes a user can make end in one `error: ...` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
    helps = {
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


def _save_config(cfg: RunConfig, sub: str) -> None:
    out = Path(cfg.output_dir) / sub
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_run_config(args.config, args.overrides)
    # Imported here so `--help` and config errors answer instantly, before torch loads.
    from tinybert.distill import recipes

    if args.command == "show-config":
        print(dump_yaml(cfg), end="")
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


if __name__ == "__main__":
    sys.exit(main())
