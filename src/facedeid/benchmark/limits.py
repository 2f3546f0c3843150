"""`python eval/limits_benchmark.py`: what each hostile request of the hostile-input issue costs the server now.

Starts a local `tritonserver` over a repository holding one generator (exported from the shipped weights), sends
each case `--repeats` times and records the answer (served, or the error's status and message), the latency, and
the server's resident memory (tritonserver plus its Python-backend stubs) before, at its peak (sampled every
10 ms while the case runs) and after. The numbers go to docs/reliability.md ("Limits"); the behaviour itself is
asserted by tests/reliability/test_hostile_input.py. A measurement, not a test: nothing here fails on a time.

    python eval/limits_benchmark.py [--model mobileunet] [--repeats 3] [--json out.json] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import stages
from ..crops import MAX_BOXES_PER_FRAME

MB = 1 << 20
W, H = 640, 480


@dataclass
class Case:
    issue: str  # the issue's case number ("1".."7") or "ok"
    name: str
    call: Callable[[], str]  # sends the request; returns what the server answered, in words
    rows: list[dict] = field(default_factory=list)


class PeakSampler:
    """Peak of `measure()` while the `with` block runs (a thread sampling every `period` seconds)."""

    def __init__(self, measure: Callable[[], int], period: float = 0.01):
        self.measure, self.period = measure, period
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.peak = self.measure()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.measure())
            time.sleep(self.period)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.measure())


def _answer(fn: Callable[[], object]) -> str:
    from tritonclient.utils import InferenceServerException

    try:
        out = fn()
    except InferenceServerException as error:
        status = str(error.status() or "").replace("StatusCode.", "")
        message = (error.message() or "").replace("in ensemble 'deid_mobileunet_boxes', ", "")
        return f"refused {status}: {message.splitlines()[0][:160]}"
    except ValueError as error:  # a client-side refusal (label files)
        return f"refused: {str(error).split(': ', 1)[-1][:160]}"
    return f"served{'' if out is None else ': ' + str(out)}"


def cases(client, generator: str, headers: dict, astronaut: np.ndarray, workdir: Path) -> list[Case]:
    import cv2

    from ..client.raw_requests import infer_input
    from ..data.dna import read_labels
    from ..data.sample import ASTRONAUT_FACE

    model = f"deid_{generator}_boxes"
    frame = np.ascontiguousarray(cv2.resize(astronaut, (W, H), interpolation=cv2.INTER_AREA))
    face = ASTRONAUT_FACE * np.array([W / 512, H / 512, W / 512, H / 512], np.float32)

    def boxes_call(image, boxes):
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)

        def run():
            result = client.infer(model, [infer_input("FRAME", image, "UINT8"), infer_input("BOXES_IN", boxes, "FP32")])
            return f"{len(result.as_numpy('BOXES'))} boxes anonymised"
        return lambda: _answer(run)

    def full(width, height, count):
        return np.tile(np.array([[0, 0, width, height]], np.float32), (count, 1))

    n = int(np.sqrt(MAX_BOXES_PER_FRAME))
    cw, ch = W / n, H / n
    grid = [[i * cw + 3, j * ch + 2, (i + 1) * cw - 3, (j + 1) * ch - 2] for j in range(n) for i in range(n)]
    hd = np.ascontiguousarray(cv2.resize(astronaut, (1920, 1080), interpolation=cv2.INTER_AREA))
    thin_ok = np.random.default_rng(0).integers(0, 256, (1, stages.MAX_FRAME_SIDE, 3), dtype=np.uint8)
    labels = workdir / "500000_faces.txt"
    labels.write_text("0 0.5 0.5 0.01 0.01\n" * 500_000)  # 10 MB

    def compose_no_crops():
        three = np.array([[10, 10, 60, 60], [100, 100, 160, 160], [200, 200, 260, 260]], np.float32)
        client.infer("compose", [infer_input("FRAME", frame, "UINT8"),
                                 infer_input("GENERATED", np.zeros((0, 3, 128, 128), np.float32), "FP32"),
                                 infer_input("BOXES", three, "FP32")])

    def admin(call):
        return lambda: _answer(lambda: getattr(client, call)("compose")) + (
            "; with the key: " + _answer(lambda: bool(getattr(client, call)("compose", headers=headers))))

    return [
        Case("ok", "good request: 640x480, 1 face box", boxes_call(frame, face[None])),
        Case("1", "inverted box [200, 220, 100, 100] (x, y, w, h sent)", boxes_call(frame, [[200, 220, 100, 100]])),
        Case("1", "sub-pixel box [10, 10, 10.9, 300]", boxes_call(frame, [[10, 10, 10.9, 300]])),
        Case("1", "box outside the frame [700, 10, 800, 100]", boxes_call(frame, [[700, 10, 800, 100]])),
        Case("1", "no faces: BOXES_IN [0, 4]", boxes_call(frame, np.zeros((0, 4)))),
        Case("2", "1x10000 frame, box [0, 0, 10000, 1]",
             boxes_call(np.zeros((1, 10000, 3), np.uint8), [[0, 0, 10000, 1]])),
        Case("2", f"1x{stages.MAX_FRAME_SIDE} frame, box [0, 0, {stages.MAX_FRAME_SIDE}, 1] (11469 px window)",
             boxes_call(thin_ok, [[0, 0, stages.MAX_FRAME_SIDE, 1]])),
        Case("3", "100,000 full-frame boxes (1.6 MB request)", boxes_call(frame, full(W, H, 100_000))),
        Case("3", "20,000 full-frame boxes", boxes_call(frame, full(W, H, 20_000))),
        Case("3", f"{MAX_BOXES_PER_FRAME} boxes (32x32 grid of 14x11 px faces)", boxes_call(frame, grid)),
        Case("3", f"{stages.MAX_PAINT_FRAMES + 1} full-frame boxes, 640x480",
             boxes_call(frame, full(W, H, stages.MAX_PAINT_FRAMES + 1))),
        Case("3", f"{stages.MAX_PAINT_FRAMES} full-frame boxes, 640x480 (paint limit)",
             boxes_call(frame, full(W, H, stages.MAX_PAINT_FRAMES))),
        Case("3", f"{stages.MAX_PAINT_FRAMES} full-frame boxes, 1920x1080 (paint limit)",
             boxes_call(hd, full(1920, 1080, stages.MAX_PAINT_FRAMES))),
        Case("4", "label file of 10 MB (500,000 faces), read by the client",
             lambda: _answer(lambda: read_labels(labels).shape)),
        Case("5", "statistics API without the admin key", admin("get_inference_statistics")),
        Case("5", "model-config API without the admin key", admin("get_model_config")),
        Case("7", "compose given 0 crops for 3 boxes", lambda: _answer(compose_no_crops)),
        Case("ok", "good request again, after all the above", boxes_call(frame, face[None])),
    ]


def measure_case(case: Case, server, repeats: int) -> dict:
    rows = []
    for _ in range(repeats):
        before = server.rss_bytes()
        with PeakSampler(server.rss_bytes) as sampler:
            t0 = time.perf_counter()
            answer = case.call()
            seconds = time.perf_counter() - t0
        rows.append({"answer": answer, "seconds": seconds, "rss_before_mb": before / MB,
                     "rss_peak_mb": sampler.peak / MB, "rss_after_mb": server.rss_bytes() / MB})
    case.rows = rows
    return {"issue": case.issue, "case": case.name, "answer": rows[-1]["answer"],
            "answers_agree": len({r["answer"] for r in rows}) == 1,
            "median_ms": statistics.median(r["seconds"] for r in rows) * 1e3,
            "max_ms": max(r["seconds"] for r in rows) * 1e3,
            "rss_before_mb": rows[0]["rss_before_mb"], "rss_peak_mb": max(r["rss_peak_mb"] for r in rows),
            "rss_after_mb": rows[-1]["rss_after_mb"]}


def window_cache(client, server, generator: str, astronaut: np.ndarray) -> dict:
    """compose's memory over 80 requests, each with another window side near compose.WHOLE_WINDOW_SIDE (blend cache)."""
    import cv2

    from ..client.raw_requests import infer_input

    big = np.ascontiguousarray(cv2.resize(astronaut, (1500, 1500), interpolation=cv2.INTER_AREA))

    def send(side):
        box = np.array([[40, 40, 40 + side, 40 + side]], np.float32)
        client.infer(f"deid_{generator}_boxes",
                     [infer_input("FRAME", big, "UINT8"), infer_input("BOXES_IN", box, "FP32")])

    send(1400)
    rss = [server.model_rss_bytes("compose") / MB]
    t0 = time.perf_counter()
    for start in (1370, 1371):
        for i in range(40):
            send(start + 2 * i)
        rss.append(server.model_rss_bytes("compose") / MB)
    return {"requests": 80, "window_sides": "1918..2030 px", "compose_rss_mb": rss,
            "seconds": time.perf_counter() - t0}


def generator_crops(repository: Path, generator: str, count: int = MAX_BOXES_PER_FRAME) -> dict:
    """In-process ONNX Runtime time for `count` crops in batches of 32, one thread, as the CPU server runs it: what
    a frame at the box limit costs the generator where every box gets a generated face."""
    from ..onnx_runtime import cpu_session
    from ..serving.configs import CPU_THREADS

    session = cpu_session(repository / generator / "1" / "model.onnx", CPU_THREADS, spin=False)
    name = session.get_inputs()[0].name
    batch = np.random.default_rng(0).uniform(-1, 1, (32, 3, 128, 128)).astype(np.float32)
    session.run(None, {name: batch})  # warm-up
    t0 = time.perf_counter()
    for _ in range(count // 32):
        session.run(None, {name: batch})
    return {"crops": count, "batch": 32, "threads": CPU_THREADS, "seconds": time.perf_counter() - t0}


def markdown(result: dict) -> str:
    lines = ["| # | request | what the server answers | median / max ms | server RSS before / peak / after MB |",
             "| --- | --- | --- | --- | --- |"]
    for r in result["cases"]:
        lines.append(f"| {r['issue']} | {r['case']} | {r['answer'].replace('|', '/')} | {r['median_ms']:.0f} / "
                     f"{r['max_ms']:.0f} | {r['rss_before_mb']:.0f} / {r['rss_peak_mb']:.0f} / "
                     f"{r['rss_after_mb']:.0f} |")
    cache = result["window_cache"]
    lines += ["", f"Blend-weight cache: {cache['requests']} requests with distinct windows ({cache['window_sides']}): "
                  f"compose RSS " + " -> ".join(f"{v:.0f}" for v in cache["compose_rss_mb"]) + " MB "
                  f"(after 0, 40, 80 requests; {cache['seconds']:.1f} s)."]
    gen = result.get("generator")
    if gen:
        lines.append(f"Generator: {gen['crops']} crops in batches of {gen['batch']}, {gen['threads']} thread "
                     f"(in-process ONNX Runtime): {gen['seconds']:.1f} s.")
    lines.append(f"Machine: {result['machine']}; repeats: {result['repeats']}.")
    return "\n".join(lines)


def run(generator: str = "mobileunet", repeats: int = 3, workdir: Path | None = None, log=print) -> dict:
    import skimage.data
    import tritonclient.grpc as grpcclient

    from ..models import GENERATORS
    from ..serving import local_server
    from . import prepare_repository

    workdir = Path(workdir or tempfile.mkdtemp(prefix="facedeid-limits-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"exporting {generator} into {workdir / 'model_repository'}")
    repository = prepare_repository(workdir / "model_repository", generator,
                                    allow_untrained=not GENERATORS[generator].has_checkpoint())
    astronaut = skimage.data.astronaut()
    with local_server.running(repository, workdir / "tritonserver.log") as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        results = []
        for case in cases(client, generator, server.admin_headers, astronaut, workdir):
            results.append(measure_case(case, server, repeats))
            log(f"{case.name}: {results[-1]['answer'][:100]} ({results[-1]['median_ms']:.0f} ms)")
        cache = window_cache(client, server, generator, astronaut)
        log(f"window cache: {cache['compose_rss_mb']}")
        client.close()
    gen = generator_crops(repository, generator)
    return {"generator_model": generator, "repeats": repeats, "cases": results, "window_cache": cache,
            "generator": gen, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU used",
            "command": "python eval/limits_benchmark.py " + " ".join(sys.argv[1:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facedeid bench limits", description="Time and server memory of each "
                                     "hostile request (docs/reliability.md, 'Limits').")
    parser.add_argument("--model", default="mobileunet", help="generator of the deid_<model>_boxes ensemble")
    parser.add_argument("--repeats", type=int, default=3, help="times each request is sent (default 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the exported repository and logs go "
                        "(default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the full result here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    args = parser.parse_args(argv)
    result = run(args.model, args.repeats, args.workdir)
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0
