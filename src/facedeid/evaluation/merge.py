"""`eval/triton_eval.py --merge OUT_0 OUT_1 ... --output_dir OUT`: one evaluation from the outputs of its shards.

Every shard folder must hold a finished `--shard K/N` run (metrics.json with its `shard` record, per_frame.csv).
Before anything is written the shards are checked to belong together: one data set (same keys and labels), the
same models, box source and frame limit, the same generator weights, indices 0..N-1 each exactly once, and every
shard complete. Then the rows are joined into OUT/per_frame.csv and the tables, metrics.json and report are
computed from them by the same code as a single run: sums run in key order (evaluation/table.py), so every number
equals that of one run over all frames (timings aside: they add the shards' busy time).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
from pathlib import Path

from ..data.dna import atomic_write_bytes
from .resume import COLUMNS, ResumeError, _fmt, read_rows
from .shards import ShardError, keys_digest

# What must be equal in every shard's metrics.json for the shards to be parts of one evaluation.
MUST_MATCH = ("models", "boxes", "facedeid_version", "generators")
SHARD_MUST_MATCH = ("count", "frames_in_dataset", "dataset_sha256", "options")


def _load(folder: Path) -> tuple[dict, list[dict]]:
    metrics_path = folder / "metrics.json"
    if not metrics_path.is_file():
        raise ShardError(f"{folder}: no metrics.json (not an evaluation output, or the shard has not finished: "
                         "rerun it with --resume)")
    metrics = json.loads(metrics_path.read_text())
    if not isinstance(metrics.get("shard"), dict):
        raise ShardError(f"{folder}: not the output of a --shard K/N run")
    try:
        rows = read_rows(folder / "per_frame.csv")
    except ResumeError as exc:
        raise ShardError(str(exc)) from None
    return metrics, rows


def _differs(records: list[tuple[Path, dict]], key: str) -> str | None:
    first_folder, first = records[0]
    for folder, record in records[1:]:
        if record.get(key) != first.get(key):
            return (f"{key} differs: {first_folder} has {json.dumps(first.get(key))[:200]}, "
                    f"{folder} has {json.dumps(record.get(key))[:200]}")
    return None


def check_shards(folders: list[Path]) -> list[tuple[Path, dict, list[dict]]]:
    """Load and check the shard outputs; raise ShardError on anything that would not give one run's numbers."""
    if len({f.resolve() for f in folders}) != len(folders):
        raise ShardError("a shard folder is given twice")
    loaded = [(f, *_load(f)) for f in folders]
    problems = [p for key in MUST_MATCH if (p := _differs([(f, m) for f, m, _ in loaded], key))]
    problems += [f"shard {p}" for key in SHARD_MUST_MATCH
                 if (p := _differs([(f, m["shard"]) for f, m, _ in loaded], key))]
    if problems:
        raise ShardError("these outputs are not shards of one evaluation:\n  " + "\n  ".join(problems))
    count = loaded[0][1]["shard"]["count"]
    by_index: dict[int, list[Path]] = {}
    for folder, metrics, _ in loaded:
        by_index.setdefault(metrics["shard"]["index"], []).append(folder)
    duplicated = {k: v for k, v in by_index.items() if len(v) > 1}
    if duplicated:
        raise ShardError("duplicated shard: " + "; ".join(
            f"{k}/{count} in {', '.join(map(str, v))}" for k, v in sorted(duplicated.items())))
    missing = sorted(set(range(count)) - set(by_index))
    if missing:
        raise ShardError(f"missing shard(s) {', '.join(f'{k}/{count}' for k in missing)} "
                         f"(given: {', '.join(f'{k}/{count}' for k in sorted(by_index))})")
    for folder, metrics, rows in loaded:
        record = metrics["shard"]
        for model in metrics["models"]:
            keys = sorted(r["key"] for r in rows if r["model"] == model)
            if len(keys) != record["frames"] or keys_digest(keys) != record["keys_sha256"]:
                raise ShardError(f"{folder}: shard {record['index']}/{count} is incomplete for {model} "
                                 f"({len(keys)} of {record['frames']} frames): finish it with --resume")
    return sorted(loaded, key=lambda item: item[1]["shard"]["index"])


def _write_rows(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_fmt(row.get(c)) if row.get(c) not in ("", None) else "" for c in COLUMNS])
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _copy_examples(shards, out: Path) -> None:
    """The report's before/after grid: per bin, the first frame in key order over all shards (as one run picks)."""
    chosen: dict[str, tuple[str, Path]] = {}
    for folder, _, _ in shards:
        for marker in sorted((folder / "examples").glob("*.key")):
            key = marker.read_text().strip()
            if marker.stem not in chosen or key < chosen[marker.stem][0]:
                chosen[marker.stem] = (key, folder)
    for b, (key, folder) in chosen.items():
        target = out / "examples"
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{b}.key").write_text(key + "\n")
        for image in (folder / "examples").glob(f"{b}__*.jpg"):
            shutil.copy2(image, target / image.name)


def merge(folders: list[Path], output_dir: Path, argv: list[str], no_report: bool = False,
          overwrite: bool = False, log=None) -> dict:
    from .runner import Evaluation

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    shards = check_shards([Path(f) for f in folders])
    out = Path(output_dir)
    if any(out.resolve() == f.resolve() for f, _, _ in shards):
        raise ShardError(f"--output_dir {out} is one of the shard folders; choose a new folder")
    if not overwrite and any((out / name).exists() for name in ("per_frame.csv", "metrics.json")):
        raise ShardError(f"{out} already holds results; pass --overwrite or choose another --output_dir")
    first = shards[0][1]
    models = first["models"]
    order = {m: k for k, m in enumerate(models)}
    rows = sorted((r for _, _, shard_rows in shards for r in shard_rows),
                  key=lambda r: (r["key"], order.get(r["model"], len(order))))
    out.mkdir(parents=True, exist_ok=True)
    _write_rows(out / "per_frame.csv", rows)
    _copy_examples(shards, out)
    from . import per_face

    for folder, _, _ in shards:  # fid_eff features, reid per face, original descriptors: as one run keeps them
        per_face.copy(folder, out)
    urls = sorted({u for _, m, _ in shards for u in m.get("urls", [])})
    args = argparse.Namespace(dataset_dir=first["dataset_dir"], model=",".join(models), output_dir=out,
                              boxes=first["boxes"], url=urls or None, concurrency=1, batch_size=1,
                              no_report=no_report, no_labels_ok=first.get("no_labels_ok", False))
    evaluation = Evaluation(args, log=log)
    evaluation.argv = argv
    evaluation.orphan_labels = first.get("labels_without_image", [])
    evaluation.missing_labels = [None] * first.get("missing_labels", 0)  # of the whole data set, as in every shard
    evaluation.server_info = first.get("servers", {})
    evaluation.request_stats = {"per_shard": [m.get("requests_this_session", {}) for _, m, _ in shards]}
    evaluation.extra_metrics = {"merged_from": [
        {"folder": str(f), "shard": f"{m['shard']['index']}/{m['shard']['count']}", "frames": m["shard"]["frames"],
         "started": m.get("started"), "finished": m.get("finished"), "command": m.get("command")}
        for f, m, _ in shards]}
    frames = [None] * first["shard"]["frames_in_dataset"]  # finish() only counts them
    started = min(m.get("started") or "" for _, m, _ in shards)
    log(f"merged {len(shards)} shards: {first['shard']['frames_in_dataset']} frames, {len(rows)} rows")
    return evaluation.finish(frames, rows, started)


def main(args: argparse.Namespace) -> int:
    if args.output_dir is None:
        print("triton_eval: --merge needs --output_dir (where the merged results go)", file=sys.stderr)
        return 2
    if getattr(args, "shard", None) is not None:
        print("triton_eval: --merge and --shard exclude each other", file=sys.stderr)
        return 2
    try:
        merge(args.merge, args.output_dir, list(getattr(args, "argv", []) or []), no_report=args.no_report,
              overwrite=args.overwrite)
    except ShardError as exc:
        print(f"triton_eval: {exc}", file=sys.stderr)
        return 2
    return 0
