"""Stages that keep the generator busy: through the real server, the full detect ensemble batches at the generator.

With one instance per stage the detector spaced single-face frames out so evenly that 8 concurrent clients never
had two crops waiting at the generator together (45 requests, 45 executions through deid_mobileunet). The CPU
configs now run two instances of the detector and of every Python stage (facedeid.serving.configs); this checks
the effect where it matters, in `deid_<model>` (detect mode), not only in `deid_<model>_boxes`.
"""

from __future__ import annotations

import concurrent.futures as futures

import tritonclient.grpc as grpcclient

from helpers import deid

CLIENTS = 8
REQUESTS = 96  # measured here: 1 to 5 merged executions per 48 frames (the CPU detector is the bottleneck)


def _counts(client, name, headers) -> tuple[int, int]:
    """The statistics API is locked (serving/tritonserver_cli.py): `headers` carry the server's admin key."""
    stats = client.get_inference_statistics(name, as_json=True, headers=headers)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def test_detect_ensemble_batches_at_the_generator_under_load(triton, astronaut):
    """8 concurrent clients, single-face frames, through deid_mobileunet: fewer generator executions than crops."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    assert len(deid(client, "deid_mobileunet", astronaut)[1]) == 1, "the test frame must hold exactly one face"
    before = _counts(client, "mobileunet", triton.admin_headers)
    clients = [grpcclient.InferenceServerClient(triton.grpc_url) for _ in range(CLIENTS)]

    def one(k):
        return len(deid(clients[k % CLIENTS], "deid_mobileunet", astronaut)[1])

    with futures.ThreadPoolExecutor(CLIENTS) as pool:
        assert list(pool.map(one, range(REQUESTS))) == [1] * REQUESTS
    inferences, executions = (a - b for a, b in zip(_counts(client, "mobileunet", triton.admin_headers), before))
    print(f"\ndeid_mobileunet, {CLIENTS} clients, {REQUESTS} single-face frames: generator {inferences} inferences "
          f"in {executions} executions")
    assert inferences == REQUESTS
    assert executions < inferences, f"{executions} executions for {inferences} crops: the generator never batched"
    detector_inferences, _ = _counts(client, "face_detector", triton.admin_headers)
    assert detector_inferences >= REQUESTS
