"""The asynchronous client without a server: fake per-URL backends check spreading, the in-flight bound, retries
with backoff, fail-over between URLs, non-retryable errors and reply validation."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from facedeid.client import DeidClient, DeidError, ensemble_name, is_retryable


class FakeBackend:
    """Echoes the frame (inverted) after `delay`; fails while `fail_first` > 0 or always when `dead`."""

    total = {"active": 0, "max": 0}  # over every fake server: the client's global in-flight bound

    def __init__(self, url, delay=0.01, fail_first=0, dead=False, status="StatusCode.UNAVAILABLE", shape=None):
        self.url, self.delay, self.fail_first, self.dead, self.status, self.shape = (
            url, delay, fail_first, dead, status, shape)
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.inputs = []

    async def infer(self, model, inputs, outputs):
        self.calls += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        FakeBackend.total["active"] += 1
        FakeBackend.total["max"] = max(FakeBackend.total["max"], FakeBackend.total["active"])
        try:
            await asyncio.sleep(self.delay)
            self.inputs.append(sorted(inputs))
            if self.dead or self.fail_first > 0:
                self.fail_first -= 1
                raise InferenceServerException(msg=f"{self.url} unavailable", status=self.status)
            frame = inputs["FRAME"]
            out = 255 - frame if self.shape is None else np.zeros(self.shape, np.uint8)
            return {"DEID_FRAME": out, "BOXES": inputs.get("BOXES_IN", np.zeros((1, 4), np.float32))}
        finally:
            self.active -= 1
            FakeBackend.total["active"] -= 1

    async def ready(self, models, timeout_s):
        return not self.dead

    async def info(self, models, timeout_s):
        return {"server": "fake", "version": "0", "models": {m: {"versions": ["1"]} for m in models}}

    async def close(self):
        pass


def factory(**per_url):
    made = {}

    def make(url):
        made[url] = FakeBackend(url, **per_url.get(url, {}))
        return made[url]

    return make, made


FRAME = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)


def test_ensemble_names():
    assert ensemble_name("mobileunet", True) == "deid_mobileunet_boxes"
    assert ensemble_name("d2gan", False) == "deid_d2gan"


def test_spreads_frames_over_urls_and_bounds_in_flight():
    make, made = factory()
    FakeBackend.total.update(active=0, max=0)
    with DeidClient(["a:1", "b:1,c:1"], concurrency=4, backend_factory=make) as client:
        futures = [client.submit("deid_x", FRAME) for _ in range(30)]
        results = [f.result() for f in futures]
        assert all(np.array_equal(r.frame, 255 - FRAME) for r in results)
        assert client.stats.per_url == {"a:1": 10, "b:1": 10, "c:1": 10}
        assert FakeBackend.total["max"] == 4  # the bound is reached and never passed
        assert {r.url for r in results} == {"a:1", "b:1", "c:1"}


def test_map_keeps_order_and_window():
    make, made = factory()
    with DeidClient("a:1", concurrency=3, backend_factory=make) as client:
        items = list(range(12))
        out = list(client.map("deid_x", items, lambda i: (np.full((2, 2, 3), i, np.uint8), None), window=5))
        assert [i for i, _ in out] == items
        assert [int(r.frame[0, 0, 0]) for _, r in out] == [255 - i for i in items]
        assert made["a:1"].max_active <= 3


def test_boxes_go_in_as_boxes_in():
    make, made = factory()
    with DeidClient("a:1", backend_factory=make) as client:
        r = client.infer("deid_x_boxes", FRAME, np.array([[1, 1, 3, 3]], np.float32))
        assert made["a:1"].inputs[0] == ["BOXES_IN", "FRAME"]
        assert r.boxes.shape == (1, 4)
        client.infer("deid_x", FRAME)
        assert made["a:1"].inputs[1] == ["FRAME"]


def test_retries_with_backoff_while_unavailable():
    make, made = factory(**{"a:1": {"fail_first": 2}})
    with DeidClient("a:1", retries=3, backoff_s=0.01, backend_factory=make) as client:
        r = client.infer("deid_x", FRAME)
        assert r.attempts == 3 and client.stats.retries == 2 and made["a:1"].calls == 3


def test_gives_up_after_retries():
    make, _ = factory(**{"a:1": {"dead": True}})
    with DeidClient("a:1", retries=2, backoff_s=0.01, backend_factory=make) as client:
        with pytest.raises(DeidError, match="unavailable"):
            client.infer("deid_x", FRAME)
        assert client.stats.failures == 1


def test_fails_over_to_a_live_url():
    make, made = factory(**{"dead:1": {"dead": True}})
    with DeidClient(["dead:1", "live:1"], concurrency=2, retries=2, backoff_s=0.05, backend_factory=make) as client:
        results = [f.result() for f in [client.submit("deid_x", FRAME) for _ in range(10)]]
        assert all(r.url == "live:1" for r in results)
        assert made["live:1"].calls == 10


def test_non_retryable_error_is_not_retried():
    make, made = factory(**{"a:1": {"dead": True, "status": "StatusCode.INVALID_ARGUMENT"}})
    with DeidClient("a:1", retries=5, backoff_s=0.01, backend_factory=make) as client:
        with pytest.raises(DeidError):
            client.infer("deid_x", FRAME)
        assert made["a:1"].calls == 1


def test_wrong_shaped_reply_is_an_error():
    make, _ = factory(**{"a:1": {"shape": (0, 0, 3)}})
    with DeidClient("a:1", retries=0, backend_factory=make) as client:
        with pytest.raises(DeidError, match="DEID_FRAME"):
            client.infer("deid_x", FRAME)


def test_wait_ready_names_the_bad_server():
    make, _ = factory(**{"b:1": {"dead": True}})
    with DeidClient(["a:1", "b:1"], backend_factory=make) as client:
        assert client.wait_ready(["deid_x"], timeout_s=0.2) == ["b:1"]  # one live server is enough
        with pytest.raises(DeidError, match="b:1"):
            client.wait_ready(["deid_x"], timeout_s=0.2, require_all=True)
    make, _ = factory(**{"a:1": {"dead": True}})
    with DeidClient(["a:1"], backend_factory=make) as client:
        with pytest.raises(DeidError, match="a:1 not ready"):
            client.wait_ready(["deid_x"], timeout_s=0.2)


def test_is_retryable():
    assert is_retryable(InferenceServerException("x", status="StatusCode.UNAVAILABLE"))
    assert is_retryable(InferenceServerException("model 'a' is not ready", status="StatusCode.INTERNAL"))
    assert not is_retryable(InferenceServerException("bad shape", status="StatusCode.INVALID_ARGUMENT"))
    assert is_retryable(asyncio.TimeoutError())


def test_baselines_match_deface(astronaut):
    from deface.deface import anonymize_frame

    from facedeid.baselines import blur, mosaic

    boxes = np.array([[181.5, 58.2, 269.9, 177.8], [10, 400, 60, 470], [480, 0, 512, 40]], np.float32)
    for method, ours in (("blur", blur), ("mosaic", mosaic)):
        ref = astronaut.copy()
        dets = np.concatenate([boxes, np.ones((3, 1), np.float32)], 1)
        anonymize_frame(dets, ref, mask_scale=1.3, replacewith=method, ellipse=True, draw_scores=False,
                        replaceimg=None, mosaicsize=20)
        out = ours(astronaut, boxes)
        assert np.array_equal(out, ref), method
        assert not np.array_equal(out, astronaut)


def test_real_grpc_connection_refused_is_retried():
    """No server on the port: tritonclient's aio gRPC error must be classified as retryable (restart case)."""
    from facedeid.serving.local_server import free_port

    url = f"127.0.0.1:{free_port()}"
    with DeidClient(url, retries=2, backoff_s=0.01, timeout_s=5) as client:
        with pytest.raises(DeidError) as info:
            client.infer("deid_mobileunet", FRAME)
        assert info.value.retryable and client.stats.retries == 2 and client.stats.requests == 3
