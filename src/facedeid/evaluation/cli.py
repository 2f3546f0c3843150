"""`eval/triton_eval.py` and `facedeid eval`: the evaluation's arguments and entry point (the run itself is
evaluation/runner.py).

    python eval/triton_eval.py --dataset-dir DIR --model mobileunet,blur --batch-size 16 --output-dir OUT \
        [--save] [--url 127.0.0.1:8001 --url host2:8001] [--boxes gt|detect] [--resume]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import cli_args
from ..settings import DEFAULT_URL
from .measure import METRIC_THREADS
from .resume import ResumeError
from .runner import Evaluation


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=cli_args.prog("triton_eval.py"),
        description="Evaluate face de-identification served by Triton on a DNA-format data set "
                    "(metrics computed on the client; see docs/evaluation.md).")
    p.add_argument("--dataset-dir", type=Path, help="folder with images/ and labels/ (required unless --merge)")
    p.add_argument("--model",
                   help="(required unless --merge) "
                        "generator(s) and/or baselines, comma-separated: mobileunet, resnet50unet, d2gan, blur, mosaic")
    p.add_argument("--output-dir", required=True, type=Path,
                   help="results folder: metrics.json, per_frame.csv, report.html (and frames with --save)")
    p.add_argument("--batch-size", type=int, default=16, help="frames read, sent and measured together (default 16)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="requests in flight over all servers (default: --batch-size)")
    p.add_argument("--url", action="append", default=None,
                   help=f"Triton gRPC address; repeat (or comma-separate) to spread frames over several servers "
                        f"(default {DEFAULT_URL})")
    p.add_argument("--boxes", choices=("gt", "detect"), default="gt",
                   help="gt: label boxes through deid_<model>_boxes (default); detect: the full detection ensemble "
                        "deid_<model>, and detector recall against the labels")
    from ..client.cover import add_cover_argument
    from ..client.detection_settings import add_detection_arguments

    add_detection_arguments(p)
    add_cover_argument(p)
    p.add_argument("--save", action="store_true", help="write de-identified frames under OUT/<bin>/")
    p.add_argument("--identify", action="store_true",
                   help="closed-set identification against the data set's own original faces: person = first "
                        "folder of each image's path (see evaluation/identification.py)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in OUT without recomputing")
    p.add_argument("--overwrite", action="store_true", help="discard results already in OUT and start again")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one frame before asking again "
                   "(default 120; the server still finishes the first)")
    p.add_argument("--retries", type=int, default=8,
                   help="retries per request while a server is unavailable (backoff 0.5 s doubling to 8 s: "
                        "about 40 s in all, enough for a server restart)")
    p.add_argument("--ready-timeout", type=float, default=120.0,
                   help="seconds to wait for the servers to be ready (default 120)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N frames (sorted by path)")
    p.add_argument("--no-labels-ok", dest="no_labels_ok", action="store_true",
                   help="images without a label file are face-free frames by intent (no warning; still counted "
                        "as missing_labels in metrics.json)")
    p.add_argument("--temporal", action="store_true",
                   help="also (or, without --dataset-dir, only) measure video stability of the same models on clips "
                        "with a known camera move, through the tracked video path (evaluation/temporal.py): "
                        "OUT/temporal.json and its table")
    p.add_argument("--no-report", action="store_true", help="skip OUT/report.html")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--metric-threads", type=int, default=METRIC_THREADS,
                   help=f"frames measured at once by threads of this process (default {METRIC_THREADS}; 1: one at a "
                        "time); the metric networks run in ONNX Runtime, which computes outside Python's lock")
    p.add_argument("--workers", type=int, default=0,
                   help="metric worker processes beside the requests instead of threads (default 0: none); each "
                        "loads the metric networks (about 0.5 GB)")
    p.add_argument("--no-cache", action="store_true",
                   help="measure the original frames again instead of reading what an earlier run measured on the "
                        "same frames and labels from $FACEDEID_CACHE/eval-originals (evaluation/originals.py)")
    p.add_argument("--shard", type=_shard_arg, default=None, metavar="K/N",
                   help="evaluate only shard K of N (frames K, K+N, K+2N, ... in key order; K from 0); "
                        "join the shards' output folders with --merge")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="OUT_K",
                   help="merge the output folders of all N shards into --output-dir (metrics.json, per_frame.csv, "
                        "report): the numbers of one run over every frame. Nothing is sent to a server")
    return cli_args.finish(p)


def _shard_arg(text: str):
    from .shards import ShardError, parse_shard

    try:
        return parse_shard(text)
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from .run_files import parse_args_with_run_file  # `--config config/*.yml`: file values become defaults

    parser = build_parser()
    args, _notes = parse_args_with_run_file(parser, argv)
    args.argv = argv
    if args.merge:
        from .merge import main as merge_main

        return merge_main(args)
    missing = [flag for flag, value in (("--dataset-dir", args.dataset_dir), ("--model", args.model)) if not value]
    if args.temporal and args.model and not args.dataset_dir:
        return _temporal(args)
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    if getattr(args, "identify", False) and args.shard is not None:
        # the gallery is every original face of the data set; a shard holds only its own frames
        parser.error("--identify needs the whole data set as its gallery: run it without --shard")
    try:
        Evaluation(args).run()
    except ResumeError as exc:
        print(f"triton_eval: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"triton_eval: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return _temporal(args) if args.temporal else 0


def _temporal(args) -> int:
    from ..settings import DEFAULT_URL
    from .temporal import run, table, write_result

    url = ",".join(args.url) if args.url else DEFAULT_URL
    models = [m for m in args.model.split(",") if m]
    try:
        result = run(models, args.output_dir / "temporal", url, frames=40)
    except RuntimeError as exc:
        print(f"triton_eval: {exc}", file=sys.stderr)
        return 1
    result["command"] = "facedeid eval " + " ".join(args.argv)
    write_result(result, args.output_dir / "temporal.json")
    print(table(result))
    return 0
