"""`tinybert report RUN_DIR`: report.md and a self-contained report.html from a run's files.

    result = build_report("runs/demo")  # -> runs/demo/report/{report.md, report.html, *.png}
    result.missing  # what the report had to leave out, one sentence each

The HTML embeds its images (data: URIs) and its CSS, so it opens from disk with no server. Its
teacher-vs-student table (id "models") keeps every number machine-readable: each row has a
data-key ("params", "size:safetensors", "metric:accuracy", "onnx:model_int8.onnx:accuracy",
"speed:onnx:fp32:32") and each value cell a data-value with the raw figure (weights, bytes,
metric as a fraction, sequences/s), whatever the cell shows. Metric rows also carry the dev
set's trivial baseline (data-model "baseline") and the accuracy the student keeps over it
(data-model "kept", in percent: 100 * (student - baseline) / (teacher - baseline)) beside the
plain student / teacher ratio (data-model "ratio", in percent). A model whose main metric is no
better than the baseline is called so at the top of both files and its cell is marked.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tinybert.export.runtime import FP32_FILE, INT8_FILE
from tinybert.paths import check_output_dir, write_atomic
from tinybert.report.collect import RunData, Speed, collect_run, speed_keys, speed_label
from tinybert.report.files import is_trivial, kept_over_baseline, score_ratio, trivial_sentence
from tinybert.report.plots import PLOT_FILES, Plot, make_plots

REPORT_SUBDIR = "report"
MD_FILE = "report.md"
HTML_FILE = "report.html"


@dataclass
class ReportResult:
    """What build_report wrote, and what it had to leave out."""

    md: Path
    html: Path
    images: list[Path]
    missing: list[str]
    notes: list[str] = field(default_factory=list)  # how run.json's paths were resolved


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> ReportResult:
    """Read `run_dir` and write report.md, report.html and the PNGs into `out_dir` (default
    <run_dir>/report). Each file is written under a temporary name and renamed into place, so
    the folder can be rebuilt at any time. UserError if `run_dir` holds no run at all."""
    run = collect_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.run_dir / REPORT_SUBDIR
    check_output_dir(out, "report folder")
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(run)
    images = [_write(out / p.name, p.png) for p in plots]
    for stale in set(PLOT_FILES) - {p.name for p in plots}:  # from an earlier, fuller build
        (out / stale).unlink(missing_ok=True)
    md = _write(out / MD_FILE, render_markdown(run, plots).encode("utf-8"))
    page = _write(out / HTML_FILE, render_html(run, plots).encode("utf-8"))
    return ReportResult(md=md, html=page, images=images, missing=run.missing, notes=run.notes)


def _write(path: Path, data: bytes) -> Path:
    write_atomic(path, data)
    return path


# ---------------------------------------------------------------------------------------------
# the teacher-vs-student table, shared by both formats


Comparison = tuple[float, str]  # the raw ratio and how it is shown
ROLES = ("teacher", "student")
TRIVIAL_MARK = "(trivial)"  # beside a main metric no better than the baseline


@dataclass(frozen=True)
class Row:
    """One line of the table: raw values, how to show them, and student-vs-teacher."""

    key: str  # data-key in the HTML
    label: str
    teacher: float | None
    student: float | None
    show: Callable[[float], str]
    # (teacher, student) -> (3.9, "3.9x fewer"), or None where a ratio means nothing
    compare: Callable[[float, float], Comparison | None]
    baseline: float | None = None  # dev metrics: the trivial baseline's score
    trivial: tuple[str, ...] = ()  # the roles whose main metric (this row) is no better


@dataclass(frozen=True)
class Cells:
    """A row as shown: "–" where a value is missing, "" where a column means nothing."""

    baseline: str
    teacher: str
    student: str
    kept: Comparison | None  # kept over the baseline
    compare: Comparison | None  # student vs teacher


@dataclass(frozen=True)
class Section:
    title: str
    rows: list[Row]


def _ratio(
    word: str, opposite: str, invert: bool = False
) -> Callable[[float, float], Comparison | None]:
    """teacher/student (or student/teacher with `invert`) as "N.Nx <word>", or as "N.Nx
    <opposite>" when the ratio is below 1 (a student slower than its teacher says so)."""

    def compare(teacher: float, student: float) -> Comparison | None:
        top, bottom = (student, teacher) if invert else (teacher, student)
        if bottom <= 0 or top <= 0:
            return None
        ratio = top / bottom
        text = f"{ratio:.1f}x {word}" if ratio >= 1 else f"{1 / ratio:.1f}x {opposite}"
        return ratio, text

    return compare


def _of_teacher(teacher: float, student: float) -> Comparison | None:
    """The plain ratio of a score: student as a share of the teacher (a positive one)."""
    ratio = score_ratio(teacher, student)
    return None if ratio is None else (100 * ratio, f"{100 * ratio:.1f}% of teacher")


def _kept(row: Row) -> Comparison | None:
    """Accuracy kept over the baseline: the share of the teacher's gain over the trivial
    baseline that the student keeps (None without a baseline or a teacher that gains)."""
    if row.baseline is None or row.teacher is None or row.student is None:
        return None
    kept = kept_over_baseline(row.teacher, row.student, row.baseline)
    return None if kept is None else (100 * kept, f"{100 * kept:.1f}% kept")


def _metric(value: float) -> str:
    return f"{100 * value:.2f}"


def _params(value: float) -> str:
    return f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value:,.0f}"


def _megabytes(value: float) -> str:
    """Bytes as MB (10^6 bytes), with three significant figures below 100 MB."""
    mb = value / 1e6
    return f"{mb:.0f} MB" if mb >= 100 else f"{mb:.3g} MB"


def _rate(value: float) -> str:
    return f"{value:.1f}"


def metric_keys(run: RunData) -> list[str]:
    """Every dev metric either model has, the main metric first, then in file order."""
    keys = list(dict.fromkeys([*run.teacher.metrics, *run.student.metrics]))
    if run.main_metric in keys:
        keys.remove(run.main_metric)
        keys.insert(0, run.main_metric)
    return keys


def sections(run: RunData) -> list[Section]:
    """The table's sections: size, dev metrics, inference speed."""
    t, s = run.teacher, run.student
    size = [
        Row("params", "parameters", _f(t.params), _f(s.params), _params, _ratio("fewer", "more"))
    ]
    for name, label in (
        ("safetensors", "safetensors"),
        ("onnx fp32", f"ONNX fp32 ({FP32_FILE})"),
        ("onnx int8", f"ONNX int8 ({INT8_FILE})"),
    ):
        size.append(
            Row(
                f"size:{name.replace(' ', '_')}",
                f"size on disk: {label}",
                _f(t.sizes.get(name)),
                _f(s.sizes.get(name)),
                _megabytes,
                _ratio("smaller", "larger"),
            )
        )
    baseline = run.baseline
    metrics = [
        Row(
            f"metric:{k}",
            f"dev {k}",
            t.metrics.get(k),
            s.metrics.get(k),
            _metric,
            _of_teacher,
            baseline.get(k),
            tuple(m.role for m in (t, s) if is_trivial(m.verdict) and m.verdict.get("metric") == k),
        )
        for k in metric_keys(run)
    ]
    metrics += _export_rows(run)
    speed = [_speed_row(run, key) for key in speed_keys(t, s)]
    size = [r for r in size if r.teacher is not None or r.student is not None]
    return [
        Section("Size", size),
        Section("Dev metrics (x100)", metrics),
        Section("Inference speed (sequences/s)", speed),
    ]


def _f(value: int | None) -> float | None:
    return None if value is None else float(value)


def _export_rows(run: RunData) -> list[Row]:
    """The main dev metric of the ONNX files, from export.json."""
    key = run.main_metric
    rows = []
    for file, label in ((FP32_FILE, "ONNX fp32"), (INT8_FILE, "ONNX int8")):
        t = run.teacher.export_metrics.get(file, {}).get(key or "")
        s = run.student.export_metrics.get(file, {}).get(key or "")
        if t is not None or s is not None:
            baseline = run.baseline.get(key or "")
            row = Row(
                f"onnx:{file}:{key}", f"{label} dev {key}", t, s, _metric, _of_teacher, baseline
            )
            rows.append(row)
    return rows


def _speed_row(run: RunData, key: tuple[str, str, int]) -> Row:
    def rate(speed: Speed | None) -> float | None:
        return speed.results.get(key) if speed else None

    return Row(
        "speed:" + ":".join(map(str, key)),
        speed_label(key),
        rate(run.teacher.speed),
        rate(run.student.speed),
        _rate,
        _ratio("faster", "slower", invert=True),
    )


def _cells(row: Row) -> Cells:
    """The row as shown; a main metric no better than the baseline gets TRIVIAL_MARK."""
    shown = {}
    for role in ROLES:
        value = getattr(row, role)
        shown[role] = row.show(value) if value is not None else "–"
        if role in row.trivial:
            shown[role] += f" {TRIVIAL_MARK}"
    compare = None
    if row.teacher is not None and row.student is not None:
        compare = row.compare(row.teacher, row.student)
    metric = row.key.startswith(("metric:", "onnx:"))
    baseline = row.show(row.baseline) if row.baseline is not None else "–" if metric else ""
    return Cells(baseline, shown["teacher"], shown["student"], _kept(row), compare)


def failures(run: RunData) -> list[str]:
    """A sentence for each model no better than the trivial baseline on its main metric."""
    models = (run.teacher, run.student)
    return [_sentence(trivial_sentence(m.role, m.verdict)) for m in models if is_trivial(m.verdict)]


def baseline_line(run: RunData) -> str:
    """What the baseline column and the two comparisons mean ("" without a baseline)."""
    if not run.baseline:
        return ""
    verdicts = (run.student.verdict, run.teacher.verdict)
    what = next((v["baseline_is"] for v in verdicts if isinstance(v.get("baseline_is"), str)), "")
    return (
        f"Baseline: the dev set's trivial baseline{f', {what}' if what else ''}, scored like the "
        "models. Kept: the share of the teacher's gain over the baseline that the student keeps, "
        "(student - baseline) / (teacher - baseline); student vs teacher: student / teacher."
    )


def start_line(run: RunData) -> str:
    """How the students started, student.init as resolved ("" if no stage recorded it)."""
    if not run.starts:
        return ""
    return "Student start: " + "; ".join(f"{k}: {v}" for k, v in run.starts.items()) + "."


def attention_line(run: RunData) -> str:
    """Which attention signal each distillation read from the teacher ("" if none recorded):
    pre-softmax scores, or probabilities for a teacher that does not expose its scores."""
    if not run.attention:
        return ""
    return "Attention: " + "; ".join(f"{k}: {v}" for k, v in run.attention.items()) + "."


def precision_line(run: RunData) -> str:
    """The precision each training stage ran in, as resolved ("" if no stage recorded it)."""
    shown = [f"{s.label} {s.precision}" for s in run.series.values() if s.precision]
    return "Precision: " + "; ".join(shown) + "." if shown else ""


# ---------------------------------------------------------------------------------------------
# shared text


def title(run: RunData) -> str:
    return f"TinyBERT run report: {run.task or 'unknown task'}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def machine_lines(run: RunData) -> list[str]:
    """Where the speed was measured: one line, or one a model if they differ."""
    measured = [(m.role, m.speed) for m in (run.teacher, run.student) if m.speed]
    lines = [f"{role}: {_machine(speed)}" for role, speed in measured]
    if len(measured) == 2 and lines[0].split(": ", 1)[1] == lines[1].split(": ", 1)[1]:
        return [_machine(measured[0][1])]
    return lines


def _machine(speed: Speed) -> str:
    parts = [speed.machine or "an unnamed machine"]
    if speed.threads:
        parts.append(f"{speed.threads} threads")
    if speed.sequences:
        tokens = f", mean {speed.mean_tokens:.1f} tokens" if speed.mean_tokens else ""
        parts.append(f"{speed.sequences} dev sentences{tokens}")
    if speed.max_seq_length:
        parts.append(f"max_seq_length {speed.max_seq_length}")
    return "speed measured on " + ", ".join(parts)


def _sentence(line: str) -> str:
    """First letter up, full stop at the end (without lowercasing the rest, as str.capitalize)."""
    return line[:1].upper() + line[1:] + ("" if line.endswith(".") else ".")


# ---------------------------------------------------------------------------------------------
# Markdown


def _md(text: str) -> str:
    """Text for Markdown (a table cell or a line): no HTML tags, pipes or line breaks."""
    return text.replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def render_markdown(run: RunData, plots: list[Plot]) -> str:
    """report.md: the same content as the HTML, images as links to the PNGs beside it."""
    lines = [f"# {title(run)}", "", f"Run directory: `{run.run_dir}`", ""]
    lines += [f"**FAILED: {_md(line)}**\n" for line in failures(run)]
    if run.missing:
        lines += ["## Missing", "", *[f"- {_md(m)}" for m in run.missing], ""]
    if run.notes:
        lines += ["## Notes", "", *[f"- {_md(n)}" for n in run.notes], ""]
    lines += ["## Teacher vs student", ""]
    lines += [
        f"Teacher: `{run.teacher.path}`; student: `{run.student.path}`.",
        "",
        "| | baseline | teacher | student | kept over baseline | student vs teacher |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for section in sections(run):
        if section.rows:
            lines.append(f"| **{_md(section.title)}** | | | | | |")
        for row in section.rows:
            c = _cells(row)
            teacher, student = (
                f"**{v}**" if TRIVIAL_MARK in v else v for v in (c.teacher, c.student)
            )
            kept = c.kept[1] if c.kept else "–" if c.baseline else ""
            compare = c.compare[1] if c.compare else "–"
            lines.append(
                f"| {_md(row.label)} | {c.baseline} | {teacher} | {student} | {kept} | {compare} |"
            )
    notes = [
        start_line(run),
        attention_line(run),
        precision_line(run),
        baseline_line(run),
        *map(_sentence, machine_lines(run)),
    ]
    lines += ["", *[f"{_md(line)}\n" for line in notes if line]]  # a paragraph each
    lines += _stages_md(run)
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p.title}]({p.name})\n" for p in plots]
    return "\n".join(lines).rstrip() + "\n"


def _stages_md(run: RunData) -> list[str]:
    if not run.stages:
        return []
    lines = ["## Stages", "", "| stage | status | wall time | command |", "|---|---|---:|---|"]
    for s in run.stages:
        command = f"`{_md(s.command)}`" if s.command else "–"
        lines.append(f"| {s.name} | {s.status} | {_duration(s.seconds)} | {command} |")
    total = sum(s.seconds or 0.0 for s in run.stages)
    return [*lines, f"| **total** | | {_duration(total)} | |", ""]


# ---------------------------------------------------------------------------------------------
# HTML

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td.text { text-align: left; } code { font-size: 0.9em; }
tr.section th { text-align: left; background: #f3f3f3; }
tbody th { text-align: left; font-weight: normal; }
.fail, td.trivial { color: #b00; font-weight: bold; }
.missing li { color: #a33; } .note { color: #555; font-size: 0.9em; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
img { max-width: 100%; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def render_html(run: RunData, plots: list[Plot]) -> str:
    """report.html: one file, its CSS inline and its images as data: URIs."""
    body = [f"<h1>{_e(title(run))}</h1>", f"<p>Run directory: <code>{_e(run.run_dir)}</code></p>"]
    body += [f'<p class="fail">FAILED: {_e(line)}</p>' for line in failures(run)]
    if run.missing:
        items = "".join(f"<li>{_e(m)}</li>" for m in run.missing)
        body.append(f'<h2>Missing</h2>\n<ul class="missing">{items}</ul>')
    if run.notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in run.notes)
        body.append(f"<h2>Notes</h2>\n<ul>{items}</ul>")
    body += _models_html(run)
    body += _stages_html(run)
    if plots:
        body.append("<h2>Plots</h2>")
        body += [_figure(p) for p in plots]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title(run))}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _models_html(run: RunData) -> list[str]:
    head = (
        "<thead><tr><th></th><th>baseline</th><th>teacher</th><th>student</th>"
        "<th>kept over baseline</th><th>student vs teacher</th></tr></thead>"
    )
    rows = []
    for section in sections(run):
        if section.rows:
            rows.append(f'<tr class="section"><th colspan="6">{_e(section.title)}</th></tr>')
        rows += [_row_html(row) for row in section.rows]
    paths = (
        f"<p>Teacher: <code>{_e(run.teacher.path)}</code>; "
        f"student: <code>{_e(run.student.path)}</code>.</p>"
    )
    notes = [
        start_line(run),
        attention_line(run),
        precision_line(run),
        baseline_line(run),
        *map(_sentence, machine_lines(run)),
    ]
    machine = [f'<p class="note">{_e(line)}</p>' for line in notes if line]
    table = f'<table id="models">{head}<tbody>\n' + "\n".join(rows) + "\n</tbody></table>"
    return ["<h2>Teacher vs student</h2>", paths, table, *machine]


def _row_html(row: Row) -> str:
    c = _cells(row)
    cells = [f"<th>{_e(row.label)}</th>"]
    for role, value, shown in (
        ("baseline", row.baseline, c.baseline),
        ("teacher", row.teacher, c.teacher),
        ("student", row.student, c.student),
    ):
        raw = f' data-value="{_raw(value)}"' if value is not None else ""
        marked = ' class="trivial"' if role in row.trivial else ""
        cells.append(f'<td data-model="{role}"{raw}{marked}>{_e(shown)}</td>')
    for role, compare, empty in (
        ("kept", c.kept, "–" if c.baseline else ""),
        ("ratio", c.compare, "–"),
    ):
        if compare:
            ratio = _raw(compare[0])
            cells.append(f'<td data-model="{role}" data-value="{ratio}">{_e(compare[1])}</td>')
        else:
            cells.append(f'<td data-model="{role}">{empty}</td>')
    return f'<tr data-key="{_e(row.key)}">' + "".join(cells) + "</tr>"


def _raw(value: float) -> str:
    """A number for a data-value attribute: exact (float() reads back the same value), whole
    numbers (weights, bytes) without ".0"."""
    return str(int(value)) if value.is_integer() else repr(value)


def _stages_html(run: RunData) -> list[str]:
    if not run.stages:
        return []
    head = "<tr><th>stage</th><th>status</th><th>wall time</th><th>command</th></tr>"
    rows = []
    for s in run.stages:
        seconds = f' data-value="{_raw(s.seconds)}"' if s.seconds is not None else ""
        command = f"<code>{_e(s.command)}</code>" if s.command else "–"
        rows.append(
            f'<tr data-key="{_e(s.name)}"><th>{_e(s.name)}</th><td class="text">{_e(s.status)}'
            f"</td><td{seconds}>{_duration(s.seconds)}</td>"
            f'<td class="text">{command}</td></tr>'
        )
    total = sum(s.seconds or 0.0 for s in run.stages)
    rows.append(f"<tr><th>total</th><td></td><td>{_duration(total)}</td><td></td></tr>")
    table = f'<table id="stages"><thead>{head}</thead><tbody>' + "".join(rows) + "</tbody></table>"
    return ["<h2>Stages</h2>", table]


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (
        f'<figure><img alt="{_e(plot.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(plot.title)}</figcaption></figure>"
    )
