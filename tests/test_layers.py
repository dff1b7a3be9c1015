"""The import contract of pyproject.toml ([tool.importlinter]) holds: imports flow down the
layers cli > predict | evaluate > export > recipes > distill > train > data | model > config >
errors, with no cycles between sibling modules. `make lint` runs the same check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_kept() -> None:
    pytest.importorskip("importlinter", reason="import-linter is a dev dependency")
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; "
            "sys.exit(lint_imports_command())",
            "--no-cache",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
