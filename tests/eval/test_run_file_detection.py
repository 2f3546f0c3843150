"""An evaluation run with a run file (`--config config/*.yml`) detects exactly as `facedeid run` does, through the
real server: the same frame gives the same generated and blurred boxes, whatever `det_threshold` the file says."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from facedeid.client import DeidClient
from facedeid.client.cli import build_parser as run_parser
from facedeid.client.detection_settings import detection_settings_from, use_rotations
from facedeid.data.dna import read_image, write_image, write_labels
from facedeid.data.sample import ASTRONAUT_FACE, FaceSource, compose_frame
from facedeid.evaluation.cli import build_parser as eval_parser
from facedeid.evaluation.run_files import parse_args_with_run_file
from facedeid.evaluation.runner import Evaluation

ROOT = Path(__file__).resolve().parents[2]
RUN_FILE = ROOT / "config" / "config_d2gan_dna.yml"
MODEL = "deid_d2gan"


def scored_faces(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A DNA-format set of one frame whose faces score on both sides of 0.2 and of 0.5 (the astronaut's face at
    sizes from 10 to 95 px on a real background), and that frame as the evaluation reads it."""
    face = FaceSource("astronaut", skimage.data.astronaut(), tuple(float(v) for v in ASTRONAUT_FACE))
    frame, boxes = compose_frame([face], (0.0005, 0.0008, 0.0011, 0.0014, 0.01, 0.04), 640, 480, "coffee")
    dataset = tmp_path / "set"
    write_image(dataset / "images" / "scene.png", frame)
    write_labels(dataset / "labels" / "scene.txt", np.asarray(boxes, np.float32).reshape(-1, 4), 640, 480)
    return dataset, read_image(dataset / "images" / "scene.png")


def evaluation_boxes(url: str, dataset: Path, out: Path, run_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(generated boxes, blurred boxes) the evaluation got from the server for its one frame, run as a user runs
    it: `facedeid eval --config RUN_FILE --boxes detect`."""
    got = []

    class Recording(DeidClient):  # the real client; it only keeps what the server answered
        def submit(self, *args, **kwargs):
            future = super().submit(*args, **kwargs)
            future.add_done_callback(lambda f: got.append((f.result().boxes, f.result().blurred)))
            return future

    argv = ["--config", str(run_file), "--dataset-dir", str(dataset), "--output-dir", str(out), "--boxes", "detect",
            "--url", url, "--no-progress", "--no-report"]
    args, _ = parse_args_with_run_file(eval_parser(), argv)
    args.argv = argv
    Evaluation(args, client_factory=Recording, log=lambda _: None).run()
    assert len(got) == 1
    return got[0]


def run_boxes(url: str, frame: np.ndarray, *flags: str) -> tuple[np.ndarray, np.ndarray]:
    """What `facedeid run IMAGE OUT [flags]` asks the server for this frame: its client, settings and rotations."""
    args = run_parser().parse_args(["in.png", "out.png", "--url", url, *flags])
    with DeidClient(args.url, settings=detection_settings_from(args)) as client:
        use_rotations(client, args.rotations, "image")
        result = client.submit(MODEL, frame).result()
    return result.boxes, result.blurred


def same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.server
def test_a_run_file_detects_as_facedeid_run(triton, tmp_path):
    dataset, frame = scored_faces(tmp_path)
    url = triton.grpc_url
    # The evaluation does not turn frames (no ROTATIONS input); `facedeid run` does on images unless told not to.
    product = run_boxes(url, frame, "--rotations", "off")
    # the frame tells thresholds apart: 0.5 leaves faces out, 0.1 adds one
    leakier, cautious = run_boxes(url, frame, "--rotations", "off", "--threshold", "0.5"), \
        run_boxes(url, frame, "--rotations", "off", "--threshold", "0.1")
    count = [sum(len(b) for b in found) for found in (leakier, product, cautious)]
    assert count[0] < count[1] < count[2], count
    assert len(product[0]) and len(product[1])  # generated and blurred faces both

    for value in (None, 0.5, 0.1):
        run_file = RUN_FILE
        if value is not None:
            run_file = tmp_path / f"det_{value}.yml"
            shutil.copy(RUN_FILE, run_file)
            text = run_file.read_text()
            assert "det_threshold: 0.2 " in text
            run_file.write_text(text.replace("det_threshold: 0.2 ", f"det_threshold: {value} "))
        found = evaluation_boxes(url, dataset, tmp_path / f"out_{value}", run_file)
        assert same(found, product), (value, found, product)
