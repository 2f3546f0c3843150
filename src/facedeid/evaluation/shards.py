"""Sharded evaluation: `--shard K/N` evaluates a deterministic 1/N of the frames; `--merge` joins the shards.

A shard takes every N-th frame of the data set in key order, starting at the K-th (frames[K::N]): the shards are
disjoint, cover every frame, and differ in size by at most one frame. Each shard's metrics.json carries a `shard`
record (index, count, the digests of its own keys and of the whole data set, the options that change numbers), so
that the merge can refuse shards that do not belong together (evaluation/merge.py).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..data.dna import Frame


class ShardError(ValueError):
    """Shards that cannot be evaluated or merged as asked: the message says which and why."""


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def select(self, frames: list[Frame]) -> list[Frame]:
        return frames[self.index :: self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`K/N` with 0 <= K < N (argparse type)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ShardError(f"--shard {text!r}: expected K/N, e.g. 0/4 (shard K of N, counted from 0)")
    shard = Shard(int(m.group(1)), int(m.group(2)))
    if shard.count < 1 or not 0 <= shard.index < shard.count:
        raise ShardError(f"--shard {text}: K must be in 0..N-1 and N >= 1")
    return shard


def keys_digest(keys) -> str:
    h = hashlib.sha256()
    for key in keys:
        h.update(key.encode("utf-8") + b"\n")
    return h.hexdigest()


def dataset_digest(frames: list[Frame]) -> str:
    """The data set as the evaluation sees it: every frame's key and labels (the bins and the face counts)."""
    h = hashlib.sha256()
    for f in frames:
        boxes = f.boxes_norm.round(6).tobytes() if f.error is None else f.error.encode("utf-8")
        h.update(f.key.encode("utf-8") + b"\0" + boxes + b"\n")
    return h.hexdigest()


def shard_record(shard: Shard, all_frames: list[Frame], own: list[Frame], options: dict) -> dict:
    return {
        "index": shard.index,
        "count": shard.count,
        "frames": len(own),
        "keys_sha256": keys_digest(f.key for f in own),
        "frames_in_dataset": len(all_frames),
        "dataset_sha256": dataset_digest(all_frames),
        "options": options,
    }
