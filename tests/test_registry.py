"""The command registry (tinybert/pipeline/commands.py) is the one place a command or a stage of
`tinybert run` is defined: a toy stage registered there alone shows in `--help`, parses, runs
alone, is accepted by `run.stages`, is planned, run and skipped by `tinybert run`, is recorded in
run.json and is listed by the report."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinybert.cli import build_parser, main, parse_args
from tinybert.config import Config, load_config
from tinybert.pipeline import commands
from tinybert.pipeline.commands import COMMANDS, Command, RunStage, stage_names
from tinybert.pipeline.stages import plan
from tinybert.pipeline.wiring import CommandLine, Stage, Wiring

TOY_HELP = "count the task name's letters (a toy stage); writes <output_dir>/toy.json"


def _toy_file(cfg: Config) -> Path:
    return Path(cfg.output_dir) / "toy.json"


def _toy_count(cfg: Config, shout: bool = False) -> Path:
    out = _toy_file(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    count = {"letters": len(cfg.task.name), "shout": shout}
    out.write_text(json.dumps(count), encoding="utf-8")
    return out


def _toy_main(args: argparse.Namespace, cfg: Config | None) -> None:
    assert cfg is not None
    print(f"toy: -> {_toy_count(cfg, args.shout)}")


def _toy_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shout", action="store_true", help="count loudly")


def _toy_plan(cfg: Config, w: Wiring, line: CommandLine) -> Stage:
    out = str(_toy_file(cfg))
    return Stage(
        "toy",
        reads=[],
        writes=[out],
        overrides=[],
        commands=[line.command("toy", [])],
        outputs={out: ""},
        settings={"task.name": cfg.task.name},
    )


def _toy_work(stage: Stage, cfg: Config, w: Wiring) -> None:
    _toy_count(cfg)


TOY = Command(
    "toy",
    TOY_HELP,
    _toy_main,
    sections=("task",),
    arguments=_toy_arguments,
    stage=RunStage(plan=_toy_plan, work=_toy_work),
)


@pytest.fixture
def toy() -> Iterator[Command]:
    """The toy stage registered, before `report` (run.stages' order is the registry's)."""
    before = dict(COMMANDS)
    names = list(before)
    at = names.index("report")
    COMMANDS.clear()
    COMMANDS.update({n: before[n] for n in names[:at]} | {"toy": TOY})
    COMMANDS.update({n: before[n] for n in names[at:]})
    yield TOY
    COMMANDS.clear()
    COMMANDS.update(before)


def test_every_command_has_help_and_a_unique_name() -> None:
    names = [c.name for c in commands._ALL]
    assert len(names) == len(set(names)) == len(COMMANDS)
    for c in COMMANDS.values():
        assert c.name == c.name.strip().lower() and " " not in c.name
        assert len(commands.help_text(c)) > 20, c.name
    with pytest.raises(ValueError):
        Command("nothing", " ", _toy_main)


def test_sections_name_config_keys() -> None:
    defaults = Config()
    for c in COMMANDS.values():
        for key in c.sections:
            value: object = defaults
            for part in key.split("."):
                assert hasattr(value, part), f"{c.name}: no config key {key}"
                value = getattr(value, part)


def test_stages_are_the_registered_ones_in_order() -> None:
    assert stage_names() == (
        "prepare-corpus",
        "general-distill",
        "finetune",
        "augment",
        "task-distill",
        "evaluate",
        "export",
        "benchmark",
        "report",
    )
    trains = [n for n in stage_names() if commands.run_stage(n).trains]
    assert trains == ["general-distill", "finetune", "task-distill"]
    with pytest.raises(ValueError):  # a training stage must say which files mark it finished
        RunStage(plan=_toy_plan, work=_toy_work, trains=True)


def test_parser_has_every_registered_command() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)
    text = parser.format_help()
    for c in COMMANDS.values():
        assert c.name in text


def test_help_and_config_errors_import_no_torch() -> None:
    code = (
        "import sys\n"
        "from tinybert.cli import main\n"
        "assert main(['show-config', 'run.stages=[finetun]']) == 2\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_toy_stage_in_help_and_parser(toy: Command, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "toy" in out and "count the task name's letters" in out
    # `tinybert run`'s help lists the stages, the toy one among them, in order
    assert "evaluate, export, benchmark, toy, report" in " ".join(out.split())
    with pytest.raises(SystemExit):
        main(["toy", "--help"])
    out = capsys.readouterr().out
    assert "--shout" in out and "task.name = 'sst2'" in out  # its option, and the config keys
    args = parse_args(["toy", "task.name=qnli", "--shout"])
    assert (args.command, args.shout, args.overrides) == ("toy", True, ["task.name=qnli"])


def test_toy_stage_runs_alone(toy: Command, tmp_path: Path) -> None:
    assert main(["toy", "--shout", f"output_dir={tmp_path}", "task.name=mnli"]) == 0
    assert json.loads((tmp_path / "toy.json").read_text()) == {"letters": 4, "shout": True}


def test_run_stages_accepts_and_plans_the_toy_stage(toy: Command, tmp_path: Path) -> None:
    cfg = load_config([], ["run.stages=[toy, report]", f"output_dir={tmp_path}"])
    assert cfg.run.stages == ("toy", "report")
    stages = plan(cfg, [], ["run.stages=[toy, report]"], commands.stage_table())
    assert [s.name for s in stages] == ["toy", "report"]
    assert stages[0].writes == [str(tmp_path / "toy.json")]
    assert stages[0].commands == ["tinybert toy"]  # run.* overrides steer only `tinybert run`
    # its place in the order is the registry's
    assert main(["show-config", "run.stages=[report, toy]"]) == 2


def test_toy_stage_unknown_without_registration(tmp_path: Path) -> None:
    assert main(["show-config", "run.stages=[toy]"]) == 2
    with pytest.raises(SystemExit):
        parse_args(["toy"])


def test_tinybert_run_runs_records_reports_and_skips_the_toy_stage(
    toy: Command, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["run", f"output_dir={out}", "run.stages=[toy, report]", "task.name=qnli"]
    assert main(argv) == 0
    assert json.loads((out / "toy.json").read_text())["letters"] == 4
    record = json.loads((out / "run.json").read_text())
    toy_entry = next(s for s in record["stages"] if s["name"] == "toy")
    assert toy_entry["status"] == "done"
    assert toy_entry["writes"] == [str(out / "toy.json")]
    report = (out / "report" / "report.md").read_text()
    assert "| toy | done |" in report  # the report's stage table lists it
    capsys.readouterr()
    assert main(argv) == 0  # again: up to date with the same settings, so skipped
    assert "toy: already done with these settings; skipping" in capsys.readouterr().out
    record = json.loads((out / "run.json").read_text())
    assert next(s for s in record["stages"] if s["name"] == "toy")["status"] == "skipped"
