"""Still and animated image files for `facedeid run`: read as viewers show them, written with only the pixels.

* Orientation: the EXIF Orientation (what phones write for most photos) is applied before detection, and the
  output is written upright with no EXIF, so it shows the same everywhere.
* Frames: animated GIF/WebP/PNG and multi-page TIFF are read frame by frame and written back with every frame and
  its duration; an output type that holds one frame (.jpg, .bmp) is refused for them, never written from the first.
* Alpha (RGBA PNG/WebP/TIFF) is kept as it was; 16-bit sources are written as 8-bit; CMYK is converted to RGB.
* Metadata (docs/reliability.md): no EXIF, XMP, IPTC, ICC profile or PNG text leaves with the file; `icc` in
  --keep-metadata keeps the colour profile.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.dna import IMAGE_EXTS, MAX_PIXELS, ImageError, read_image
from ..data.files import atomic_temp_file

RUN_IMAGE_EXTS = tuple(IMAGE_EXTS) + (".gif",)
MULTI_FRAME_EXTS = (".gif", ".webp", ".png", ".tif", ".tiff")  # what can hold more than one frame
PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
               ".webp": "WEBP", ".gif": "GIF"}
# PIL's transpose per EXIF Orientation value, as ImageOps.exif_transpose applies it
_ORIENT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
           7: "TRANSVERSE", 8: "ROTATE_90"}


@dataclass
class Picture:
    frames: list[np.ndarray]  # RGB uint8, upright
    alpha: list[np.ndarray | None] = field(default_factory=list)
    durations: list[int] = field(default_factory=list)  # ms per frame (animations)
    loop: int | None = None
    icc: bytes | None = None
    orientation: int = 1
    notes: list[str] = field(default_factory=list)


def frame_count(path: Path) -> int:
    """Frames (pages) in an image file; 1 when PIL cannot tell."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _frames_of(im)
    except Exception:  # noqa: BLE001 - PIL raises many types for files it cannot read; read_picture reports them
        return 1


def _frames_of(im) -> int:
    # A camera's MPO ("multi-picture" JPEG) holds previews or a depth map after the picture viewers show; only
    # that picture is read and written, as a JPEG.
    return 1 if im.format in ("JPEG", "MPO") else int(getattr(im, "n_frames", 1) or 1)


def _transpose(im, orientation: int):
    from PIL import Image

    method = _ORIENT.get(orientation)
    return im.transpose(getattr(Image.Transpose, method)) if method else im


def read_picture(path: Path) -> Picture:
    """Every frame of an image file, upright, with what is needed to write it back (alpha, timing, profile)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # read_image applies the project's limit
    path = Path(path)
    try:
        im = Image.open(path)
    except Exception:  # noqa: BLE001 - let read_image name the problem in its words
        return Picture([read_image(path)])
    with im:
        orientation = 1
        with contextlib.suppress(Exception):
            orientation = int(im.getexif().get(0x0112, 1) or 1)
        n = _frames_of(im)
        pic = Picture([], orientation=orientation, icc=im.info.get("icc_profile"), loop=im.info.get("loop"))
        if n == 1:
            rgb = read_image(path)
            alpha = None
            if im.mode in ("RGBA", "LA", "PA") or im.mode == "P" and "transparency" in im.info:
                alpha = np.asarray(im.convert("RGBA"))[:, :, 3]
            if im.mode.startswith("I;16") or im.mode == "I" or getattr(im, "bits", 8) == 16:
                pic.notes.append("16-bit written as 8-bit")
            rgb_img = _transpose(Image.fromarray(rgb), orientation)
            pic.frames.append(np.asarray(rgb_img))
            pic.alpha.append(None if alpha is None else np.asarray(_transpose(Image.fromarray(alpha), orientation)))
            return pic
        for i in range(n):
            try:
                im.seek(i)
                if im.size[0] * im.size[1] > MAX_PIXELS:
                    raise ImageError(path, f"frame {i} is over the {MAX_PIXELS / 1e6:.0f}-megapixel limit")
                rgba = np.asarray(_transpose(im.convert("RGBA"), orientation))
            except ImageError:
                raise
            except Exception as exc:  # noqa: BLE001 - a frame PIL cannot decode: the file is refused, not cut short
                raise ImageError(path, f"frame {i + 1} of {n} cannot be decoded ({exc})") from None
            pic.frames.append(np.ascontiguousarray(rgba[:, :, :3]))
            pic.alpha.append(rgba[:, :, 3].copy() if (rgba[:, :, 3] < 255).any() else None)
            pic.durations.append(int(im.info.get("duration", 100) or 100))
        return pic


def encode_picture(pic: Picture, frames: list[np.ndarray], ext: str, keep: list[str], quality: int = 95) -> bytes:
    """The image file's bytes: `frames` (de-identified, in order) with the source's alpha and timing, and no
    metadata but the colour profile when `icc` is in `keep`."""
    from PIL import Image

    images = []
    for rgb, alpha in zip(frames, pic.alpha or [None] * len(frames)):
        im = Image.fromarray(np.ascontiguousarray(rgb, np.uint8))
        if alpha is not None and ext not in (".jpg", ".jpeg", ".bmp"):
            im.putalpha(Image.fromarray(alpha))
        images.append(im)
    fmt = PIL_FORMATS[ext]
    kwargs: dict = {}
    if "icc" in keep and pic.icc and fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
        kwargs["icc_profile"] = pic.icc
    if fmt == "JPEG":
        kwargs.update(quality=quality)
    elif fmt == "WEBP":
        kwargs.update(quality=quality)
    elif fmt == "TIFF":
        kwargs.update(compression="tiff_lzw")
    if len(images) > 1:
        kwargs.update(save_all=True, append_images=images[1:])
        if fmt in ("GIF", "WEBP", "PNG"):
            kwargs.update(duration=pic.durations or 100, loop=pic.loop or 0)
        if fmt == "GIF":
            kwargs.update(disposal=2)
    buf = io.BytesIO()
    images[0].save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def check_image_file(path: Path, frames: int, size: tuple[int, int]) -> None:
    """Decode the written file: as many frames as were written, each of the right size."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            n = int(getattr(im, "n_frames", 1) or 1)
            if n != frames:
                raise ImageError(path, f"the written file holds {n} frame(s), not {frames}")
            im.seek(n - 1)
            im.load()
            if im.size != size and frames == 1:
                raise ImageError(path, f"the written file is {im.size}, not {size}")
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decode failure means the write did not give a playable file
        raise ImageError(path, f"the written file does not decode ({exc})") from None


def write_checked(dst: Path, data: bytes, frames: int, size: tuple[int, int]) -> None:
    """Write to a temporary name in dst's folder, decode it back, then rename over dst (never a partial file)."""
    fd, tmp = atomic_temp_file(dst, suffix=dst.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        check_image_file(Path(tmp), frames, size)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
