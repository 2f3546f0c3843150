"""Server memory before, at the peak of and after a 4K clip: resident memory of tritonserver and its Python-backend
stubs, summed (Linux /proc), sampled every 0.2 s.

    facedeid bench server-memory --repository REPO --scenes ../shared/data/faces/scenes \
        --json docs/results/server_memory.json [--no-malloc-env]

The clip: `--frames` 3840x2160 frames of real scenes packed side by side (benchmark.large_frames, hundreds of small
faces each), shifted a few pixels per frame, sent `--concurrency` at a time to `deid_<generator>` of a server
started here over REPO (an exported repository, CPU configs). "before" is after one 640x480 warm-up frame, "after"
is `--settle` seconds after the last answer of each pass of the clip (`--passes`). RSS sums count the Python
backend's shared tensor regions twice (the server and a stub map each); PSS counts them once. `--no-malloc-env`
starts the server without tritonserver_cli.MALLOC_ENV, to see what the glibc settings do.
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


def pss_bytes(pid: int) -> int:
    """Proportional set size of tritonserver and its stubs, summed: shared memory (the Python backend's tensor
    regions, mapped by the server and by a stub) counted once, unlike the RSS sum."""
    from ..serving.local_server import process_tree

    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def by_process(pid: int) -> dict[str, dict[str, float]]:
    """Resident memory (MiB) of tritonserver and of each model's stub processes, split into private (RssAnon) and
    shared memory (RssShmem: the Python backend's tensor regions)."""
    from ..serving.local_server import process_tree

    out: dict[str, dict[str, float]] = {}
    for p in process_tree(pid):
        try:
            args = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        name = "tritonserver"
        for arg in args:
            if arg.endswith(b"/1/model.py"):
                name = arg.decode().split("/")[-3]
        fields = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
                  if line.startswith(("RssAnon", "RssShmem", "RssFile"))}
        entry = out.setdefault(name, {"anon_mb": 0.0, "shmem_mb": 0.0, "file_mb": 0.0})
        entry["anon_mb"] += round(fields.get("RssAnon", 0) / 1024, 1)
        entry["shmem_mb"] += round(fields.get("RssShmem", 0) / 1024, 1)
        entry["file_mb"] += round(fields.get("RssFile", 0) / 1024, 1)
    return out


def measure(repository: Path, scenes: Path, frames: int, concurrency: int, generator: str, settle: float,
            malloc_env: bool, passes: int = 2) -> dict:
    import tritonclient.grpc as grpcclient

    from ..serving import local_server
    from .large_frames import small_face_frame

    base, _ = small_face_frame(scenes, 3840, 2160, 0.4)
    clip = [np.ascontiguousarray(np.roll(base, 7 * i, axis=1)) for i in range(frames)]
    log = Path(tempfile.mkdtemp()) / "tritonserver.log"
    server = local_server.start(repository, log, malloc_env=malloc_env)
    samples: list[tuple[int, int]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((server.rss_bytes(), pss_bytes(server.process.pid)))
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
        before = server.rss_bytes(), pss_bytes(server.process.pid)
        before_parts = by_process(server.process.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        afters, walls = [], []
        for _ in range(passes):  # the same clip again: memory that is reused, not leaked, does not grow
            start = time.monotonic()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(send, clip))
            walls.append(round(time.monotonic() - start, 1))
            time.sleep(settle)
            afters.append((server.rss_bytes(), pss_bytes(server.process.pid)))
        after_parts = by_process(server.process.pid)
        stop.set()
        sampler.join()
    finally:
        stop.set()
        server.stop()
    return {"frames": frames, "frame": "3840x2160", "model": model, "concurrency": concurrency,
            "malloc_env": malloc_env, "rss_mb_before": _mb(before[0]), "rss_mb_peak": _mb(max(r for r, _ in samples)),
            "rss_mb_after": [_mb(r) for r, _ in afters], "pss_mb_before": _mb(before[1]),
            "pss_mb_peak": _mb(max(p for _, p in samples)), "pss_mb_after": [_mb(p) for _, p in afters],
            "settle_s": settle, "clip_wall_s": walls, "before_by_process": before_parts,
            "after_by_process": after_parts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facedeid bench server-memory", description=__doc__.splitlines()[0])
    p.add_argument("--repository", type=Path, required=True, help="an exported model repository (CPU configs)")
    p.add_argument("--scenes", type=Path, required=True, help="folder of scene photos to pack into 4K frames")
    p.add_argument("--frames", type=int, default=12, help="frames in the clip (default 12)")
    p.add_argument("--concurrency", type=int, default=4, help="frames in flight (default 4)")
    p.add_argument("--generator", default="mobileunet", help="deid_<generator> to send to (default mobileunet)")
    p.add_argument("--settle", type=float, default=15.0, help="seconds after the clip before 'after' (default 15)")
    p.add_argument("--passes", type=int, default=2, help="send the clip this many times (default 2)")
    p.add_argument("--no-malloc-env", action="store_true", help="start the server without the glibc malloc settings")
    p.add_argument("--json", type=Path, default=None, help="also write the result and the command here")
    args = cli_args.finish(p).parse_args(argv)
    result = measure(args.repository, args.scenes, args.frames, args.concurrency, args.generator, args.settle,
                     not args.no_malloc_env, args.passes)
    print(json.dumps(result))
    if args.json:
        command = "facedeid bench server-memory " + " ".join(argv if argv is not None else sys.argv[1:])
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, **result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
