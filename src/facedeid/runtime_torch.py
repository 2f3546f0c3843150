"""The served pipeline in one process on PyTorch: CUDA where present (fp16, channels_last, CUDA graphs), else CPU.

What runs where (the same stages as the Triton ensembles, facedeid.stages, through pipeline.Deidentifier):

* detector: the CenterFace ONNX the server serves (`detection.dynamic_model_bytes`), rebuilt as a PyTorch module by
  `CenterFaceTorch`. onnx2torch would do the same, but it imports torchvision at load time, which the lent GPU
  machine and this project's CPU install do not carry; CenterFace uses six ONNX ops (Conv, ConvTranspose,
  BatchNormalization, Relu, Add, Sigmoid), so the converter below is small and any other op is refused by name.
  `parity()` compares it with ONNX Runtime on the same image (a test runs it on CPU).
* generators: the registry's PyTorch networks with their shipped weights (`TorchGenerator`); `ksame` is the served
  donor-average code with its crop landmarks from the PyTorch detector.
* CUDA: fp16 weights and activations (bf16 / fp32 on request), channels_last, and a CUDA graph per common batch size
  (a batch is padded up to the next captured size; larger ones run in chunks of the largest), so a small batch is
  not bound by kernel launches. CPU: fp32, plain eager (fp16 is slower there and graphs do not exist).

Detection settings follow the exports: the CPU cap (`full_size` 768, `det_size` 384) on CPU, native resolution
(`full_size` 0, `det_size` 640) on CUDA, as the `cpu` and `gpu` profiles of facedeid.settings say.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

GRAPH_BATCHES = (1, 2, 4, 8, 16, 32)  # generator batch sizes captured as CUDA graphs (32 = GENERATOR_MAX_BATCH)
DTYPES = ("fp32", "fp16", "bf16")


def _torch_dtype(name: str):
    import torch

    try:
        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
    except KeyError:
        raise ValueError(f"unknown precision {name!r}; choose from {', '.join(DTYPES)}") from None


def pick_device(name: str | None = None) -> str:
    """'cuda' where available unless told otherwise; asking for cuda without a CUDA device is a one-line error."""
    import torch

    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this PyTorch ({torch.__version__}) sees no CUDA device; use --device cpu")
    return name


def default_precision(device: str) -> str:
    return "fp32" if device == "cpu" else "fp16"


# ------------------------------------------------------------------------------------------------ detector
class CenterFaceTorch:
    """An ONNX graph of Conv/ConvTranspose/BatchNormalization/Relu/Add/Sigmoid nodes run with torch.nn.functional.

    Built once from the model bytes; `forward(image)` returns the graph's first four outputs (HEATMAP, SCALE, OFFSET,
    LANDMARKS for CenterFace). Batch normalisation runs in fp32 whatever the precision (its variances underflow fp16).
    """

    OPS = ("Conv", "ConvTranspose", "BatchNormalization", "Relu", "Add", "Sigmoid")

    def __init__(self, model: bytes | None = None):
        import onnx
        import torch
        from onnx import numpy_helper

        if model is None:
            from .detection import dynamic_model_bytes

            model = dynamic_model_bytes()
        graph = onnx.load_from_string(model).graph
        weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
        unknown = sorted({n.op_type for n in graph.node} - set(self.OPS))
        if unknown:
            raise ValueError(f"CenterFaceTorch cannot convert ONNX ops {unknown} (it knows {', '.join(self.OPS)})")
        self.input = next(i.name for i in graph.input if i.name not in weights)
        self.outputs = [o.name for o in graph.output[:4]]
        self.nodes: list[tuple[str, list[str], str, dict, list]] = []
        for node in graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            params = [weights[name] for name in node.input[1:] if name in weights]
            inputs = [name for name in node.input if name not in weights]
            self.nodes.append((node.op_type, inputs, node.output[0], attrs, params))

    def to(self, device: str, dtype) -> CenterFaceTorch:
        import torch

        self.nodes = [(op, ins, out, attrs, [p.to(device, torch.float32 if op == "BatchNormalization" else dtype)
                                             for p in params]) for op, ins, out, attrs, params in self.nodes]
        return self

    def forward(self, image):
        import torch.nn.functional as F

        env = {self.input: image}
        for op, ins, out, attrs, params in self.nodes:
            x = env[ins[0]]
            if op == "Conv":
                pads = attrs.get("pads", [0, 0, 0, 0])
                if pads[:2] != pads[2:]:
                    x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
                    pads = [0, 0, 0, 0]
                y = F.conv2d(x, params[0], params[1] if len(params) > 1 else None, attrs.get("strides", 1),
                             pads[:2], attrs.get("dilations", 1), attrs.get("group", 1))
            elif op == "ConvTranspose":
                pads = attrs.get("pads", [0, 0, 0, 0])
                y = F.conv_transpose2d(x, params[0], params[1] if len(params) > 1 else None, attrs.get("strides", 1),
                                       pads[:2], attrs.get("output_padding", 0), attrs.get("group", 1),
                                       attrs.get("dilations", 1))
            elif op == "BatchNormalization":
                scale, bias, mean, var = params
                y = F.batch_norm(x.float(), mean, var, scale, bias, False, 0.0,
                                 attrs.get("epsilon", 1e-5)).to(x.dtype)
            elif op == "Relu":
                y = F.relu(x)
            elif op == "Add":
                y = x + env[ins[1]]
            else:
                y = x.sigmoid()
            env[out] = y
        return tuple(env[name] for name in self.outputs)


class TorchDetector:
    """IMAGE [T,3,h,w] float32 -> (HEATMAP, SCALE, OFFSET, LANDMARKS) float32 numpy, like pipeline.OnnxDetector."""

    def __init__(self, device: str = "cpu", precision: str | None = None, model: bytes | None = None):
        import torch

        self.device = device
        self.dtype = _torch_dtype(precision or default_precision(device))
        self.net = CenterFaceTorch(model).to(device, self.dtype)
        self.channels_last = device != "cpu"
        self._torch = torch

    def run(self, image):
        """Torch tensor in, torch tensors out (on the device): for callers that keep the maps there."""
        torch = self._torch
        with torch.inference_mode():
            x = image.to(self.device, self.dtype, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.net.forward(x)

    def __call__(self, image: np.ndarray):
        torch = self._torch
        maps = self.run(torch.from_numpy(np.ascontiguousarray(image, np.float32)))
        return tuple(m.float().cpu().numpy() for m in maps)


def parity(image: np.ndarray, device: str = "cpu", precision: str = "fp32") -> dict[str, float]:
    """Largest absolute difference of each CenterFace output between TorchDetector and ONNX Runtime on IMAGE."""
    from .pipeline import OnnxDetector

    ours, ref = TorchDetector(device, precision)(image), OnnxDetector(threads=1)(image)
    names = ("heatmap", "scale", "offset", "landmarks")
    return {name: float(np.abs(a - b).max()) for name, a, b in zip(names, ours, ref)}


# ---------------------------------------------------------------------------------------------- generators
class TorchGenerator:
    """CROPS [M,3,S,S] float32 in [-1,1] -> GENERATED, a registry network on `device` in `precision`.

    On CUDA every batch size of GRAPH_BATCHES is captured once as a CUDA graph and replayed (inputs padded up to the
    next captured size). Fail closed like the served generator: a failure returns NaN crops, which compose masks.
    """

    def __init__(self, model, device: str = "cpu", precision: str | None = None, graphs: bool = True,
                 graph_batches: tuple[int, ...] = GRAPH_BATCHES):
        import torch

        self._torch = torch
        self.device = device
        self.dtype = _torch_dtype(precision or default_precision(device))
        self.cuda = device.startswith("cuda")
        self.model = model.eval().to(device, self.dtype)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.graph_batches = tuple(sorted(graph_batches)) if (graphs and self.cuda) else ()
        self.graphs: dict[int, tuple[Any, Any, Any]] = {}
        self.last_error: str | None = None

    @classmethod
    def from_registry(cls, name: str, device: str = "cpu", precision: str | None = None, **kwargs) -> TorchGenerator:
        from .models.registry import get_spec

        return cls(get_spec(name).load(), device, precision, **kwargs)

    def _graph(self, batch: int, shape: tuple[int, ...]):
        """(graph, static input, static output) for `batch` crops, captured on first use."""
        torch = self._torch
        if batch not in self.graphs:
            static_in = torch.zeros((batch, *shape), device=self.device, dtype=self.dtype
                                    ).contiguous(memory_format=torch.channels_last)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(2):  # warm-up outside the graph (cuDNN picks its algorithms here)
                    self.model(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                static_out = self.model(static_in)
            self.graphs[batch] = (graph, static_in, static_out)
        return self.graphs[batch]

    def run(self, crops):
        """Torch [M,3,S,S] (any device/dtype) -> torch [M,3,S,S] in this generator's dtype on its device."""
        torch = self._torch
        x = crops.to(self.device, self.dtype, non_blocking=True)
        if not self.graph_batches:
            with torch.inference_mode():
                if self.cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                return self.model(x)
        top = self.graph_batches[-1]
        outs = []
        for start in range(0, len(x), top):
            part = x[start : start + top]
            n = len(part)
            batch = next(b for b in self.graph_batches if b >= n)
            graph, static_in, static_out = self._graph(batch, tuple(part.shape[1:]))
            static_in[:n].copy_(part)
            if n < batch:
                static_in[n:].zero_()
            graph.replay()
            outs.append(static_out[:n].clone())
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        torch = self._torch
        try:
            out = self.run(torch.from_numpy(np.ascontiguousarray(crops, np.float32))).float().cpu().numpy()
            if out.shape != crops.shape:
                raise ValueError(f"generator returned shape {list(out.shape)} for input {list(crops.shape)}")
            self.last_error = None
            return out
        except Exception as error:  # noqa: BLE001 - any failure must mask, never pass original pixels on
            self.last_error = f"{type(error).__name__}: {error}"
            return np.full(crops.shape, np.nan, np.float32)


class TorchLandmarks:
    """ksame's crop landmarks (facedeid.ksame.Landmarks) with CenterFace on the PyTorch detector."""

    def __init__(self, detector: TorchDetector):
        from .ksame import Landmarks

        self.detector = detector
        self._landmarks = Landmarks.__new__(Landmarks)  # its decoding, without an ONNX Runtime session
        self._landmarks.maps = detector

    def __call__(self, crops: np.ndarray, batch: int = 16):
        return self._landmarks(crops, batch)


def generator(name: str, device: str = "cpu", precision: str | None = None,
              detector: TorchDetector | None = None, cover: str = "face") -> Callable[[np.ndarray], np.ndarray]:
    """The served generator `name` in this process: a registry network, or ksame (donor averages, replacing the
    inner face or, `cover` "head", the whole head)."""
    from .models.registry import DONOR_GENERATORS, GENERATORS

    if name in DONOR_GENERATORS:
        from .ksame import KSame

        return KSame(landmarks=TorchLandmarks(detector or TorchDetector(device, precision)), cover=cover)
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose from {', '.join((*GENERATORS, *DONOR_GENERATORS))}")
    return TorchGenerator.from_registry(name, device, precision)


def deidentifier(name: str, device: str | None = None, precision: str | None = None, threshold: float | None = None,
                 det_size: int | None = None, generate_threshold: float | None = None, cover: str = "face"):
    """pipeline.Deidentifier with the PyTorch detector and generator on `device` (default: cuda where present)."""
    from .models.registry import crop_size
    from .pipeline import Deidentifier
    from .settings import CPU, GPU

    device = pick_device(device)
    detector = TorchDetector(device, precision)
    generate = generator(name, device, precision, detector, cover)
    size = crop_size(name)
    given = dict(threshold=threshold, det_size=det_size or None, generate_threshold=generate_threshold)
    # the served profile's detection for this device, with the caller's settings over it
    detection = {**(CPU if device == "cpu" else GPU).detection(), **{k: v for k, v in given.items() if v is not None}}
    return Deidentifier(detector, generate, size, **detection)
