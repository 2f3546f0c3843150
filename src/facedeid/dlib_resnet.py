"""dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`, shipped by face-recognition-models)
read from dlib's own serialization into an ONNX graph, run by ONNX Runtime.

Why: dlib's Python module runs the network on one core without BLAS (about 80 ms a face here) and holds the GIL
while it does; the evaluation describes every original and every replaced face with it. The same weights in ONNX
Runtime take a few ms a face. dlib stays the reference: chips are still cut by dlib (landmarks, alignment), and
`tests/eval/test_dlib_resnet.py` checks the descriptors against dlib's on real faces.

The file is dlib's `serialize(anet_type)` of dnn_face_recognition_ex.cpp: the loss layer first, then every layer
from the input up (dlib writes a layer's sub-network before the layer). Layer records are found by their version
strings in that order; between them dlib writes only flags and empty tensors, and each record's tensor is skipped
whole, so its float bytes are never searched. The architecture (which record feeds which) is dlib's example's, and
the reader checks every record's kind, shape and stride against it, so another network fails loudly.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

CHIP = 150  # input_rgb_image_sized<150>
# (filters, blocks, first block halves the size) of alevel4 ... alevel0, applied in this order
LEVELS = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
DESCRIPTOR = 128


class FormatError(ValueError):
    """The file is not the network this reader knows."""


@dataclass
class Record:
    kind: str  # con | affine | relu | max_pool | avg_pool | add_prev | fc | input
    values: dict = field(default_factory=dict)


class _Stream:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def int(self) -> int:
        """dlib's packed integer: a control byte (size in the low nibble, 0x80 = negative), then little-endian bytes."""
        if self.pos >= len(self.data):
            raise FormatError("the file ends inside a layer")
        control = self.data[self.pos]
        size = control & 0x0F
        if size == 0 or size > 8 or self.pos + 1 + size > len(self.data):
            raise FormatError(f"bad integer at byte {self.pos}")
        value = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return float(mantissa) * 2.0 ** exponent

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise FormatError(f"unknown tensor version at byte {self.pos}")
        shape = [self.int() for _ in range(4)]
        n = int(np.prod(shape))
        if self.pos + 4 * n > len(self.data):
            raise FormatError(f"the file ends inside a tensor of {n} values")
        values = np.frombuffer(self.data, "<f4", n, self.pos).astype(np.float32)
        self.pos += 4 * n
        return values

    def alias(self) -> None:
        if self.int() != 1:
            raise FormatError(f"unknown alias tensor version at byte {self.pos}")
        for _ in range(4):
            self.int()


def _pool(s: _Stream) -> dict:
    return dict(zip(("nr", "nc", "stride_y", "stride_x", "pad_y", "pad_x"), (s.int() for _ in range(6))))


def _con(s: _Stream) -> dict:
    params = s.tensor()
    v = dict(zip(("filters", "nr", "nc", "stride_y", "stride_x", "pad_y", "pad_x"), (s.int() for _ in range(7))))
    v["params"] = params
    return v


def _affine(s: _Stream) -> dict:
    params = s.tensor()
    s.alias(), s.alias()
    return {"gamma": params[:len(params) // 2], "beta": params[len(params) // 2:], "mode": s.int()}


def _fc(s: _Stream) -> dict:
    outputs, inputs = s.int(), s.int()
    return {"outputs": outputs, "inputs": inputs, "params": s.tensor()}


def _input(s: _Stream) -> dict:
    return {"mean": [s.float() for _ in range(3)], "nr": s.int(), "nc": s.int()}


# version string as dlib 19.x wrote it -> (kind, reader of what follows it)
_RECORDS = {
    b"input_rgb_image_sized": ("input", _input), b"con_4": ("con", _con), b"affine_": ("affine", _affine),
    b"relu_": ("relu", lambda s: {}), b"max_pool_2": ("max_pool", _pool), b"avg_pool_2": ("avg_pool", _pool),
    b"add_prev_": ("add_prev", lambda s: {}), b"fc_2": ("fc", _fc),
}
_VERSION = re.compile(b"\x01(.)(" + b"|".join(re.escape(k) for k in _RECORDS) + b")", re.DOTALL)


def read_records(path: Path | str) -> list[Record]:
    """The layer records of a dlib network file, from the input up."""
    s = _Stream(Path(path).read_bytes())
    if not s.data.startswith(b"\x01\x01\x01\x0dloss_metric_2"):
        raise FormatError(f"{path}: not a dlib loss_metric network")
    records = []
    while (m := _VERSION.search(s.data, s.pos)) is not None:
        if m.group(1)[0] != len(m.group(2)):  # a length byte that does not fit: not a version string
            s.pos = m.start() + 1
            continue
        kind, read = _RECORDS[m.group(2)]
        s.pos = m.end()
        records.append(Record(kind, read(s)))
    return records


def _expect(records: list[Record], kind: str, **checks) -> Record:
    if not records:
        raise FormatError(f"the file ends where a {kind} layer was expected")
    r = records.pop(0)
    if r.kind != kind or any(r.values.get(k) != v for k, v in checks.items()):
        raise FormatError(f"expected {kind} {checks}, found {r.kind} {({k: r.values.get(k) for k in checks})}")
    return r


class _Graph:
    """ONNX nodes with static shapes [C, H, W] tracked for dlib's size-mismatched residual adds."""

    def __init__(self):
        from onnx import helper

        self.helper, self.nodes, self.inits, self.n = helper, [], [], 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, array: np.ndarray, base: str) -> str:
        from onnx import numpy_helper

        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attrs))
        return out


def _out_side(side: int, k: int, stride: int, pad: int) -> int:
    return (side + 2 * pad - k) // stride + 1


def _conv(g: _Graph, x: str, shape, rec: Record):
    v = rec.values
    c, h, w = shape
    weights = v["params"][:v["filters"] * c * v["nr"] * v["nc"]].reshape(v["filters"], c, v["nr"], v["nc"])
    bias = v["params"][weights.size:]
    if len(bias) != v["filters"]:
        raise FormatError(f"conv of {v['filters']} filters over {c} channels: {len(v['params'])} parameters")
    y = g.node("Conv", [x, g.const(weights, "w"), g.const(bias, "b")], kernel_shape=[v["nr"], v["nc"]],
               strides=[v["stride_y"], v["stride_x"]], pads=[v["pad_y"], v["pad_x"], v["pad_y"], v["pad_x"]])
    return y, (v["filters"], _out_side(h, v["nr"], v["stride_y"], v["pad_y"]),
               _out_side(w, v["nc"], v["stride_x"], v["pad_x"]))


def _affine_node(g: _Graph, x: str, shape, rec: Record) -> str:
    gamma, beta = rec.values["gamma"], rec.values["beta"]
    if len(gamma) != shape[0]:
        raise FormatError(f"affine of {len(gamma)} channels after {shape[0]}")
    y = g.node("Mul", [x, g.const(gamma.reshape(1, -1, 1, 1), "gamma")])
    return g.node("Add", [y, g.const(beta.reshape(1, -1, 1, 1), "beta")])


def _pad_to(g: _Graph, x: str, shape, target) -> str:
    """dlib's add_prev adds tensors of different sizes over the larger one, the smaller padded with zeros at the
    end of each dimension."""
    extra = [t - s for s, t in zip(shape, target)]
    if not any(extra):
        return x
    return g.node("Pad", [x, g.const(np.array([0, 0, 0, 0, 0, *extra], np.int64), "pads")])


def _block(g: _Graph, x: str, shape, records: list[Record], filters: int, down: bool):
    stride = 2 if down else 1
    y, s = _conv(g, x, shape, _expect(records, "con", filters=filters, stride_y=stride, nr=3))
    y = _affine_node(g, y, s, _expect(records, "affine"))
    _expect(records, "relu")
    y = g.node("Relu", [y])
    y, s = _conv(g, y, s, _expect(records, "con", filters=filters, stride_y=1, nr=3))
    y = _affine_node(g, y, s, _expect(records, "affine"))
    shortcut, short_shape = x, shape
    if down:
        p = _expect(records, "avg_pool", nr=2, stride_y=2).values
        shortcut = g.node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2],
                          pads=[p["pad_y"], p["pad_x"], p["pad_y"], p["pad_x"]])
        short_shape = (shape[0], _out_side(shape[1], 2, 2, p["pad_y"]), _out_side(shape[2], 2, 2, p["pad_x"]))
    _expect(records, "add_prev")
    target = tuple(max(a, b) for a, b in zip(s, short_shape))
    y = g.node("Add", [_pad_to(g, y, s, target), _pad_to(g, shortcut, short_shape, target)])
    _expect(records, "relu")
    return g.node("Relu", [y]), target


def onnx_model(path: Path | str):
    """The network of `path` as an ONNX model: input `chips` [N,3,150,150] float32 RGB 0..255, output
    `descriptors` [N,128]."""
    import onnx
    from onnx import TensorProto, helper

    records = read_records(path)
    g = _Graph()
    mean = _expect(records, "input", nr=CHIP, nc=CHIP).values["mean"]
    # dlib's input layer: (pixel - channel mean) / 256
    x = g.node("Div", [g.node("Sub", ["chips", g.const(np.array(mean, np.float32).reshape(1, 3, 1, 1), "mean")]),
                       g.const(np.array(256.0, np.float32), "scale")])
    x, shape = _conv(g, x, (3, CHIP, CHIP), _expect(records, "con", filters=32, nr=7, stride_y=2))
    x = _affine_node(g, x, shape, _expect(records, "affine"))
    _expect(records, "relu")
    x = g.node("Relu", [x])
    p = _expect(records, "max_pool", nr=3, stride_y=2).values
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[p["pad_y"], p["pad_x"]] * 2)
    shape = (shape[0], _out_side(shape[1], 3, 2, p["pad_y"]), _out_side(shape[2], 3, 2, p["pad_x"]))
    for filters, blocks, down in LEVELS:
        for i in range(blocks):
            x, shape = _block(g, x, shape, records, filters, down and i == 0)
    _expect(records, "avg_pool", nr=0)  # avg_pool_everything
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    fc = _expect(records, "fc", outputs=DESCRIPTOR, inputs=shape[0]).values
    g.nodes.append(helper.make_node("MatMul", [x, g.const(fc["params"].reshape(shape[0], DESCRIPTOR), "fc")],
                                    ["descriptors"]))
    if records:
        raise FormatError(f"{len(records)} layer records left after the network: {[r.kind for r in records[:5]]}")
    graph = helper.make_graph(
        g.nodes, "dlib_face_recognition_resnet",
        [helper.make_tensor_value_info("chips", TensorProto.FLOAT, ["n", 3, CHIP, CHIP])],
        [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["n", DESCRIPTOR])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="facedeid")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@lru_cache(maxsize=2)
def _session(path: str, threads: int):
    from .onnx_runtime import cpu_session

    return cpu_session(onnx_model(path).SerializeToString(), threads=threads)


class DlibResNet:
    """Descriptors of 150 px face chips (dlib's get_face_chip, or any 150x150 RGB image) by dlib's ResNet in ONNX
    Runtime."""

    def __init__(self, path: Path | str | None = None, threads: int = 1):
        if path is None:
            import face_recognition_models

            path = face_recognition_models.face_recognition_model_location()
        self.path = str(path)
        self.session = _session(self.path, threads)

    @property
    def digest(self) -> str:
        return hashlib.sha256(Path(self.path).read_bytes()).hexdigest()[:16]

    def __call__(self, chips) -> np.ndarray:
        """[N,128] float64 descriptors of RGB uint8 chips [N,150,150,3] (one chip per run: a face's descriptor
        does not depend on the faces beside it)."""
        out = np.zeros((len(chips), DESCRIPTOR), np.float64)
        for i, chip in enumerate(chips):
            chip = np.asarray(chip)
            if chip.shape != (CHIP, CHIP, 3):
                raise ValueError(f"a dlib chip is {CHIP}x{CHIP}x3, got {chip.shape}")
            x = chip.astype(np.float32).transpose(2, 0, 1)[None]
            out[i] = self.session.run(None, {"chips": x})[0][0]
        return out

