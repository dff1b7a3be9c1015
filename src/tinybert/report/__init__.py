"""tinybert.report: the run report (`tinybert report RUN_DIR`) and the model cards (card.py).

    from tinybert.report import build_report
    result = build_report("runs/demo")  # runs/demo/report/{report.md, report.html, *.png}

collect.py reads a run directory's files into dataclasses, plots.py draws the figures, render.py
writes the Markdown and the self-contained HTML; files.py holds the file names and readers
they share with card.py. A report is built from files alone: importing this package does not
import torch (naming a task's main metric asks the task registry, which does).
"""

from tinybert.report.render import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]
