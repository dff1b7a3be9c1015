"""The documentation: the site builds with `mkdocs build --strict` (a broken link, a missing anchor
or page fails), the reference pages generated from the code hold every configuration key (each
with a description) and every command, and README stays a ten-minute read that starts with the
two commands."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tinybert.cli import build_parser, config_keys

ROOT = Path(__file__).resolve().parents[1]


def load_generator() -> ModuleType:
    """scripts/gen_docs.py, the hook that generates the reference pages (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen = load_generator()


def test_every_config_key_has_a_description() -> None:
    keys = gen.config_reference_keys()
    missing = [k.key for k in keys if not k.meaning]
    assert not missing, (
        f"config keys without a description: {missing}. Write a comment above (or beside) the "
        "field in src/tinybert/config.py: it is the key's documentation"
    )
    # The same keys `tinybert CMD --help` lists: none left out, none made up.
    assert [k.key for k in keys] == [line.split(" = ")[0].strip() for line in config_keys()]


def test_configuration_reference_has_every_key_with_its_sections_default() -> None:
    page = gen.config_page()
    for k in gen.config_reference_keys():
        assert f"| `{k.key}` | `{gen.yaml_value(k.default)}` |" in page, k.key
    # Sections take their defaults from the enclosing object, not from their class.
    assert "| `finetune.weight_decay` | `0.01` |" in page
    assert "| `general.weight_decay` | `0.0001` |" in page
    assert "| `prediction.lr` | `3e-05` | a finite number > 0 |" in page.replace("&gt;", ">")
    assert "| `intermediate.epochs` | `10` |" in page


def test_allowed_values_come_from_the_declared_types() -> None:
    keys = {k.key: gen.allowed(k.hint) for k in gen.config_reference_keys()}
    assert keys["task.max_seq_length"] == "an integer in [5, 8192]"
    assert keys["task.max_train_examples"] == "an integer >= 1, or null"
    assert keys["task.on_bad_row"] == "one of `raise`, `skip`"
    assert keys["student.dropout"] == "a finite number in [0, 1)"
    assert keys["device"].startswith("auto, cpu, cuda")
    assert keys["student.teacher_layers"] == "a list (each entry: an integer >= 1), or null"


def test_field_comments_are_read_above_and_beside_each_field() -> None:
    source = (
        "class A:\n"
        '    """Doc."""\n'
        "\n"
        "    # first line\n"
        "    # second line\n"
        "    x: int = 1  # beside\n"
        "    y: int = 2\n"
        "\n"
        "    # after a blank line: z's own\n"
        "    z: tuple[int, ...] = (\n"
        "        1,  # inside the value\n"
        "    )\n"
    )
    comments = gen.field_comments(source)["A"]
    assert comments == {
        "x": "first line second line beside",
        "y": "",
        "z": "after a blank line: z's own inside the value",
    }


def test_command_reference_has_every_command_and_option() -> None:
    page = gen.commands_page()
    commands = gen.subcommands(build_parser())
    assert len(commands) >= 15
    for name, _, sub in commands:
        assert f"## `tinybert {name}`" in page, name
        for action in sub._actions:
            for option in set(action.option_strings) - {"-h", "--help"}:
                assert option in page, f"tinybert {name} {option}"


def test_site_builds_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail("mkdocs is missing: it is a dev dependency (pyproject.toml); `make setup`")
    site = tmp_path / "site"
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    config_html = (site / "reference" / "configuration" / "index.html").read_text()
    assert "general.weight_decay" in config_html
    commands_html = (site / "reference" / "commands" / "index.html").read_text()
    assert "tinybert convert-mindspore-config" in commands_html


def test_readme_starts_with_the_two_commands_and_stays_short() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move the rest into docs/"
    first_block = text.split("```")[1].splitlines()[1:]  # after the ```bash line
    commands = [line.split("#")[0].strip() for line in first_block if line.strip()]
    assert commands == ["make demo", "make test"]
    assert lines[0].startswith("# ") and text.index("make demo") < text.index("\n## ")


def test_readme_names_every_command_and_links_only_to_pages_that_exist() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, _, _ in gen.subcommands(build_parser()):
        assert f"| `tinybert {name}" in text, f"README's command table lacks tinybert {name}"
    generated = {"docs/" + page for page in gen.PAGES}
    for target in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / target).is_file() or target in generated, target
