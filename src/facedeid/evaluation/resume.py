"""Append-only per-frame results, so that Ctrl-C or a crash loses nothing and `--resume` double-counts nothing.

* `OUT/per_frame.csv` gets one row per (model, frame) as soon as that frame's metrics are known; each row is
  written with one write call and flushed.
* `OUT/run.json` records what the rows mean (data set, box source). `--resume` refuses to mix rows of another
  configuration; models may be added on resume (they are computed for every frame).
* On resume a torn last line (crash in the middle of a write) is cut off, duplicate (model, key) rows keep the
  first one, and the final numbers are computed from the file alone: an interrupted and resumed run gives the
  same numbers as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

COLUMNS = (
    "model", "key", "status", "bin", "area_share", "faces", "ssim", "psnr", "psnr_db", "image_sim",
    "reid_matches", "reid_dist", "det_found", "orig_det_found", "gt_faces", "gt_recalled", "server_faces",
    "server_blurred", "untouched", "false_pos",
    "latency_ms", "server_s", "width", "height", "url",
)
CONFIG_KEYS = ("dataset_dir", "boxes", "shard")


class ResumeError(RuntimeError):
    pass


def read_rows(path: Path) -> list[dict]:
    """The complete rows of a per_frame.csv, first row per (model, key) (also read by evaluation/merge.py)."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return []
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ResumeError(f"{path} has other columns than this version writes; use another --output_dir")
    seen, rows = set(), []
    for row in reader:
        ident = (row["model"], row["key"])
        if ident in seen or None in row.values():
            continue
        seen.add(ident)
        rows.append(row)
    return rows


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision: numbers read back are the numbers computed
    return str(value)


class ResultsLog:
    def __init__(self, out_dir, config: dict, resume: bool = False, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / "per_frame.csv"
        self.config_path = self.out_dir / "run.json"
        self.config = {k: config.get(k) for k in CONFIG_KEYS}
        if self.path.exists() and not (resume or overwrite):
            raise ResumeError(f"{self.out_dir} already holds results (per_frame.csv); pass --resume to continue "
                              f"that run, --overwrite to start again, or choose another --output_dir")
        if overwrite and not resume:
            for p in (self.path, self.config_path):
                if p.exists():
                    p.unlink()
        if resume and self.config_path.exists():
            previous = json.loads(self.config_path.read_text())
            diff = {k: (previous.get(k), self.config[k]) for k in CONFIG_KEYS if previous.get(k) != self.config[k]}
            if diff:
                detail = "; ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in diff.items())
                raise ResumeError(f"cannot resume {self.out_dir}: the run was made with other settings ({detail})")
        self.config_path.write_text(json.dumps(self.config, indent=2) + "\n")
        self._repair()
        self.rows = self.read()
        self.done = {(r["model"], r["key"]) for r in self.rows}
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        if new:
            self._write_line(",".join(COLUMNS) + "\n")

    def _repair(self) -> None:
        """Cut a torn last line (no newline at the end) left by a crash mid-write."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)

    def read(self) -> list[dict]:
        """All complete rows, first row per (model, key)."""
        return read_rows(self.path)

    def _write_line(self, line: str) -> None:
        self._fh.write(line)
        self._fh.flush()

    def append(self, row: dict) -> None:
        ident = (row["model"], row["key"])
        if ident in self.done:
            return
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_fmt(row.get(c)) for c in COLUMNS])
        self._write_line(buf.getvalue())
        self.done.add(ident)
        parsed = next(csv.DictReader(io.StringIO(",".join(COLUMNS) + "\n" + buf.getvalue())))
        self.rows.append(parsed)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
