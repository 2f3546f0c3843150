"""`make demo`: the main job end to end on a bundled sample, on any machine.

Builds a DNA-format sample, exports the generators (if their ONNX files are missing or older than the
checkpoints), starts the real Triton server on free ports, evaluates `ksame` (the default model, README "Faces
that are faces") and `blur` on the sample,
prints the tables and stops the server.
"""

from __future__ import annotations

import subprocess
import sys

from .export import export, needs_export, parity_table
from .paths import DEFAULT_REPOSITORY, REPO_ROOT
from .serving import local_server

OUT = REPO_ROOT / "demo_out"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    data = OUT / "data"
    print(f"[1/4] building the DNA-format sample in {data}", flush=True)
    subprocess.run([sys.executable, "-m", "facedeid.data.sample", str(data)], check=True)
    stale = needs_export(DEFAULT_REPOSITORY)
    print(f"[2/4] exporting {', '.join(stale) or 'nothing (up to date)'}", flush=True)
    if stale:
        print(parity_table(export(stale, "auto", DEFAULT_REPOSITORY)), flush=True)
    print("[3/4] starting tritonserver", flush=True)
    with local_server.running(DEFAULT_REPOSITORY, OUT / "tritonserver.log") as server:
        print(f"      ready on {server.grpc_url} (log: {OUT / 'tritonserver.log'})", flush=True)
        print("[4/4] evaluating ksame and blur", flush=True)
        command = [sys.executable, str(REPO_ROOT / "eval" / "triton_eval.py"), "--dataset_dir", str(data),
                   "--model", "ksame,blur", "--batch_size", "16", "--output_dir", str(OUT / "eval"),
                   "--url", server.grpc_url, "--save", "--overwrite"]
        code = subprocess.run(command).returncode
    print(f"server stopped; results in {OUT / 'eval'} (metrics.json, per_frame.csv, report.html)")
    return code


if __name__ == "__main__":
    sys.exit(main())
