"""<output_dir>/run.json: what `tinybert run` planned and did, stage by stage.

Rewritten atomically after every stage, so a report of an interrupted run sees every stage that
finished. A stage skipped as already finished keeps the wall time of the run that did its work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinybert.paths import write_atomic
from tinybert.pipeline.wiring import Stage, Wiring

RUN_FILE = "run.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class PipelineRecord:
    path: Path
    data: dict[str, Any]

    @classmethod
    def start(
        cls,
        w: Wiring,
        configs: list[str],
        overrides: list[str],
        task: str,
        stages: list[Stage],
    ) -> PipelineRecord:
        """A record for this run; what an earlier run in the same folder recorded for a stage
        (its time, its settings) is kept until the stage runs again."""
        path = w.out / RUN_FILE
        old = _read(path)
        before = {s.get("name"): s for s in old.get("stages", []) if isinstance(s, dict)}
        data = {
            "configs": configs,
            "overrides": overrides,
            "task": task,
            "started_at": old.get("started_at") or _now(),
            "updated_at": _now(),
            "models": w.models(),
            "stages": [
                {
                    "name": s.name,
                    "status": before.get(s.name, {}).get("status", "pending"),
                    "seconds": before.get(s.name, {}).get("seconds"),
                    "reads": s.reads,
                    "writes": s.writes,
                    "command": " && ".join(s.commands),
                    "commands": s.commands,
                    "settings": before.get(s.name, {}).get("settings"),
                }
                for s in stages
            ],
        }
        return cls(path, data)

    def stage(self, name: str) -> dict[str, Any]:
        return next(s for s in self.data["stages"] if s["name"] == name)

    def finish(self, stage: Stage, status: str, seconds: float, w: Wiring) -> None:
        """Record a stage's end: done (worked), skipped (was finished), failed, interrupted.
        A skipped stage keeps the time of the run that did its work (null if none recorded
        it, e.g. it was run by its own command)."""
        entry = self.stage(stage.name)
        entry["status"] = status
        if status != "skipped":
            entry["seconds"] = round(seconds, 2)
        if status in ("done", "skipped"):
            entry["settings"] = stage.settings
        self.data["models"] = w.models()
        self.write()

    def write(self) -> None:
        self.data["updated_at"] = _now()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self.data, indent=2) + "\n")


def _read(path: Path) -> dict[str, Any]:
    """An earlier run's record; an unreadable one is started afresh (it is a log, not state)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
