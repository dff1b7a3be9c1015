"""Helpers shared by the scripts in this folder (run them as `python scripts/NAME.py`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def tinybert(*args: str) -> None:
    """Run one `tinybert` command from the repository root; stop the script if it fails."""
    print(f"\n$ tinybert {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "tinybert", *args], cwd=ROOT)
    if done.returncode:
        sys.exit(done.returncode)


def run_main(doc: str | None, main: Callable[[], None]) -> None:
    """A script's entry: no options, so --help prints its docstring (and starts nothing)."""
    import argparse

    argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    main()
