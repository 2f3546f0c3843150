"""The `ksame` model in Triton's Python backend: donor averages (facedeid.ksame) over the crops of a dynamic batch.

Its version folder holds what export wrote there: `bank.npz` (the donor averages) and `centerface.onnx` (the
detector network, run on each crop for its five landmarks); dlib's 68-point shape predictor comes from the installed
`face_recognition_models` package. Config parameters `geometry` (mean|target), `cover` (face|head) and `detail`
(0..1) choose KSame's options; absent, the defaults (facedeid.ksame). Like the ONNX generators it fails closed: if a
batch cannot be generated, every crop comes back NaN and compose masks those faces.

Optional input COVER [1] INT32 per crop: 0 the inner face, 1 the whole head (settings.COVERS; absent: the
`cover` parameter's, else the face); one KSame per cover shares the bank and the landmark network.

Optional input DONOR [1] INT32 per crop: the bank average to use (-1 or absent: the nearest, chosen per crop);
output DONOR_USED [1] INT32: the average each crop got. A video client fixes a track's donor from the first reply
and sends it back with every later frame, so the model stays stateless and a face never changes replacement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .python_backend import parameters

BANK_FILE = "bank.npz"
LANDMARK_MODEL_FILE = "centerface.onnx"


class KSameModel:
    def setup(self, pb_utils, args: dict) -> None:
        from ..ksame import Bank, KSame, Landmarks

        self.pb_utils = pb_utils
        folder = Path(args["model_repository"]) / args["model_version"]
        for name in (BANK_FILE, LANDMARK_MODEL_FILE):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder / name} is missing: run `python export/to_onnx.py --model ksame`")
        params = parameters(args)
        threads = int(params.get("threads", "1"))
        from ..settings import COVERS

        options = {key: params[key] for key in ("geometry",) if key in params}
        if "detail" in params:
            options["detail"] = float(params["detail"])
        bank, landmarks = Bank(folder / BANK_FILE), Landmarks(folder / LANDMARK_MODEL_FILE, threads)
        self.generators = [KSame(bank, landmarks, cover=cover, **options) for cover in COVERS]
        if params.get("cover", COVERS[0]) not in COVERS:
            raise ValueError(f"parameter cover must be one of {', '.join(COVERS)}, got {params['cover']!r}")
        self.default_cover = COVERS.index(params.get("cover", COVERS[0]))
        self.generator = self.generators[self.default_cover]

    def execute(self, requests):
        from ..ksame.generator import check_landmarks
        from .python_backend import invalid_argument

        pb_utils = self.pb_utils
        responses: list = [None] * len(requests)
        good, batches, donors, points, covers = [], [], [], [], []
        for i, request in enumerate(requests):
            batch = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            tensor = pb_utils.get_input_tensor_by_name(request, "DONOR")
            given = pb_utils.get_input_tensor_by_name(request, "LANDMARKS")
            cover = pb_utils.get_input_tensor_by_name(request, "COVER")
            try:  # a bad DONOR, LANDMARKS or COVER is that request's error, not a masked batch for everyone in it
                donors.append(self.generator.check_donors(None if tensor is None else tensor.as_numpy(), len(batch)))
                marks = check_landmarks(None if given is None else given.as_numpy(), len(batch), batch.shape[-1])
                covers.append(self.check_covers(None if cover is None else cover.as_numpy(), len(batch)))
            except ValueError as error:
                responses[i] = pb_utils.InferenceResponse(error=invalid_argument(pb_utils, str(error)))
                continue
            good.append(i)
            batches.append(batch)
            points.append(np.full((len(batch), 5, 2), np.nan) if marks is None else marks)
        if not good:
            return responses
        counts = [len(b) for b in batches]
        crops, cover = np.concatenate(batches, axis=0), np.concatenate(covers)
        out = np.full(crops.shape, np.nan, np.float32)
        used = np.full(len(crops), -1, np.int64)
        donors, points = np.concatenate(donors), np.concatenate(points)
        for index in np.unique(cover):
            rows = np.flatnonzero(cover == index)
            try:
                out[rows], used[rows] = self.generators[index].tracked(crops[rows], donors[rows], points[rows])
            except Exception as error:  # noqa: BLE001 - any failure must mask, never pass original pixels on
                pb_utils.Logger.log_error(f"ksame failed, faces will be masked: {type(error).__name__}: {error}")
                out[rows], used[rows] = np.nan, -1
        splits = np.cumsum(counts)[:-1]
        for i, part, used_part in zip(good, np.split(out, splits), np.split(used, splits)):
            responses[i] = pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("OUTPUT", np.ascontiguousarray(part)),
                pb_utils.Tensor("DONOR_USED", used_part.astype(np.int32).reshape(-1, 1))])
        return responses

    def check_covers(self, covers: np.ndarray | None, n: int) -> np.ndarray:
        """COVER [n,1] (or absent: the configured default) -> [n] indices into COVERS; others are refused."""
        if covers is None:
            return np.full(n, self.default_cover, np.int64)
        covers = np.asarray(covers).reshape(-1)
        if len(covers) != n or not np.issubdtype(covers.dtype, np.integer) or not (
                (covers >= 0) & (covers < len(self.generators))).all():
            raise ValueError(f"COVER must hold one value per crop ({n}), 0 (face) or 1 (head), got "
                             f"{covers.tolist()[:8]}")
        return covers.astype(np.int64)
