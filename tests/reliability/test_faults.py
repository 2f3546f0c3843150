"""Faults during an evaluation: the server killed and restarted, the evaluation itself killed and resumed, a
generator that fails, a frame over the server's size limit.

One server of its own (this module kills it), over a reduced copy of the exported repository: `mobileunet` as
exported (with its detection ensemble), `d2gan` replaced by a model that fails inside ONNX Runtime, and `box_prep`
with a lowered `max_frame_pixels`. Data: 7 frames of the scikit-image sample. The numbers of every faulted run
must equal those of one uninterrupted run (timing fields aside), every saved image must decode, and a failing
generator must give masked faces, never original pixels.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from facedeid.compose import MASK_RGB
from facedeid.data.dna import boxes_to_pixels, read_image, scan_dataset
from facedeid.data.sample import build
from facedeid.evaluation import cli as eval_cli
from facedeid.serving import local_server

from helpers import ASTRONAUT_FACE, assert_deidentified, deid, failing_generator

ROOT = Path(__file__).resolve().parents[2]
KEEP = ("box_prep", "compose", "mobileunet", "generate_mobileunet", "deid_mobileunet_boxes", "d2gan", "generate_d2gan",
        "deid_d2gan_boxes", "detect_prep", "face_detector", "face_prep", "deid_mobileunet")
FRAME_LIMIT = 500_000  # max_frame_pixels given to box_prep here (sample frames are 480x360 and 320x400)
TIMING = ("latency_ms", "server_s", "url")  # per-frame fields that legitimately differ between runs


class RestartableServer:
    """A LocalServer on fixed ports that a test may kill (SIGKILL) and start again on the same ports."""

    def __init__(self, repo: Path, log: Path):
        self.repo, self.log = repo, log
        self.ports = (local_server.free_port(), local_server.free_port(), local_server.free_port())
        self.server = local_server.start(repo, log, ports=self.ports)

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url

    def kill(self) -> dict[int, str]:
        """SIGKILL the server process; returns its Python-backend stubs, pid -> start time (they must not linger)."""
        stubs = {pid: started(pid) for pid in local_server.process_tree(self.server.process.pid)[1:]}
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait()
        return stubs

    def restart(self) -> None:
        self.server = local_server.start(self.repo, self.log, ports=self.ports)

    def stop(self) -> None:
        self.server.stop()


def started(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' once gone or a zombie waiting to be reaped): with the
    pid, it names one process even where the pid is given to a new one."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def lingering(stubs: dict[int, str], wait_s: float = 30.0) -> list[str]:
    """Stubs of a killed server still alive after up to `wait_s` (each checks its parent every 300 ms and exits):
    'pid cmdline state' of each."""
    deadline = time.monotonic() + wait_s
    while True:
        left = [pid for pid, start in stubs.items() if start and started(pid) == start]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out = []
    for pid in left:
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_text(errors="replace").replace("\0", " ").strip()
            state = next((line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if line.startswith("State:")), "")
            out.append(f"{pid} {cmd[:200]} {state}")
            os.kill(pid, signal.SIGKILL)  # not left to eat the rest of the session's CPU
    return out


@pytest.fixture(scope="module")
def server(exported_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("faults") / "model_repository"
    shutil.copytree(exported_repo[0], repo, ignore=lambda d, names: [
        n for n in names if Path(d) == exported_repo[0] and n not in KEEP])
    onnx.save(failing_generator(), repo / "d2gan" / "1" / "model.onnx")
    with open(repo / "box_prep" / "config.pbtxt", "a") as fh:
        fh.write(f'parameters {{ key: "max_frame_pixels" value: {{ string_value: "{FRAME_LIMIT}" }} }}\n')
    holder = RestartableServer(repo, repo.parent / "server.log")
    yield holder
    holder.stop()


SUBSET = ("bin10/astronaut_01", "bin30/astronaut_03", "bin50/astronaut_04", "bin70/astronaut_06",
          "bin70above/astronaut_08", "noface/no_label_file", "noface/empty_label_file")


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """7 frames of the scikit-image sample: every bin, two frames with two faces, two without a face."""
    full, root = tmp_path_factory.mktemp("fault_sample_full"), tmp_path_factory.mktemp("fault_sample")
    build(full, shared=None)
    for key in SUBSET:
        for sub, ext in (("images", ".jpg"), ("labels", ".txt")):
            src = full / sub / "skimage" / f"{key}{ext}"
            if src.exists():
                (root / sub / "skimage" / key).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, root / sub / "skimage" / f"{key}{ext}")
    assert len(scan_dataset(root)) == len(SUBSET)
    return root


def argv(data: Path, out: Path, url: str, model: str = "mobileunet", *extra: str) -> list[str]:
    # one request in flight: the generator always sees one frame's crops, so every run computes the same numbers
    return ["--dataset_dir", str(data), "--model", model, "--output_dir", str(out), "--batch_size", "2",
            "--concurrency", "1", "--url", url, "--no_progress", "--no_report", "--save", *extra]


@pytest.fixture(scope="module")
def reference(server, sample, tmp_path_factory) -> Path:
    """One uninterrupted run: mobileunet (the reference numbers) and the failing d2gan (fail-closed test)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert eval_cli.main(argv(sample, out, server.grpc_url, "mobileunet,d2gan")) == 0
    return out


def rows_by_frame(out: Path, model: str = "mobileunet") -> dict[str, dict]:
    with open(out / "per_frame.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["model"] == model]
    by_key = {r["key"]: {k: v for k, v in r.items() if k not in TIMING} for r in rows}
    assert len(by_key) == len(rows), "a frame was counted twice"
    return by_key


def results(out: Path, model: str = "mobileunet") -> dict:
    result = json.loads((out / "metrics.json").read_text())["results"][model]
    throughput = result.pop("throughput")
    result["requests"] = throughput["requests"]
    return result


def _numbers(value):
    """CSV text that is a number, as a number (so it can meet pytest.approx)."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _close(value):
    """Numbers (also as CSV text) compared to 1e-3; everything else exactly.

    The generators batch dynamically, so the same crop can run in a batch of 1 in one run and of 2 in another, and
    ONNX Runtime's kernels are not bit-identical across batch sizes: a metric may move in its last digits.
    """
    if isinstance(value, dict):
        return {k: _close(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_close(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return pytest.approx(number, rel=1e-3, abs=1e-3)
    if isinstance(value, (int, float)):
        return pytest.approx(value, rel=1e-3, abs=1e-3)
    return value


def assert_same_numbers(out: Path, reference: Path) -> None:
    rows, expected = rows_by_frame(out), rows_by_frame(reference)
    assert rows.keys() == expected.keys()
    for key, row in rows.items():
        assert [row[k] for k in ("status", "bin", "faces")] == [expected[key][k] for k in ("status", "bin", "faces")]
        assert _close(row) == _numbers(expected[key]), key
    assert _close(results(out)) == results(reference)


def assert_saved_images_whole(out: Path, expected: int) -> None:
    saved = [p for p in out.rglob("*.jpg") if "examples" not in p.relative_to(out).parts]
    assert len(saved) == expected
    for path in saved:
        assert cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR) is not None, f"{path} is not whole"
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def data_rows(out: Path) -> int:
    path = out / "per_frame.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def wait_for_rows(proc: subprocess.Popen, out: Path, n: int, timeout: float = 180.0, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while data_rows(out) < n:
        assert proc.poll() is None, f"evaluation ended early ({proc.returncode})"
        assert time.monotonic() < deadline, "evaluation made no progress"
        time.sleep(every)


def start_eval(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "eval/triton_eval.py"), *args], cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115


def test_server_killed_mid_run_and_restarted_gives_the_same_result(server, sample, reference, tmp_path):
    out = tmp_path / "out"
    log = tmp_path / "eval.log"
    # one frame per chunk, so at most one frame's requests go out ahead of the rows
    proc = start_eval(argv(sample, out, server.grpc_url, "mobileunet", "--retries", "8", "--batch_size", "1"), log)
    try:
        wait_for_rows(proc, out, 2, every=0.01)
        # the evaluation is held still while its server dies: a frame's metrics take a fraction of a second, so it
        # would otherwise be through its last frames before the kill lands; held after 2 rows, the requests of its
        # last frames are still unsent
        proc.send_signal(signal.SIGSTOP)
        try:
            stubs = server.kill()
            killed_at = data_rows(out)
        finally:
            proc.send_signal(signal.SIGCONT)
        # keep the server down until the client has met it down (a retry line), then start it on the same ports
        deadline = time.monotonic() + 120
        while "server unavailable:" not in log.read_text(errors="replace"):
            assert proc.poll() is None, "the evaluation gave up while the server was down"
            assert time.monotonic() < deadline, "no retry while the server was down"
            time.sleep(0.2)
        time.sleep(2)
        assert proc.poll() is None, "the evaluation gave up while the server was down"
        server.restart()
        assert proc.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed_at < len(scan_dataset(sample)), "the server was killed after the run had finished"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["requests_this_session"]["retries"] >= 1
    assert metrics["results"]["mobileunet"]["skipped"] == {}
    assert_same_numbers(out, reference)
    assert_saved_images_whole(out, expected=len(scan_dataset(sample)))
    # A stub of the SIGKILLed server may hang for good in exit() (Triton's stub finds its parent gone and calls
    # exit(), whose handlers deadlock on a lock another of its threads holds; seen with py-spy, docs/reliability.md
    # "A killed server's stubs"): outside this code, and gone with the container in a deployment. Reported and
    # killed here, not failed on.
    left = lingering(stubs)
    if left:
        warnings.warn("stub processes of the killed server lingered (killed now):\n" + "\n".join(left), stacklevel=1)


def test_evaluation_killed_then_resumed_gives_the_same_result(server, sample, reference, tmp_path):
    out = tmp_path / "out"
    args = argv(sample, out, server.grpc_url)
    proc = start_eval(args + ["--batch_size", "1"], tmp_path / "eval.log")  # one frame per chunk, rows one by one
    try:
        wait_for_rows(proc, out, 3, every=0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert 3 <= data_rows(out) < len(scan_dataset(sample))
    assert eval_cli.main(args) == 2, "an existing run must not be overwritten without --resume"
    assert eval_cli.main(args + ["--resume"]) == 0
    assert_same_numbers(out, reference)
    assert_saved_images_whole(out, expected=len(scan_dataset(sample)))


def test_failing_generator_gives_masked_faces_never_original_pixels(reference, sample):
    frames = [f for f in scan_dataset(sample) if f.n_faces]
    assert frames
    for frame in frames:
        original = read_image(frame.image_path)
        saved = read_image(reference / frame.bin / f"{frame.key}.d2gan.jpg")  # JPEG: compare with a tolerance
        for x1, y1, x2, y2 in boxes_to_pixels(frame.boxes_norm, original.shape[1], original.shape[0]).round():
            face = saved[int(y1):int(y2), int(x1):int(x2)].astype(np.float32)
            before = original[int(y1):int(y2), int(x1):int(x2)].astype(np.float32)
            assert np.abs(face - np.asarray(MASK_RGB, np.float32)).mean() < 3, f"{frame.key}: face not masked"
            assert np.abs(face - before).mean() > 20, f"{frame.key}: original face pixels returned"
    result = results(reference, "d2gan")
    assert result["skipped"] == {} and result["table"]["reid"]["average"] == 0.0


def test_frame_over_the_configured_size_limit_is_refused(server, astronaut):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    big = np.zeros((800, 800, 3), np.uint8)  # 640,000 pixels > FRAME_LIMIT
    with pytest.raises(InferenceServerException, match=f"800x800 exceeds the limit of {FRAME_LIMIT} pixels"):
        deid(client, "deid_mobileunet_boxes", big, np.zeros((0, 4), np.float32))
    result, used = deid(client, "deid_mobileunet_boxes", astronaut, ASTRONAUT_FACE[None])  # 512x512 fits
    assert_deidentified(astronaut, result, used)


def test_clients_that_give_up_never_take_the_server_down_nor_leave_requests_in_it(server, astronaut):
    """Clients whose timeout passes before the reply, and clients closed with requests in flight: the bundled
    Triton (2.51) crashed on cancelled calls and never released an ensemble whose stage queue timed it out, so the
    client sends no deadline and lets the calls the server holds finish. Afterwards the server answers, and a
    graceful stop finds no request left inside it."""
    from facedeid.client.triton import DeidClient, DeidError

    for round_ in range(6):
        client = DeidClient([server.grpc_url], concurrency=16, timeout_s=0.05 if round_ % 2 else 60, retries=0)
        futures = [client.submit("deid_mobileunet", astronaut) for _ in range(48)]
        time.sleep(0.5)
        client.close()
        for fut in futures:
            assert fut.done()
            if not fut.cancelled() and fut.exception() is not None:
                assert isinstance(fut.exception(), DeidError), fut.exception()
    assert server.server.process.poll() is None, server.server.log_tail()
    with DeidClient([server.grpc_url]) as client:
        result = client.infer("deid_mobileunet", astronaut)
        assert len(result.boxes) == 1
        assert_deidentified(astronaut, result.frame, result.boxes)
    log_start = server.log.stat().st_size
    server.stop()
    stop_log = server.log.read_bytes()[log_start:].decode(errors="replace")
    assert server.server.process.returncode == 0, stop_log[-3000:]
    assert not re.search(r"has \d+ in-flight inferences", stop_log), stop_log[-3000:]
    server.restart()
