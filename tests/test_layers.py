"""The import contract of pyproject.toml ([tool.importlinter]) holds, and the architecture page of
the documentation (docs/development/architecture.md) tells the truth about it.

The contract: imports flow down the layers `[tool.importlinter]` lists (cli > pipeline > report >
predict | evaluate | benchmark > export > recipes | convert > distill > train > data | model > config
> paths > errors), with no cycles between sibling modules. `make lint` runs the same check. The
page must list those layers in the same order and name every module of src/tinybert/."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tinybert"
PAGE = ROOT / "docs" / "development" / "architecture.md"


def contract_layers() -> list[set[str]]:
    """The layers of the `layers` contract, top to bottom; each a set of sibling names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    return [{name.strip() for name in layer.split("|")} for layer in layers]


def page_sections() -> dict[str, str]:
    """The architecture page's text under each `## ` and `### ` heading (heading text as key)."""
    text = PAGE.read_text(encoding="utf-8")
    parts = re.split(r"^(#{2,3} .+)$", text, flags=re.MULTILINE)
    return {parts[i].lstrip("#").strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_import_contracts_kept() -> None:
    if importlib.util.find_spec("importlinter") is None:
        pytest.fail(
            "import-linter is missing: it is a dev dependency (pyproject.toml); `make setup`"
        )
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
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_architecture_page_lists_the_contract_layers_in_order() -> None:
    layers_text = page_sections()["Layers"]
    on_page = []
    for line in layers_text.splitlines():
        if re.match(r"^\d+\. ", line):
            names = line.split(" — ")[0]  # "7. `recipes/` · `convert/`"
            on_page.append(
                {n.rstrip("/").removesuffix(".py") for n in re.findall(r"`([^`]+)`", names)}
            )
    assert on_page == contract_layers(), (
        f"{PAGE.relative_to(ROOT)} lists the layers {on_page}, but pyproject.toml's "
        f"[tool.importlinter] contract has {contract_layers()}: make them agree"
    )


def test_every_module_has_a_layer_and_a_section_on_the_architecture_page() -> None:
    sections = page_sections()
    layered = set().union(*contract_layers())
    top = sorted(p for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file())
    for path in top:
        if path.name == "__init__.py":
            continue
        name = path.stem if path.suffix == ".py" else path.name
        heading = f"`{path.name}`" if path.suffix == ".py" else f"`{path.name}/`"
        assert name in layered, f"src/tinybert/{path.name} has no layer in pyproject.toml"
        assert heading in sections, (
            f"src/tinybert/{path.name} has no '### {heading}' section on {PAGE.relative_to(ROOT)}"
        )
        if path.is_dir():
            modules = {m.name for m in path.glob("*.py") if m.name != "__init__.py"}
            named = set(re.findall(r"`(\w+\.py)`", sections[heading]))
            assert modules <= named, (
                f"{PAGE.relative_to(ROOT)}, section {heading}, does not name "
                f"{sorted(modules - named)}: say what each owns"
            )
            assert named <= modules, (
                f"{PAGE.relative_to(ROOT)}, section {heading}, names {sorted(named - modules)}, "
                f"which src/tinybert/{path.name}/ does not have"
            )
