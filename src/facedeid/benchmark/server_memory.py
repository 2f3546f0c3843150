"""Server memory before, at the peak of and after a 4K clip: resident memory of tritonserver and its Python-backend
stubs, summed (Linux /proc), sampled every 0.2 s.

    python -m facedeid.benchmark.server_memory --repository REPO --scenes ../shared/data/faces/scenes \
        --json docs/results/server_memory.json [--no-malloc-env]

The clip: `--frames` 3840x2160 frames of real scenes packed side by side (benchmark.large_frames, hundreds of small
faces each), shifted a few pixels per frame, sent `--concurrency` at a time to `deid_<generator>` of a server
started here over REPO (an exported repository, CPU configs). "before" is after one 640x480 warm-up frame, "after"
is `--settle` seconds after the last answer. `--no-malloc-env` starts the server without
tritonserver_cli.MALLOC_ENV, to see what the glibc settings do.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import cli_args


def _mb(n: float) -> float:
    return round(n / 2**20, 1)


def measure(repository: Path, scenes: Path, frames: int, concurrency: int, generator: str, settle: float,
            malloc_env: bool) -> dict:
    import tritonclient.grpc as grpcclient

    from ..serving import local_server
    from .large_frames import small_face_frame

    base, _ = small_face_frame(scenes, 3840, 2160, 0.4)
    clip = [np.ascontiguousarray(np.roll(base, 7 * i, axis=1)) for i in range(frames)]
    log = Path(tempfile.mkdtemp()) / "tritonserver.log"
    server = local_server.start(repository, log, malloc_env=malloc_env)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.monotonic(), server.rss_bytes()))
            stop.wait(0.2)

    try:
        model = f"deid_{generator}"

        def send(frame):
            client = grpcclient.InferenceServerClient(server.grpc_url)
            try:
                tensor = grpcclient.InferInput("FRAME", list(frame.shape), "UINT8")
                tensor.set_data_from_numpy(frame)
                client.infer(model, [tensor], client_timeout=600)
            finally:
                client.close()

        send(np.zeros((480, 640, 3), np.uint8))
        time.sleep(2)
        before = server.rss_bytes()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(send, clip))
        wall = time.monotonic() - start
        time.sleep(settle)
        after = server.rss_bytes()
        stop.set()
        sampler.join()
    finally:
        stop.set()
        server.stop()
    peak = max(rss for _, rss in samples)
    return {"frames": frames, "frame": "3840x2160", "model": model, "concurrency": concurrency,
            "malloc_env": malloc_env, "rss_mb_before": _mb(before), "rss_mb_peak": _mb(peak),
            "rss_mb_after": _mb(after), "settle_s": settle, "clip_wall_s": round(wall, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facedeid.benchmark.server_memory", description=__doc__.splitlines()[0])
    p.add_argument("--repository", type=Path, required=True, help="an exported model repository (CPU configs)")
    p.add_argument("--scenes", type=Path, required=True, help="folder of scene photos to pack into 4K frames")
    p.add_argument("--frames", type=int, default=12, help="frames in the clip (default 12)")
    p.add_argument("--concurrency", type=int, default=4, help="frames in flight (default 4)")
    p.add_argument("--generator", default="mobileunet", help="deid_<generator> to send to (default mobileunet)")
    p.add_argument("--settle", type=float, default=15.0, help="seconds after the clip before 'after' (default 15)")
    p.add_argument("--no-malloc-env", action="store_true", help="start the server without the glibc malloc settings")
    p.add_argument("--json", type=Path, default=None, help="also write the result and the command here")
    args = cli_args.finish(p).parse_args(argv)
    result = measure(args.repository, args.scenes, args.frames, args.concurrency, args.generator, args.settle,
                     not args.no_malloc_env)
    print(json.dumps(result))
    if args.json:
        command = "python -m facedeid.benchmark.server_memory " + " ".join(argv if argv is not None else sys.argv[1:])
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, **result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
