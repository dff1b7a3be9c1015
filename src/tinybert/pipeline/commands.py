"""The registry: every `tinybert` command, and its part in `tinybert run`, defined once.

Each command is one frozen `Command`: its name, its help, the config it reads, its own options,
the function that runs it alone, and (a stage of `tinybert run`) a `RunStage`: its planner
(what it reads and writes, its wiring), what it does in a run, and how a run knows it is
finished. The command line (`tinybert.cli.build_parser`, `--help`), `tinybert run`'s planner and
runner, the check of `run.stages` and run.json (from which the report lists the stages) are all
made from `COMMANDS`; its order is the order of `--help` and, for the stages, the only order in
which `run.stages` may list them.

To add a command: its options in arguments.py, its function in actions.py, one `Command` here.
A stage of `tinybert run` also gets a planner (wiring.py) and a `work` function (actions.py).

This module imports no torch (`tinybert --help` and config errors answer before it loads):
everything it names imports what it needs inside.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from tinybert import config
from tinybert.config import Config
from tinybert.pipeline import actions, arguments, wiring
from tinybert.pipeline.record import PipelineRecord
from tinybert.pipeline.wiring import RunStage, Work

# Whether the command reads the run config (--config FILE ... and key.sub=value overrides):
# always (the defaults without any), only when some are given, or never (its own options only).
ConfigUse = Literal["always", "if given", "never"]
# Runs the command alone: its parsed arguments and the config (None where it reads none).
Main = Callable[[argparse.Namespace, Config | None], None]


@dataclass(frozen=True)
class Command:
    """One `tinybert` command."""

    name: str
    help: str  # one paragraph: `tinybert --help` and the command's own --help
    main: Main
    config: ConfigUse = "always"
    # The config sections (or keys) it reads, e.g. ("task", "finetune"); documentation, and the
    # settings a per-model stage is redone for when they change.
    sections: tuple[str, ...] = ()
    arguments: Callable[[argparse.ArgumentParser], None] | None = None  # its own options
    epilog: str = ""  # its --help after the options (before the config keys, if it reads them)
    stage: RunStage | None = None  # its part in `tinybert run`, if it is a stage of it

    def __post_init__(self) -> None:
        if not self.name or not self.help.strip():
            raise ValueError(f"command {self.name!r}: a name and a help text, please")


def run_pipeline(configs: Sequence[str], overrides: Sequence[str]) -> PipelineRecord:
    """`tinybert run`: every stage of `run.stages`, wired, as this registry defines them;
    returns the run's record. (The runner takes the stages as an argument instead of importing
    this module, so that the registry can name the runner without an import cycle.)"""
    from tinybert.pipeline.runner import run_stages  # here: it imports torch

    return run_stages(configs, overrides, stage_table())


def _run(args: argparse.Namespace, cfg: Config | None) -> None:
    run_pipeline(args.config, args.overrides)


def _per_model_stage(
    name: str,
    out_file: Callable[[], str],
    flags: tuple[str, ...],
    sections: tuple[str, ...],
    work: Work,
    version: Callable[[], int] | None = None,
    bert_only: bool = False,
) -> RunStage:
    """evaluate, export, benchmark: run on the teacher and on the student of the run (only on
    a BERT teacher with `bert_only`)."""
    plan = wiring.per_model(name, out_file, flags, sections, version, bert_only)
    return RunStage(plan=plan, work=work)


_EVALUATE = ("task", "finetune.eval_batch_size", "device")
_EXPORT = ("task", "finetune.eval_batch_size")
_BENCHMARK = ("task", "benchmark")

# In the order of `tinybert --help`; the stages among them in the order `tinybert run` runs them.
_ALL = (
    Command(
        "run",
        "run.stages in order ({stages}), each stage's output wired to the next one's input; "
        "finished stages are skipped, an interrupted run continues. Exit 3: the final student "
        "is no better than the dev set's trivial baseline (accept it: run.allow_trivial=true); "
        "exit 4: the fine-tuned teacher is not, so the run stopped before task-distill (go on: "
        "run.allow_weak_teacher=true)",
        _run,
        sections=("run", "output_dir"),
    ),
    Command(
        "prepare-corpus",
        "tokenise raw text (plain, WikiExtractor; .gz/.bz2) into packed, memory-mapped "
        "sequences for general-distill",
        actions.prepare_corpus,
        config="never",
        sections=("corpus",),  # in a run; alone, its options
        arguments=arguments.add_prepare_corpus_args,
        stage=RunStage(
            plan=wiring.plan_prepare_corpus,
            work=actions.work_prepare_corpus,
            ready=actions.corpus_ready,
        ),
    ),
    Command(
        "general-distill",
        "general distillation of a bare student on a prepared corpus; writes <output_dir>/general",
        actions.general_distill,
        sections=("teacher", "corpus", "student", "general"),
        stage=RunStage(
            plan=wiring.plan_general_distill,
            work=actions.work_general_distill,
            trains=True,
            finished=wiring.general_finished,
        ),
    ),
    Command(
        "finetune",
        "fine-tune a BERT directory on a task (the teacher); writes <output_dir>/teacher",
        actions.finetune,
        sections=("model", "task", "finetune"),
        stage=RunStage(
            plan=wiring.plan_finetune,
            work=actions.work_finetune,
            trains=True,
            finished=wiring.teacher_finished,
        ),
    ),
    Command(
        "augment",
        "TinyBERT's data augmentation of the task's training split (augment.*: masked-LM and "
        "word-vector candidates); writes <output_dir>/augmented/<train file> in the task's "
        "format, for task.train_file",
        actions.augment,
        sections=("task", "augment", "seed"),
        stage=RunStage(plan=wiring.plan_augment, work=actions.work_augment),
    ),
    Command(
        "task-distill",
        "TD phase 1 (intermediate layers) and/or phase 2 (prediction layer); writes "
        "<output_dir>/student",
        actions.task_distill,
        sections=("teacher", "task", "student", "distill", "intermediate", "prediction"),
        stage=RunStage(
            plan=wiring.plan_task_distill,
            work=actions.work_task_distill,
            trains=True,
            finished=wiring.student_finished,
        ),
    ),
    Command(
        "evaluate",
        "evaluate a saved model (PyTorch) or an export folder (ONNX Runtime) on the task's dev "
        "split(s), beside the trivial baseline; prints and writes JSON",
        actions.evaluate,
        sections=_EVALUATE,
        arguments=arguments.add_evaluate_args,
        stage=_per_model_stage(
            "evaluate",
            wiring.results_file,
            (),
            _EVALUATE,
            actions.work_evaluate,
            wiring.results_format,
        ),
    ),
    Command(
        "export",
        "export a saved model to ONNX (opset >= 17, dynamic batch and sequence axes) with its "
        "config and tokenizer; checks the export against PyTorch (max logit difference <= 1e-4)",
        actions.export,
        config="if given",
        sections=_EXPORT,
        arguments=arguments.add_export_args,
        epilog=arguments.EXPORT_MORE,
        stage=_per_model_stage(
            "export",
            wiring.export_file,
            ("--optimize", "--int8"),
            _EXPORT,
            actions.work_export,
            bert_only=True,  # a RoBERTa/DeBERTa/... teacher stays a PyTorch model
        ),
    ),
    Command(
        "benchmark",
        "inference speed (sequences/s) of a saved model on the task's dev sentences: PyTorch "
        "fp32 (and bf16 where the CPU has AVX512-BF16/AMX), and ONNX Runtime fp32/int8 where it "
        "has an export (DIR/onnx), at each benchmark.batch_sizes, and the fastest per batch "
        "size; writes <model>/speed.json",
        actions.benchmark,
        sections=_BENCHMARK,
        arguments=arguments.add_benchmark_args,
        stage=_per_model_stage(
            "benchmark", wiring.speed_file, (), _BENCHMARK, actions.work_benchmark
        ),
    ),
    Command(
        "report",
        "rebuild <run dir>/report (report.md, report.html, plots) from the files a run wrote, "
        "running no model; says which parts are missing",
        actions.report,
        config="never",
        sections=("output_dir",),  # in a run; alone, RUN_DIR
        arguments=arguments.add_report_args,
        stage=RunStage(plan=wiring.plan_report, work=actions.work_report, may_skip=False),
    ),
    Command(
        "predict",
        "label sentences or sentence pairs from a file or stdin; writes JSONL in input order",
        actions.predict,
        config="never",
        arguments=arguments.add_predict_args,
        epilog=arguments.PREDICT_MORE,
    ),
    Command(
        "show-config",
        "print the merged, checked configuration as YAML",
        actions.show_config,
    ),
    Command(
        "init-model",
        "write a randomly initialised BERT of shape student.* with a given vocabulary (a "
        "teacher to fine-tune from scratch where no pre-trained one exists)",
        actions.init_model,
        sections=("student",),
        arguments=arguments.add_init_model_args,
    ),
    Command(
        "convert-mindspore",
        "convert a MindSpore TinyBERT checkpoint (.ckpt of the seed system: GD student, TD "
        "classification or NER model, BERT teacher) into a Hugging Face directory; MindSpore "
        "is not needed",
        actions.convert_mindspore,
        config="never",
        arguments=arguments.add_convert_mindspore_args,
    ),
    Command(
        "convert-mindspore-config",
        "turn a seed td_config_*.yaml or gd_config.yaml into a tinybert YAML (keys with no "
        "meaning here are listed in a comment at its top)",
        actions.convert_mindspore_config,
        config="never",
        arguments=arguments.add_convert_mindspore_config_args,
    ),
)

COMMANDS: dict[str, Command] = {c.name: c for c in _ALL}
if len(COMMANDS) != len(_ALL):
    raise ValueError("two commands of the same name")


def command(name: str) -> Command:
    return COMMANDS[name]


def stage_names() -> tuple[str, ...]:
    """`tinybert run`'s stages, in the only order they can run."""
    return tuple(c.name for c in COMMANDS.values() if c.stage is not None)


def stage_table() -> dict[str, RunStage]:
    """Each stage's part in `tinybert run` by name, in the order they run (read now: a stage
    added to COMMANDS, e.g. by a test, is in it)."""
    return {c.name: c.stage for c in COMMANDS.values() if c.stage is not None}


def run_stage(name: str) -> RunStage:
    """A stage's part in `tinybert run` (KeyError: no such stage)."""
    stage = COMMANDS[name].stage
    if stage is None:
        raise KeyError(name)
    return stage


def help_text(c: Command) -> str:
    return c.help.replace("{stages}", ", ".join(stage_names()))


# run.stages is checked against this registry as the config is read (config.py cannot import
# a layer above it; it asks this function, which reads COMMANDS as it is then).
config.stage_names = stage_names
