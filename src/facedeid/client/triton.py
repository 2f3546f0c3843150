"""Asynchronous gRPC client for the de-identification ensembles, over one or several Triton servers.

* The process's one asyncio loop (grpc_backend.client_loop) holds a `tritonclient.grpc.aio` client per URL
  (grpc_backend.GrpcBackend); callers submit frames from ordinary (synchronous) code and get
  `concurrent.futures.Future`s back.
* At most `concurrency` requests are in flight in total; each goes to the server with the fewest requests in
  flight (round-robin among equals), so several `--url`s spread the frames (how users scale past one GPU).
* The client waits at most `timeout_s` for a reply, then asks again (the server finishes the first: no call is
  cancelled, grpc_backend); a server that is unavailable (down, restarting, model not ready, timed out) is
  retried with exponential backoff, on another URL when there is one. Other errors (bad input, ...) are not
  retried and come back as the future's exception.
* Given boxes are checked before they are sent (crops.check_boxes: `x1, y1, x2, y2` in pixels, none inverted,
  outside the frame or under 1 px once clipped, at most crops.MAX_BOXES_PER_FRAME): a bad box is an error naming
  it, never a frame sent with that face unprotected.
* Replies are checked (replies.check_reply): DEID_FRAME must have the frame's shape and dtype, BOXES must be
  [N, 4] and, for given boxes, as many as were sent (an empty, wrong-shaped or short output is an error, never
  passed on as a result).
* Closing never races a request: `close()` first refuses new requests, gives up the ones waiting to send or to
  retry, lets the calls the server already holds finish, and only then closes the channels (a retry on a closed
  channel was grpc's `UsageError: Channel is closed` that ended runs). A channel found closed while the client is
  open is opened again and the request retried. `map()` gives up its outstanding requests when its consumer stops
  early (those already sent run to their end on the server).

`TritonModels` (client/triton_models.py) is the synchronous side for single models. Every Triton client of the
project is one of these two. Per-request detection settings: client/detection_settings.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..crops import check_boxes
from .cover import DEFAULT_COVER, cover_inputs, cover_problem, generator_of
from .detection_settings import detection_inputs
from .grpc_backend import CLOSED_CHANNEL, DeidError, GrpcBackend, client_loop, is_retryable
from .replies import DeidResult, check_reply, clip_boxes, detections_of

BOXES_INPUT = "BOXES_IN"  # the _boxes ensembles' box input (an ensemble input cannot share the output's name)
BLUR_INPUT = "BLUR_BOXES_IN"  # the _boxes ensembles' optional blur-tier boxes
DETECT_MODEL = "detect_faces"  # serving/configs.py DETECT_ENSEMBLE: detection only


def ensemble_name(generator: str, with_boxes: bool) -> str:
    return f"deid_{generator}_boxes" if with_boxes else f"deid_{generator}"


@dataclass
class _Server:
    url: str
    backend: Any = None
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    unavailable_until: float = 0.0


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    failures: int = 0
    per_url: dict = field(default_factory=dict)


class DeidClient:
    """Submit frames to `deid_<generator>[_boxes]` over one or more Triton gRPC URLs.

    Use as a context manager. `submit(...)` returns a Future[DeidResult]; `map(...)` keeps a bounded window of
    requests in flight and yields (item, DeidResult | Exception) in input order.
    """

    def __init__(self, urls: str | Iterable[str], concurrency: int = 8, timeout_s: float = 60.0,
                 retries: int = 8, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 backend_factory: Callable[[str], Any] = GrpcBackend, settings: dict | None = None,
                 cover: str = DEFAULT_COVER):
        """`settings`: detection settings sent with every detect-mode request (`detection_inputs`); `cover`: what
        every generated face replaces (client/cover.py), sent with every de-identification request."""
        urls = [urls] if isinstance(urls, str) else list(urls)
        urls = [u for chunk in urls for u in chunk.split(",") if u]
        if not urls:
            raise ValueError("at least one server URL is needed")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.urls = urls
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._factory = backend_factory
        self.settings = detection_inputs(**(settings or {}))
        self.cover = cover
        self.generator_inputs = cover_inputs(cover)
        self.on_retry: Callable[[str], None] | None = None  # told each retry (url, error, delay): e.g. a log line
        self._servers = [_Server(u) for u in urls]
        self._rr = itertools.count()
        self.stats = ClientStats(per_url={u: 0 for u in urls})
        self._closing = False
        self._tasks: set[asyncio.Task] = set()  # requests in flight or waiting to retry (touched on the loop only)
        self._rpcs: set[asyncio.Task] = set()  # calls the server holds: finished, never cancelled (close())
        self._loop = client_loop()
        self._closed = False
        self._call(self._setup()).result()

    # ---------------------------------------------------------------------------------------------- plumbing
    def _call(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _setup(self):
        self._sem = asyncio.Semaphore(self.concurrency)
        for s in self._servers:
            s.backend = self._factory(s.url)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def _close():
            self._closing = True
            tasks = [t for t in self._tasks if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Calls the server holds are let finish, never cancelled (grpc_backend): calls given up after the
            # timeout are still running, so they get the timeout again plus a few seconds; only those of a server
            # that stops answering are cut off, by closing the channels below.
            if self._rpcs:
                await asyncio.wait(list(self._rpcs), timeout=self.timeout_s + 5)
            for s in self._servers:  # nothing touches a channel after this
                with contextlib.suppress(Exception):  # closing: a dead connection has nothing left to release
                    await s.backend.close()

        with contextlib.suppress(Exception):  # closed whatever happened: a dead server has nothing to release
            self._call(_close()).result(timeout=self.timeout_s + 15)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -------------------------------------------------------------------------------------------- scheduling
    def _pick(self, avoid: _Server | None) -> _Server:
        now = time.monotonic()
        candidates = [s for s in self._servers if s.unavailable_until <= now and s is not avoid]
        if not candidates:
            candidates = [s for s in self._servers if s is not avoid] or self._servers
        low = min(s.in_flight for s in candidates)
        best = [s for s in candidates if s.in_flight == low]
        return best[next(self._rr) % len(best)]

    async def _infer(self, model: str, frame: np.ndarray, boxes: np.ndarray | None, donors: np.ndarray | None = None,
                     blur: np.ndarray | None = None, extra: dict | None = None) -> DeidResult:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            return await self._infer_tracked(model, frame, boxes, donors, blur, extra)
        finally:
            self._tasks.discard(task)

    async def _send(self, server: _Server, model: str, inputs: dict, outputs: list[str]) -> dict:
        """One call, shielded: a caller that gives up (a cancelled future, map() stopped early, close()) stops
        waiting, but the call runs to its end (see close())."""
        rpc = asyncio.ensure_future(server.backend.infer(model, inputs, outputs))
        self._rpcs.add(rpc)
        rpc.add_done_callback(self._rpcs.discard)
        rpc.add_done_callback(lambda t: t.cancelled() or t.exception())  # read: never "exception never retrieved"
        return await asyncio.wait_for(asyncio.shield(rpc), timeout=self.timeout_s)

    def _closed_error(self, model: str) -> DeidError:
        return DeidError(f"{model}: the client was closed before this frame was done", retryable=False)

    async def _infer_tracked(self, model: str, frame: np.ndarray, boxes: np.ndarray | None,
                             donors: np.ndarray | None = None, blur: np.ndarray | None = None,
                             extra: dict | None = None) -> DeidResult:
        if self._closing:
            raise self._closed_error(model)
        inputs = {"FRAME": np.ascontiguousarray(frame, dtype=np.uint8)}
        outputs = ["DEID_FRAME", "BOXES"]
        if model == DETECT_MODEL:
            inputs.update(self.settings)
            outputs = ["BOXES", "BLUR_BOXES", "LANDMARKS", "ROLL"]
        elif (problem := cover_problem(generator_of(model), self.cover)) is not None:
            self.stats.failures += 1
            raise DeidError(f"{model}: {problem}", retryable=False)
        elif boxes is not None:
            inputs.update(self.generator_inputs)
            boxes = np.asarray(boxes, np.float32)
            if boxes.size == 0:
                boxes = boxes.reshape(0, 4)  # "no faces", whatever the empty shape
            try:
                if np.ndim(frame) >= 2:
                    check_boxes(boxes, frame.shape[1], frame.shape[0])
            except ValueError as exc:  # refused here: the same answer as the server's, without the round trip
                self.stats.failures += 1
                raise DeidError(f"{model}: {exc}", retryable=False) from None
            inputs[BOXES_INPUT] = np.ascontiguousarray(boxes)
            if blur is not None and len(blur):
                inputs[BLUR_INPUT] = np.ascontiguousarray(clip_boxes(blur, frame.shape[1], frame.shape[0]))
            if donors is not None:
                inputs["DONOR"] = np.ascontiguousarray(np.asarray(donors, np.int32).reshape(-1))
                outputs.append("DONOR_USED")
            inputs.update(extra or {})
        else:
            inputs.update(self.generator_inputs)
            inputs.update(self.settings)
            outputs.append("BLUR_BOXES")
        last: BaseException | None = None
        previous: _Server | None = None
        async with self._sem:
            for attempt in range(self.retries + 1):
                if self._closing:
                    raise self._closed_error(model)
                server = self._pick(previous if len(self._servers) > 1 else None)
                server.in_flight += 1
                self.stats.requests += 1
                self.stats.per_url[server.url] += 1
                start = time.perf_counter()
                try:
                    out = await self._send(server, model, inputs, outputs)
                    if model == DETECT_MODEL:
                        return detections_of(out)
                    result = check_reply(out, frame, server.url, None if boxes is None else len(boxes))
                    if blur is not None and len(blur):
                        result.blurred = inputs[BLUR_INPUT]
                    if "DONOR_USED" in out:
                        result.donors = np.asarray(out["DONOR_USED"]).reshape(-1)[: len(result.boxes)]
                    result.latency_s = time.perf_counter() - start
                    result.attempts = attempt + 1
                    server.done += 1
                    return result
                except Exception as exc:  # noqa: BLE001 - classified below
                    server.failed += 1
                    last = exc
                    if self._closing:
                        raise self._closed_error(model) from None
                    reopened = CLOSED_CHANNEL in str(exc).lower()
                    if reopened:  # closed under us (not by close()): a new channel, and the frame asked again
                        server.backend = self._factory(server.url)
                    if not (reopened or is_retryable(exc)) or attempt == self.retries:
                        break
                    self.stats.retries += 1
                    delay = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
                    server.unavailable_until = time.monotonic() + delay
                    previous = server
                    if self.on_retry is not None:
                        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                        self.on_retry(f"{server.url}: {text[:200]}; retry {attempt + 1}/{self.retries} "
                                      f"(backoff {delay:.1f} s)")
                    # with another server to go to, try it at once; otherwise wait out the backoff
                    if len(self._servers) == 1 or all(
                        s.unavailable_until > time.monotonic() for s in self._servers
                    ):
                        await asyncio.sleep(delay)
                finally:
                    server.in_flight -= 1
        self.stats.failures += 1
        message = str(last).splitlines()[0] if str(last) else type(last).__name__
        raise DeidError(f"{model}: {message}", retryable=is_retryable(last)) from last

    # -------------------------------------------------------------------------------------------- public API
    def submit(self, model: str, frame: np.ndarray, boxes: np.ndarray | None = None,
               donors: np.ndarray | None = None, blur: np.ndarray | None = None, roll: np.ndarray | None = None,
               landmarks: np.ndarray | None = None) -> Future:
        """Future[DeidResult] for one frame; `boxes` given means the caller supplies the faces. With boxes, `blur`
        [K,4] are faces for the blur tier, `roll` [N] each box's roll (ROLL_IN) and, for DONOR generators
        (client/tracking.py), `donors` [N] fix each box's donor (-1: the generator chooses) and `landmarks` [N,10]
        its five points in frame pixels (LANDMARKS_IN)."""
        if self._closing or self._closed:
            fut: Future = Future()
            fut.set_exception(self._closed_error(model))
            return fut
        extra = {}
        if boxes is not None and roll is not None and len(boxes):
            extra["ROLL_IN"] = np.ascontiguousarray(np.asarray(roll, np.float32).reshape(-1))
        if boxes is not None and landmarks is not None and len(boxes):
            extra["LANDMARKS_IN"] = np.ascontiguousarray(np.asarray(landmarks, np.float32).reshape(-1, 10))
        return self._call(self._infer(model, frame, boxes, donors, blur, extra))

    def infer(self, model: str, frame: np.ndarray, boxes: np.ndarray | None = None,
              donors: np.ndarray | None = None, blur: np.ndarray | None = None, roll: np.ndarray | None = None,
              landmarks: np.ndarray | None = None) -> DeidResult:
        return self.submit(model, frame, boxes, donors, blur, roll, landmarks).result()

    def submit_detect(self, frame: np.ndarray) -> Future:
        """Future[Detections] of one frame from `detect_faces` (detection only, with this client's settings)."""
        return self.submit(DETECT_MODEL, frame)

    def map(self, model: str, items: Iterable[Any], to_request: Callable[[Any], tuple],
            window: int | None = None) -> Iterator[tuple[Any, DeidResult | BaseException]]:
        """Yield (item, result or exception) in input order, keeping up to `window` requests outstanding.

        `to_request(item)` returns (frame, boxes-or-None).
        """
        window = window or 2 * self.concurrency
        pending: deque = deque()
        try:
            for item in items:
                frame, boxes = to_request(item)
                pending.append((item, self.submit(model, frame, boxes)))
                if len(pending) >= window:
                    yield self._pop(pending)
            while pending:
                yield self._pop(pending)
        finally:  # the consumer stopped early (an error, Ctrl-C): its requests are not left running
            for _, fut in pending:
                fut.cancel()

    @staticmethod
    def _pop(pending: deque):
        item, fut = pending.popleft()
        try:
            return item, fut.result()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            return item, exc

    def wait_ready(self, models: list[str], timeout_s: float = 60.0, require_all: bool = False) -> list[str]:
        """Block until every server is ready with `models`, or the timeout passes.

        Returns the URLs still not ready then (requests avoid them only while they fail: they are retried and
        moved); raises DeidError naming them when none is ready, or any is not and `require_all`.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            flags = [self._call(s.backend.ready(models, 5.0)).result() for s in self._servers]
            if all(flags):
                return []
            if time.monotonic() > deadline:
                bad = [s.url for s, ok in zip(self._servers, flags) if not ok]
                if require_all or not any(flags):
                    raise DeidError(f"server(s) {', '.join(bad)} not ready with model(s) {', '.join(models)} "
                                    f"after {timeout_s:.0f} s", retryable=True)
                return bad
            time.sleep(0.5)

    def server_info(self, models: list[str]) -> dict:
        out = {}
        for s in self._servers:
            try:
                out[s.url] = self._call(s.backend.info(models, 10.0)).result()
            except Exception as exc:  # noqa: BLE001 - reported per server, the others still answer
                out[s.url] = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        return out
