"""The `tinybert` command line, made from the command registry (tinybert/pipeline/commands.py).

    tinybert --help                                      # every command, one line each
    tinybert COMMAND --help                              # its options, config keys, defaults
    tinybert run          --config configs/demo.yaml     # every stage, wired, + report
    tinybert finetune     --config configs/sst2.yaml [key.sub=value ...]

Every command, its options and what it runs is one entry of the registry; this module turns
them into the parser (`build_parser`) and runs the one asked for. Every training command also
runs under `torchrun --nproc_per_node N tinybert ...` (DDP). Mistakes a user can make end in one
`error: ...` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from tinybert.config import leaf_keys, load_config
from tinybert.errors import UserError
from tinybert.pipeline.commands import COMMANDS, Command, help_text


def config_keys() -> list[str]:
    """Every dotted config key with its default, for --help (`general.*` shows general's own
    defaults, not finetune's)."""
    return [f"  {k.key} = {k.default!r}" for k in leaf_keys()]


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
    """The whole command line, one subcommand per registered command (no torch imported)."""
    parser = argparse.ArgumentParser(
        prog="tinybert",
        description="Distil a fine-tuned BERT teacher into a small TinyBERT student.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_epilog = EPILOG + "\n".join(config_keys())
    for command in COMMANDS.values():
        _add_command(sub, command, config_epilog)
    return parser


def _add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], command: Command, config_epilog: str
) -> None:
    text = help_text(command)
    epilog = command.epilog + (config_epilog if command.config != "never" else "")
    p = sub.add_parser(
        command.name,
        help=text,
        description=text,
        epilog=epilog or None,
        formatter_class=argparse.RawDescriptionHelpFormatter if epilog else argparse.HelpFormatter,
    )
    if command.config != "never":
        _add_config_args(p)
    if command.arguments is not None:
        command.arguments(p)


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


def dispatch(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = COMMANDS[args.command]
    cfg = None  # the config is loaded here, so its errors answer before torch is imported
    if command.config == "always" or (
        command.config == "if given" and (args.config or args.overrides)
    ):
        cfg = load_config(args.config, args.overrides)
    command.main(args, cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    code = 1
    try:
        code = dispatch(argv)
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
