"""The report's figures as PNG bytes (matplotlib, headless Agg backend).

    plots = make_plots(run)  # [Plot("loss.png", "Training loss", b"\\x89PNG..."), ...]

A figure whose data is missing is left out. matplotlib is imported on first use, so importing
the report package (and the model cards beside it) stays cheap; figures are made without
pyplot, so no backend is switched and nothing global is left open.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tinybert.report.collect import Model, RunData, Series, common_speed, speed_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
PARTS = ("att_loss", "hid_loss", "emb_loss")  # phase 1 and GD: the loss's three terms
COLORS = {"teacher": "#4c72b0", "student": "#dd8452"}


@dataclass(frozen=True)
class Plot:
    """One figure: its file name in the report folder, a caption and the PNG bytes."""

    name: str
    title: str
    png: bytes


def _points(rows: list) -> dict[str, Any]:
    """Markers for a short series: a line through one or two logged steps is invisible."""
    return {"marker": "o", "markersize": 3} if len(rows) <= 10 else {}


def make_plots(run: RunData) -> list[Plot]:
    """Every figure the run has data for, in report order."""
    plots = []
    for name, title, make in FIGURES:
        figure = make(run)
        if figure is not None:
            plots.append(Plot(name, title, _png(figure)))
    return plots


def _figure(width: float, height: float) -> Figure:
    """A new figure, drawn by the Agg renderer on save. matplotlib.figure.Figure without pyplot:
    no global figure list to close, and a caller's interactive backend is left alone."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(figure: Figure) -> bytes:
    """The figure as PNG bytes (no software name in the metadata, so rebuilds are identical)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _grid(n: int, width: float = 5.0, height: float = 3.2) -> tuple[Figure, list[Axes]]:
    """A figure with `n` panels, two a row."""
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    figure = _figure(width * cols, height * rows)
    flat = list(figure.subplots(rows, cols, squeeze=False).flat)
    for extra in flat[n:]:
        extra.set_visible(False)
    return figure, flat[:n]


def _column(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows that have `key`."""
    pairs = [(r["step"], r[key]) for r in rows if key in r]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def loss_figure(run: RunData) -> Figure | None:
    """Training loss against step, one panel per stage; phase 1 and GD with their parts."""
    stages = [s for s in run.series.values() if s.train]
    if not stages:
        return None
    figure, axes = _grid(len(stages))
    for ax, series in zip(axes, stages, strict=True):
        ax.plot(*_column(series.train, "loss"), label="loss", color="black", linewidth=1.2,
                **_points(series.train))  # fmt: skip
        for part in PARTS:
            steps, values = _column(series.train, part)
            if steps:
                ax.plot(steps, values, label=part.removesuffix("_loss"), linewidth=0.9,
                        **_points(series.train))  # fmt: skip
        ax.set_title(series.label, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if any(p in series.train[0] for p in PARTS):
            ax.legend(fontsize=8)
    return figure


def dev_metric_figure(run: RunData) -> Figure | None:
    """The main dev metric against step for finetune and phase 2, the best step marked."""
    key = run.main_metric
    stages = [
        s
        for k, s in run.series.items()
        if k in ("teacher", "prediction") and key and any(key in m for _, m in s.evals)
    ]
    if key is None or not stages:
        return None
    figure, axes = _grid(len(stages))
    for ax, series in zip(axes, stages, strict=True):
        points = [(step, m[key]) for step, m in series.evals if key in m]
        ax.plot(*zip(*points, strict=True), marker="o", markersize=3, linewidth=1.2)
        best_step, best = _best(series, points)
        ax.plot(
            [best_step],
            [best],
            marker="*",
            markersize=14,
            color="#c44e52",
            linestyle="",
            label=f"best {best:.4f} at step {best_step}",
        )
        ax.legend(fontsize=8, loc="best")  # placed where it hides the fewest points
        ax.set_title(series.label, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(f"dev {key}")
        ax.grid(alpha=0.3)
    return figure


def _best(series: Series, points: list[tuple[int, float]]) -> tuple[int, float]:
    """The best step: the one the "done" row names, else the highest value (earliest on ties)."""
    for step, value in points:
        if step == series.best_step:
            return step, value
    return max(points, key=lambda p: (p[1], -p[0]))


def comparison_figure(run: RunData) -> Figure | None:
    """Bars of teacher vs student: the main dev metric, a speed both were timed at, size (MB)."""
    t, s = run.teacher, run.student
    panels: list[tuple[str, float, float]] = []
    key = run.main_metric
    if key and key in t.metrics and key in s.metrics:
        panels.append((f"dev {key}", t.metrics[key], s.metrics[key]))
    speed = common_speed(t, s)
    if speed is not None and t.speed and s.speed:
        label = f"sequences/s ({speed_label(speed)})"
        panels.append((label, t.speed.results[speed], s.speed.results[speed]))
    if "safetensors" in t.sizes and "safetensors" in s.sizes:
        panels.append(("size on disk, MB", _mb(t), _mb(s)))
    if not panels:
        return None
    figure = _figure(3.3 * len(panels), 3.2)
    axes = figure.subplots(1, len(panels), squeeze=False)
    for ax, (title, teacher, student) in zip(axes[0], panels, strict=True):
        _bars(ax, title, teacher, student)
    return figure


def _mb(model: Model) -> float:
    return model.sizes["safetensors"] / 1e6


def _bars(ax: Axes, title: str, teacher: float, student: float) -> None:
    bars = ax.bar(["teacher", "student"], [teacher, student], color=list(COLORS.values()))
    ax.bar_label(bars, labels=[f"{v:.4g}" for v in (teacher, student)], fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)


def general_figure(run: RunData) -> Figure | None:
    """General distillation: its loss (with parts) and tokens/s against step."""
    series = run.series.get("general")
    if series is None or not series.train:
        return None
    figure, (loss_ax, speed_ax) = _grid(2)
    loss_ax.plot(*_column(series.train, "loss"), label="loss", color="black", linewidth=1.2,
                 **_points(series.train))  # fmt: skip
    for part in PARTS:
        steps, values = _column(series.train, part)
        if steps:
            loss_ax.plot(steps, values, label=part.removesuffix("_loss"), linewidth=0.9)
    loss_ax.legend(fontsize=8)
    speed_ax.plot(*_column(series.train, "tokens_per_s"), color="#55a868", linewidth=1.2)
    for ax, title in ((loss_ax, "general distillation: loss"), (speed_ax, "tokens/s")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return figure


# (file name, caption, maker) of every figure, in report order.
FIGURES: tuple[tuple[str, str, Callable[[RunData], Figure | None]], ...] = (
    ("loss.png", "Training loss per stage", loss_figure),
    ("dev_metric.png", "Dev metric during training", dev_metric_figure),
    ("teacher_vs_student.png", "Teacher vs student", comparison_figure),
    ("general_distill.png", "General distillation: loss and throughput", general_figure),
)
PLOT_FILES = tuple(name for name, _, _ in FIGURES)
