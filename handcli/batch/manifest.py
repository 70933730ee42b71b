"""DIR/batch_manifest.json: one entry per video, rewritten atomically each time a video finishes, so a batch
that is killed leaves a manifest that says exactly which videos are done.

Entry: {"source", "output", "key" (the content key: the video's sha256 and the run settings' digest),
"status" ("done" | "failed" | "pending"), "seconds", "error" (one line or null), "finished" (UTC ISO time)}.
A video is skipped on a later batch when its entry is "done" with the same key and its output file exists.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from handcli.artifacts import atomic_path

MANIFEST_NAME = "batch_manifest.json"
FORMAT = "handcli-batch-manifest/1"


class Manifest:
    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / MANIFEST_NAME
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            try:
                payload = json.loads(self.path.read_text())
                if payload.get("format") == FORMAT and isinstance(payload.get("videos"), dict):
                    self.entries = payload["videos"]
            except (OSError, ValueError):
                self.entries = {}  # unreadable: every video counts as not done (nothing is lost but time)

    def is_done(self, name: str, key: str, output: Path) -> bool:
        entry = self.entries.get(name, {})
        return entry.get("status") == "done" and entry.get("key") == key and Path(output).is_file()

    def record(self, name: str, **entry) -> None:
        self.entries[name] = {**self.entries.get(name, {}), **entry,
                              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.save()

    def save(self) -> None:
        with atomic_path(self.path) as temporary:
            Path(temporary).write_text(json.dumps({"format": FORMAT, "videos": self.entries}, indent=1))
