"""`eval/benchmark.py`: command line of the benchmark (and of its worker processes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import cli_args
from .report import markdown
from .run import OVERRIDES, run
from .workers import DEFAULT_CONCURRENCY, DEFAULT_MODES, INPROC_SPIN, INPROC_THREADS, MODES, worker_main


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables; 1 when a mode failed (its error is in the report)."""
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description="Benchmark eager / onnxruntime / triton / blur on the same frames.")
    parser.add_argument("--model", default="mobileunet", help="generator (default mobileunet)")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--in-process", action="store_true",
                        help="time only the in-process PyTorch pipeline (mode torch, facedeid.runtime_torch)")
    parser.add_argument("--device", default=None,
                        help="device of the torch mode: cpu or cuda (default: cuda where PyTorch sees one)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the frames per mode")
    parser.add_argument("--frames", type=int, default=None, help="use the first N scene frames (default: all)")
    parser.add_argument("--concurrency", default=",".join(map(str, DEFAULT_CONCURRENCY)),
                        help="comma list of requests in flight to try in triton mode")
    parser.add_argument("--flops-models", default="all",
                        help="generators for the FLOPs/peak table: 'all', 'none' or a comma list")
    parser.add_argument("--url", help="use a running server (gRPC host:port) instead of starting one; its "
                        "statistics API needs its admin key in $TRITON_ADMIN_KEY")
    parser.add_argument("--repository", type=Path, help="an exported repository to use instead of exporting one")
    parser.add_argument("--server-pid", type=int, help="pid of the running server (for its memory)")
    parser.add_argument("--gen-threads", type=int, help="override the generator's ORT intra-op threads")
    parser.add_argument("--det-threads", type=int, help="override the detector's ORT intra-op threads")
    parser.add_argument("--queue-delay-us", type=int, help="override the generator's dynamic batching delay")
    parser.add_argument("--gen-instances", type=int, help="override the generator's instance count")
    parser.add_argument("--det-instances", type=int, help="override the detector's instance count")
    parser.add_argument("--spin", type=int, choices=(0, 1), help="override ORT thread spinning (detector, generator)")
    parser.add_argument("--torch-threads", type=int, help="eager mode's torch threads (default: all cores)")
    parser.add_argument("--inproc-threads", type=int,
                        help=f"in-process ORT intra-op threads (default {INPROC_THREADS})")
    parser.add_argument("--inproc-spin", type=int, choices=(0, 1), default=int(INPROC_SPIN),
                        help="in-process ORT thread spinning")
    parser.add_argument("--gen-max-batch", type=int, help="override the generator's max_batch_size")
    parser.add_argument("--stage-instances", type=int, help="override detect_prep/face_prep/compose instances")
    parser.add_argument("--full-size", type=int,
                        help="override detect_prep/face_prep full_size (cap of the full-resolution pass; 0 native)")
    parser.add_argument("--det-size", type=int, help="override detect_prep/face_prep det_size (downscaled pass)")
    parser.add_argument("--min-generate-side", type=float,
                        help="override face_prep's min_generate_side (0: generate every confident face)")
    parser.add_argument("--temporal", type=int, nargs="?", const=40, default=0, metavar="FRAMES",
                        help="also measure face stability in video for the generator and blur through the same "
                        "server (camera-move clips of FRAMES frames, default 40; as `facedeid eval temporal`)")
    parser.add_argument("--json", type=Path, default=Path("benchmark_results.json"), help="where to write results")
    parser.add_argument("--markdown", type=Path, help="also write the tables as markdown here")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary folder)")
    parser.add_argument("--worker", choices=[*MODES, "hardware"], help=argparse.SUPPRESS)
    parser.add_argument("--setup", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = cli_args.finish(parser).parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.setup, args.worker_out)
        return 0
    modes = ["torch"] if args.in_process else [m for m in args.modes.split(",") if m]
    if "torch" in modes:
        from ..runtime_torch import pick_device

        try:
            args.device = pick_device(args.device)
        except ValueError as exc:
            parser.error(str(exc))
    if args.temporal and "triton" not in modes and not args.url:
        parser.error("--temporal runs through the server: include the triton mode or give --url")
    if args.temporal == 1 or args.temporal < 0:
        parser.error("--temporal needs at least 2 frames per clip")
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    from ..models import GENERATORS

    named = {"all": list(GENERATORS), "none": []}
    flops = named[args.flops_models] if args.flops_models in named else args.flops_models.split(",")
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    result = run(args.model, modes, args.repeats, args.frames, [int(c) for c in args.concurrency.split(",")],
                 args.url, args.repository, args.server_pid, overrides, flops, args.workdir,
                 inproc_threads=args.inproc_threads, inproc_spin=bool(args.inproc_spin),
                 torch_threads=args.torch_threads, device=args.device, temporal_frames=args.temporal)
    args.json.write_text(json.dumps(result, indent=1))
    text = markdown(result)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    print(f"\nresults: {args.json}")
    return 1 if result["errors"] else 0


