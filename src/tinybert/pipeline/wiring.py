"""Where `tinybert run`'s stages read and write: one planner per stage, and the paths they share.

`Wiring` places every stage's output where the next one reads it:

    prepare-corpus   corpus.inputs            -> corpus.path (default <output_dir>/corpus)
    general-distill  run.general_teacher or model, the corpus -> <output_dir>/general/final
    finetune         model, the task          -> <output_dir>/teacher/best (the teacher)
    augment          the task's train split   -> <output_dir>/augmented/<train file>
    task-distill     the teacher (+ GD student, + augmented file) -> <output_dir>/student/...
    evaluate         teacher and student      -> <model>/eval_results.json
    export           teacher and student      -> <model>/onnx (fp32, optimised, int8)
    benchmark        teacher and student      -> <model>/speed.json
    report           the run directory        -> <output_dir>/report

A stage's wiring is a list of config overrides (teacher=..., student.path=...), so the command
that reproduces a stage alone is the run's own command line plus those overrides. The stage
registry (commands.py) names each stage's planner; the stage folders are the recipes' own
(`STAGE` in recipes/*.py), read once in `Wiring.of`.

This module is imported for `tinybert --help` (through the registry): whatever imports torch is
imported inside the functions that need it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinybert.config import Config, to_dict


@dataclass(frozen=True)
class Wiring:
    """Where one run's stages read and write."""

    out: Path
    base: str  # `model`: the pre-trained BERT finetune starts from ("" if none)
    gd_teacher: str  # general distillation's teacher
    corpus: str  # the packed corpus folder
    teacher: str  # the task teacher
    general: str  # the general-distilled student
    augmented: str  # augment's output file
    student: str  # the deployable student (TD phase 2's best/)
    # The teacher's model_type ("bert", "roberta", ...): the fine-tuned teacher keeps `model`'s
    teacher_type: str = "bert"
    # The training stages' folders in `out` (the recipes' STAGE): teacher, general, student
    teacher_dir: Path = Path("teacher")
    general_dir: Path = Path("general")
    student_dir: Path = Path("student")

    @classmethod
    def of(cls, cfg: Config) -> Wiring:
        from tinybert.data.task_data import train_file_name
        from tinybert.recipes.finetune import STAGE as TEACHER
        from tinybert.recipes.general_distill import STAGE as GENERAL
        from tinybert.recipes.task_distill import PREDICTION
        from tinybert.recipes.task_distill import STAGE as STUDENT

        out = Path(cfg.output_dir)
        stages = cfg.run.stages
        augmented = cfg.augment.output
        if not augmented and (cfg.task.train_file or cfg.task.data_dir):
            augmented = str(out / "augmented" / train_file_name(cfg.task))
        return cls(
            out=out,
            base=cfg.model,
            gd_teacher=cfg.run.general_teacher or cfg.model,
            corpus=cfg.corpus.path or str(out / "corpus"),
            teacher=str(out / TEACHER / "best") if "finetune" in stages else cfg.teacher,
            general=str(out / GENERAL / "final"),
            augmented=augmented,
            student=str(out / PREDICTION / "best"),
            teacher_type=_model_type(cfg.model if "finetune" in stages else cfg.teacher),
            teacher_dir=out / TEACHER,
            general_dir=out / GENERAL,
            student_dir=out / STUDENT,
        )

    def models(self) -> dict[str, str | None]:
        """run.json's "models": the roles a report and the model cards look up."""
        return {
            "base": self.base,
            "teacher": self.teacher,
            "general": self.general if Path(self.general).is_dir() else None,
            "student": self.student,
        }


def _model_type(model_dir: str) -> str:
    """config.json's model_type; "bert" when it cannot be read yet (the stage that reads the
    directory says what is wrong with it)."""
    from tinybert.errors import UserError
    from tinybert.model.teachers import model_family

    try:
        return model_family(model_dir).name if model_dir else "bert"
    except UserError:
        return "bert"


@dataclass
class Stage:
    """One planned stage of a run."""

    name: str
    reads: list[str]
    writes: list[str]
    overrides: list[str]  # the wiring, as config overrides on top of the run's own
    commands: list[str]  # each reproduces (a part of) the stage alone
    # Non-training stages: what they write, per model, and the settings it was made with; the
    # stage is skipped when every output is newer than its input and the settings are the same.
    outputs: dict[str, str] = field(default_factory=dict)  # output file -> input it derives from
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandLine:
    """The run's own config files and overrides, to spell each stage's command."""

    configs: tuple[str, ...]
    overrides: tuple[str, ...]

    def command(self, name: str, wired: Sequence[str], *extra: str) -> str:
        files = [a for path in self.configs for a in ("--config", path)]
        # run.* only steers `tinybert run`; the stage's own command ignores it
        own = [o for o in self.overrides if not o.strip().startswith("run.")]
        return shlex.join(["tinybert", name, *files, *own, *wired, *extra])


# What a stage reads and writes in a run, its wiring and the commands that reproduce it.
Planner = Callable[[Config, Wiring, CommandLine], Stage]
# A training stage's marks of being finished: the state files of its final/ folders.
Marks = Callable[[Config, Wiring], list[Path]]
# Runs a stage in `tinybert run`, with the stage's config (the run's plus its wiring).
Work = Callable[[Stage, Config, Wiring], None]
# A non-training stage's own test that its output is already there and usable.
Ready = Callable[[Stage, Config, Wiring], bool]


@dataclass(frozen=True)
class RunStage:
    """A command's part in `tinybert run`."""

    plan: Planner  # what it reads and writes in a run, its wiring, the commands that redo it
    work: Work  # what it does in a run
    # A training stage runs on every process with resume=auto and is finished when the files
    # `finished` lists exist (its resume then skips it); the others run on the main process.
    trains: bool = False
    finished: Marks | None = None
    # Non-training: may `tinybert run` skip it when its outputs are newer than the models they
    # derive from and its settings are unchanged (false: it always runs, e.g. the report)?
    may_skip: bool = True
    ready: Ready | None = None  # also skipped when this says its output is there to use

    def __post_init__(self) -> None:
        if self.trains != (self.finished is not None):
            raise ValueError("a training stage, and only one, says which files mark it finished")


# ---------------------------------------------------------------------------------------------
# one planner per stage: what it reads, writes, and its wiring


def plan_prepare_corpus(cfg: Config, w: Wiring, line: CommandLine) -> Stage:
    command = [
        "tinybert",
        "prepare-corpus",
        *cfg.corpus.inputs,
        f"--tokenizer={w.gd_teacher}",
        f"--output={w.corpus}",
        f"--max-seq-length={cfg.corpus.max_seq_length}",
    ]
    meta = str(Path(w.corpus) / "meta.json")
    return Stage(
        "prepare-corpus",
        reads=list(cfg.corpus.inputs),
        writes=[w.corpus],
        overrides=[],
        commands=[shlex.join(command)],
        outputs={meta: ""},
        settings={
            "corpus.inputs": list(cfg.corpus.inputs),
            "corpus.max_seq_length": cfg.corpus.max_seq_length,
            "tokenizer": w.gd_teacher,
        },
    )


def plan_general_distill(cfg: Config, w: Wiring, line: CommandLine) -> Stage:
    wired = [f"teacher={w.gd_teacher}"]
    if "prepare-corpus" in cfg.run.stages or not cfg.corpus.path:
        wired.append(f"corpus.path={w.corpus}")
    return Stage(
        "general-distill",
        reads=[w.gd_teacher, w.corpus],
        writes=[str(w.general_dir)],
        overrides=wired,
        commands=[line.command("general-distill", wired, "resume=auto")],
    )


def plan_finetune(cfg: Config, w: Wiring, line: CommandLine) -> Stage:
    return Stage(
        "finetune",
        reads=[cfg.model, cfg.task.data_dir],
        writes=[str(w.teacher_dir)],
        overrides=[],
        commands=[line.command("finetune", [], "resume=auto")],
    )


def plan_augment(cfg: Config, w: Wiring, line: CommandLine) -> Stage:
    from tinybert.data.task_data import train_path

    reads = [str(train_path(cfg.task)), cfg.augment.word_vectors, cfg.augment.mlm]
    return Stage(
        "augment",
        reads=[r for r in reads if r],
        writes=[w.augmented],
        overrides=[f"augment.output={w.augmented}"],
        commands=[line.command("augment", [f"augment.output={w.augmented}"])],
        outputs={f"{w.augmented}.summary.json": ""},
        settings={
            "augment": to_dict(cfg.augment),
            "task": to_dict(cfg.task),
            "seed": cfg.seed,
        },
    )


def plan_task_distill(cfg: Config, w: Wiring, line: CommandLine) -> Stage:
    wired = [f"teacher={w.teacher}"]
    reads = [w.teacher, cfg.task.data_dir]
    if "general-distill" in cfg.run.stages:
        wired += ["student.init=checkpoint", f"student.path={w.general}"]
        reads.append(w.general)
    elif cfg.student.path:
        reads.append(cfg.student.path)
    if "augment" in cfg.run.stages:
        wired.append(f"task.train_file={w.augmented}")
        reads.append(w.augmented)
    return Stage(
        "task-distill",
        reads=reads,
        writes=[str(w.student_dir)],
        overrides=wired,
        commands=[line.command("task-distill", wired, "resume=auto")],
    )


def per_model(
    name: str,
    out_file: Callable[[], str],
    flags: Sequence[str],
    keys: Sequence[str],
    version: Callable[[], int] | None = None,
    bert_only: bool = False,
) -> Planner:
    """evaluate, export, benchmark: the same step on the teacher and on the student, each
    writing `out_file()` beside the model, with `flags` on its own command line. `keys`: the
    config it reads, its settings. `version` (of the output's format) is a setting too, so
    outputs of an older format are made again. `bert_only`: a teacher of another model type
    (RoBERTa, ...) is left out (export: tinybert exports BERT models). (Names, not values:
    importing them imports torch.)"""

    def planner(cfg: Config, w: Wiring, line: CommandLine) -> Stage:
        from tinybert.recipes.common import stage_settings

        models = [w.teacher, w.student]
        if bert_only and w.teacher_type != "bert":
            models = [w.student]
        outputs = {str(Path(m) / out_file()): str(Path(m) / "model.safetensors") for m in models}
        wired = [f"teacher={w.teacher}"]
        return Stage(
            name,
            reads=models,
            writes=list(outputs),
            overrides=wired,
            commands=[line.command(name, wired, "--model", m, *flags) for m in models],
            outputs=outputs,
            settings=stage_settings(cfg, *keys)
            | {"models": models}
            | ({"format": version()} if version else {}),
        )

    return planner


def results_file() -> str:
    from tinybert.evaluate import RESULTS_FILE

    return RESULTS_FILE


def results_format() -> int:
    from tinybert.evaluate import RESULTS_FORMAT

    return RESULTS_FORMAT


def export_file() -> str:
    from tinybert.export.onnx import REPORT_FILE
    from tinybert.export.runtime import EXPORT_SUBDIR

    return f"{EXPORT_SUBDIR}/{REPORT_FILE}"


def speed_file() -> str:
    from tinybert.benchmark import SPEED_FILE

    return SPEED_FILE


def plan_report(cfg: Config, w: Wiring, line: CommandLine) -> Stage:
    return Stage(
        "report",
        reads=[str(w.out)],
        writes=[str(w.out / "report")],
        overrides=[],
        commands=[shlex.join(["tinybert", "report", str(w.out)])],
    )


# ---------------------------------------------------------------------------------------------
# training stages: the state files of the final/ folders that mark them finished


def _state_file() -> str:
    from tinybert.train.checkpoint import STATE_FILE

    return STATE_FILE


def general_finished(cfg: Config, w: Wiring) -> list[Path]:
    return [w.general_dir / "final" / _state_file()]


def teacher_finished(cfg: Config, w: Wiring) -> list[Path]:
    return [w.teacher_dir / "final" / _state_file()]


def student_finished(cfg: Config, w: Wiring) -> list[Path]:
    return [w.student_dir / phase / "final" / _state_file() for phase in cfg.distill.phases]
