"""What `facedeid run` reads and writes (issues 22 and 25): files the tests make the way cameras, phones and editors
do, run through the real command, and read back with PIL and ffmpeg.

Orientation goes through the real server (the faces must be found where a viewer sees them); the file-handling
cases (metadata, formats, time, refusals, full disk, read-only folder, Ctrl-C, kill) use `--model blur`, done
locally by the same media path with CenterFace boxes, so they need no server. Full-disk and read-only folders are
real: a small or read-only tmpfs mounted in a user+mount namespace (`unshare`), where the run sees ENOSPC/EROFS.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageCms

from facedeid.data.ffmpeg import decode_video

FACEDEID = Path(sys.executable).parent / "facedeid"
NAMES = ("Jane Doe", "Joe Smith", "Springfield")  # what a file may carry that must not leave with it


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run(*args, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(FACEDEID), "run", *map(str, args), "--no-progress"], capture_output=True, text=True,
                          timeout=timeout, **kw)


def portrait(w: int = 360, h: int = 480) -> np.ndarray:
    """The astronaut, upright, resized to w x h (her face in the upper middle)."""
    return cv2.resize(skimage.data.astronaut(), (w, h), interpolation=cv2.INTER_AREA)


def face_box(w: int, h: int) -> tuple[slice, slice]:
    """The astronaut's face in a w x h resize of the 512x512 picture (rows 60-220, columns 200-330 there)."""
    return slice(int(70 * h / 512), int(210 * h / 512)), slice(int(205 * w / 512), int(320 * w / 512))


def corner(h: int, w: int) -> tuple[slice, slice]:
    return slice(int(h * 0.8), h), slice(0, int(w * 0.25))


def diff(a: np.ndarray, b: np.ndarray, region) -> float:
    return float(np.abs(a[region].astype(int) - b[region].astype(int)).mean())


def assert_face_replaced(upright: np.ndarray, out: np.ndarray) -> None:
    h, w = upright.shape[:2]
    assert out.shape[:2] == (h, w), f"output is {out.shape[1]}x{out.shape[0]}, upright source is {w}x{h}"
    assert diff(upright, out, corner(h, w)) < 6, "the output is not the upright picture (sideways or changed)"
    assert diff(upright, out, face_box(w, h)) > 8, "the face came back unchanged"


def ffmpeg_info(path: Path) -> str:
    return subprocess.run([ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def video_frames(path: Path) -> list[np.ndarray]:
    return decode_video(path, ["-fps_mode", "passthrough"])[0]


def stream_duration(path: Path, stream: str) -> float:
    """Seconds of one stream (v or a), from its decoded packets."""
    proc = subprocess.run([ffmpeg(), "-v", "error", "-i", str(path), "-map", f"0:{stream}:0", "-c", "copy",
                           "-f", "framecrc", "-"], capture_output=True, text=True)
    tb = re.search(r"#tb 0: (\d+)/(\d+)", proc.stdout)
    rows = [[int(x) for x in line.split(",")[1:4]] for line in proc.stdout.splitlines() if line[:1].isdigit()]
    start = min(r[1] for r in rows)
    end = max(r[1] + r[2] for r in rows)
    return (end - start) * int(tb.group(1)) / int(tb.group(2))


def encode_video(frames: list[np.ndarray], path: Path, fps: float = 10, extra: list[str] = (),
                 codec: list[str] = ("-c:v", "libx264", "-pix_fmt", "yuv420p")) -> Path:
    h, w = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([ffmpeg(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                           "-r", str(fps), "-i", "-", *extra, *codec, str(path)],
                          input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return path


def numbered(n: int, w: int = 320, h: int = 240) -> list[np.ndarray]:
    """The astronaut with frame i's index written as a grey level in a band at the bottom (5 * i)."""
    base = portrait(w, h)
    out = []
    for i in range(n):
        f = base.copy()
        f[-16:, :] = 5 * i
        out.append(f)
    return out


def band(frame: np.ndarray) -> int:
    return int(round(float(frame[-10:-4, 10:-10].mean()) / 5))


def no_temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------------ orientation


INVERSE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def phone_photo(path: Path, orientation: int) -> np.ndarray:
    """A JPEG whose pixels are stored turned, with the EXIF Orientation that shows them upright, plus what a phone
    writes beside it (Make, Model, GPS, XMP, an ICC profile). Returns the upright picture."""
    upright = portrait()
    stored = Image.fromarray(upright).transpose(INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F], exif[0x0110] = "PhoneMaker", "Jane Doe's phone"
    exif[0x013B] = "Jane Doe"  # Artist
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)})
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>Jane Doe</dc:creator></x:xmpmeta>'
    stored.save(path, "JPEG", quality=95, exif=exif, icc_profile=icc, xmp=xmp)
    with Image.open(path) as im:  # the file says what a viewer must do to show it upright
        from PIL import ImageOps

        assert np.abs(np.asarray(ImageOps.exif_transpose(im)).astype(int) - upright).mean() < 4
    return upright


def assert_no_image_metadata(path: Path) -> None:
    data = path.read_bytes()
    with Image.open(path) as im:
        assert not im.getexif(), f"EXIF left in {path.name}: {dict(im.getexif())}"
        assert "icc_profile" not in im.info and "xmp" not in im.info and "exif" not in im.info
        assert not getattr(im, "text", {}), f"text chunks left: {im.text}"
    for name in NAMES + ("PhoneMaker", "xmpmeta", "Exif"):
        assert name.encode() not in data, f"{name!r} is still in {path.name}"


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_phone_photos_come_out_upright_with_faces_replaced_and_no_metadata(triton, tmp_path, orientation):
    src = tmp_path / f"IMG_{orientation}.jpg"
    upright = phone_photo(src, orientation)
    proc = run(src, "--url", triton.grpc_url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / f"IMG_{orientation}_anonymized.jpg"
    assert "EXIF orientation applied" in proc.stderr
    assert_face_replaced(upright, np.asarray(Image.open(out).convert("RGB")))
    assert_no_image_metadata(out)


def test_rotated_phone_video_comes_out_displayed_the_right_way(tmp_path):
    upright = [f for f in numbered(6, 240, 320)]  # portrait 240x320, as the phone's user saw it
    stored = encode_video([np.ascontiguousarray(np.rot90(f, k=-1)) for f in upright], tmp_path / "stored.mp4")
    src = tmp_path / "phone.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-display_rotation", "90", "-i", str(stored), "-c", "copy", str(src)],
                   check=True)
    assert "rotation of 90" in ffmpeg_info(src)
    proc = run(src, "--model", "blur")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "phone_anonymized.mp4"
    info = ffmpeg_info(out)
    assert "rotation" not in info.lower() and "Display Matrix" not in info
    frames = video_frames(out)
    assert len(frames) == 6
    for before, after in zip(upright, frames):
        assert after.shape == (320, 240, 3)
        assert diff(before, after, (slice(0, 300), slice(0, 40))) < 6  # upright: the left edge is the same
        assert diff(before, after, face_box(240, 320)) > 5


def test_data_extract_reads_rotated_video_upright(tmp_path):
    from facedeid.data.video import open_video

    upright = numbered(3, 240, 320)
    stored = encode_video([np.ascontiguousarray(np.rot90(f, k=-1)) for f in upright], tmp_path / "stored.mp4")
    src = tmp_path / "phone.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-display_rotation", "90", "-i", str(stored), "-c", "copy", str(src)],
                   check=True)
    for decoder in ("opencv", "ffmpeg"):
        reader = open_video(src, decoder)
        try:
            assert (reader.info.width, reader.info.height) == (240, 320), decoder
            frame = next(iter(reader.frames()))[2]()
            assert frame.shape == (320, 240, 3) and diff(upright[0], frame, (slice(None), slice(None))) < 6, decoder
        finally:
            reader.close()


# ------------------------------------------------------------------------------------------------ metadata


def edited_video(tmp_path: Path, ext: str = ".mp4") -> Path:
    """What an editor exports: title, comment, location, creation time, chapters with names, a subtitle track
    naming people, and the sound."""
    frames = encode_video(numbered(20), tmp_path / "frames.mp4")
    meta = tmp_path / "meta.txt"
    meta.write_text(";FFMETADATA1\ntitle=Jane Doe at home\ncomment=filmed by Joe Smith\n"
                    "location=+52.3702+004.8952/\nlocation-eng=+52.3702+004.8952/\n"
                    "creation_time=2024-05-01T10:00:00Z\nartist=Jane Doe\n"
                    "[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle=Jane Doe enters\n"
                    "[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=2000\ntitle=Joe Smith speech\n")
    subs = tmp_path / "subs.srt"
    subs.write_text("1\n00:00:00,000 --> 00:00:01,500\nJoe Smith: hello Springfield\n")
    src = tmp_path / f"edited{ext}"
    sub_codec = "mov_text" if ext == ".mp4" else "srt"
    subprocess.run([ffmpeg(), "-y", "-v", "error", "-i", str(frames), "-f", "lavfi", "-i", "sine=duration=2",
                    "-i", str(subs), "-i", str(meta), "-map", "0:v", "-map", "1:a", "-map", "2:s",
                    "-map_metadata", "3", "-map_chapters", "3", "-c:v", "copy", "-c:a", "aac", "-c:s", sub_codec,
                    "-metadata:s:a", "title=Jane Doe mic", "-metadata:s:s", "title=Names",
                    *(["-attach", str(subs), "-metadata:s:t", "mimetype=text/plain"] if ext == ".mkv" else []),
                    str(src)], check=True)
    info = ffmpeg_info(src)
    assert "Chapter #0:1" in info and "Subtitle" in info and "Jane Doe" in info and "location" in info.lower()
    return src


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_video_leaves_without_chapters_subtitles_attachments_or_tags(tmp_path, ext):
    src = edited_video(tmp_path, ext)
    proc = run(src, "--model", "blur")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / f"edited_anonymized{ext}"
    info = ffmpeg_info(out)
    assert "Chapter" not in info and "Subtitle" not in info and "Attachment" not in info and "Data:" not in info
    for tag in ("title", "comment", "location", "creation_time", "artist"):
        assert not re.search(rf"^\s*{tag}\s*:", info, flags=re.M | re.I), f"{tag} left:\n{info}"
    # Matroska must name its muxing application: the bare name without version, nothing from the source
    assert re.findall(r"^\s*encoder\s*:\s*(.*)$", info, flags=re.M) in ([], ["Lavf"]), info
    data = out.read_bytes()
    for name in NAMES:
        assert name.encode() not in data, f"{name!r} left in the file"
    assert "Audio:" in info and stream_duration(out, "a") == pytest.approx(2.0, abs=0.1)
    assert len(video_frames(out)) == 20


def test_keep_metadata_keeps_only_the_tags_asked_for(tmp_path):
    src = edited_video(tmp_path)
    proc = run(src, tmp_path / "kept.mp4", "--model", "blur", "--keep-metadata", "creation_time")
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = ffmpeg_info(tmp_path / "kept.mp4")
    assert re.search(r"creation_time\s*:\s*2024-05-01", info)
    assert "Jane Doe" not in info and "Chapter" not in info and "location" not in info


def test_no_audio_drops_the_sound(tmp_path):
    src = edited_video(tmp_path)
    proc = run(src, tmp_path / "silent.mp4", "--model", "blur", "--no-audio")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Audio:" not in ffmpeg_info(tmp_path / "silent.mp4")


# ------------------------------------------------------------------------------------------------ formats


def assert_blurred_frames(sources: list[np.ndarray], outs: list[np.ndarray]) -> None:
    assert len(outs) == len(sources), f"{len(outs)} frames written for {len(sources)}"
    for before, after in zip(sources, outs):
        h, w = before.shape[:2]
        assert after.shape[:2] == (h, w)
        assert diff(before, after, face_box(w, h)) > 5, "a frame's face came back unchanged"


def pil_frames(path: Path, mode: str = "RGB") -> list[np.ndarray]:
    out = []
    with Image.open(path) as im:
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            out.append(np.asarray(im.convert(mode)))
    return out


@pytest.mark.parametrize("ext", [".gif", ".webp", ".tiff", ".png"])
def test_animated_and_multi_page_files_keep_every_frame(tmp_path, ext):
    frames = [portrait(240, 320) // d for d in (1, 2, 3)]
    src = tmp_path / f"anim{ext}"
    ims = [Image.fromarray(f) for f in frames]
    kwargs = {} if ext == ".tiff" else {"duration": [100, 200, 300], "loop": 0}
    ims[0].save(src, save_all=True, append_images=ims[1:], **kwargs)
    proc = run(src, "--model", "blur")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / f"anim_anonymized{ext}"
    assert "3 frames" in proc.stderr
    with Image.open(out) as im:
        assert im.n_frames == 3
    source_frames = pil_frames(src)
    assert_blurred_frames(source_frames, pil_frames(out))
    if ext != ".tiff":
        with Image.open(out) as im:
            durations = []
            for i in range(3):
                im.seek(i)
                im.load()  # WebP gives a frame's duration once it is decoded
                durations.append(im.info.get("duration"))
        assert durations == [100, 200, 300]


def test_animation_into_a_one_frame_type_is_refused_before_any_work(tmp_path):
    src = tmp_path / "anim.gif"
    ims = [Image.fromarray(portrait(240, 320) // d) for d in (1, 2)]
    ims[0].save(src, save_all=True, append_images=ims[1:], duration=100)
    proc = run(src, tmp_path / "still.jpg", "--model", "blur")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"deid: {src} has 2 frames and .jpg holds one (use .gif, .webp, .png, .tif, .tiff)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anim.gif"]


def test_still_formats(tmp_path):
    """16-bit, RGBA (alpha kept), CMYK and progressive JPEG, upper-case extension, non-ASCII name."""
    base = portrait(240, 320)
    cases = {}
    p = tmp_path / "deep.png"
    Image.fromarray((base[:, :, 0].astype(np.uint16) * 257)).save(p)  # 16-bit grey
    cases[p] = np.repeat(base[:, :, :1], 3, axis=2)
    p = tmp_path / "alpha.png"
    alpha = np.full(base.shape[:2], 255, np.uint8)
    alpha[:40] = 0
    Image.fromarray(np.dstack([base, alpha])).save(p)
    cases[p] = base
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(base).convert("CMYK").save(p, quality=95)
    cases[p] = np.asarray(Image.open(p).convert("RGB"))
    p = tmp_path / "progressive.jpg"
    Image.fromarray(base).save(p, quality=95, progressive=True)
    cases[p] = base
    p = tmp_path / "UPPER.JPG"
    Image.fromarray(base).save(p, "JPEG", quality=95)
    cases[p] = base
    p = tmp_path / "fötó_日本.png"
    Image.fromarray(base).save(p)
    cases[p] = base
    for src, expect in cases.items():
        proc = run(src, "--model", "blur")
        assert proc.returncode == 0, (src.name, proc.stderr[-2000:])
        out = src.with_name(f"{src.stem}_anonymized{src.suffix}")
        assert out.exists(), proc.stderr
        got = pil_frames(out)
        assert_blurred_frames([expect], got)
        assert diff(expect, got[0], corner(320, 240)) < 6, src.name
    with Image.open(tmp_path / "alpha_anonymized.png") as im:
        a = np.asarray(im)[:, :, 3]
        assert im.mode == "RGBA" and np.array_equal(a, alpha), "the alpha channel was not kept"
    proc = run(tmp_path / "deep.png", tmp_path / "deep2.png", "--model", "blur")
    assert "16-bit written as 8-bit" in proc.stderr


def test_ten_bit_hevc_and_upper_case_video_extension(tmp_path):
    frames = numbered(8)
    src = encode_video(frames, tmp_path / "CLIP10.MP4",
                       codec=["-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error"])
    assert "yuv420p10le" in ffmpeg_info(src)
    proc = run(src, "--model", "blur")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "CLIP10_anonymized.MP4"
    assert_blurred_frames(frames, video_frames(out))


# ------------------------------------------------------------------------------------------------ time


def vfr_clip(tmp_path: Path) -> tuple[Path, list[float], list[np.ndarray]]:
    """50 frames over 3.0 s with alternating durations (0.1 s and 0.02 s, scaled) and 3.0 s of sound."""
    frames = numbered(50)
    durs = [0.1 if i % 2 == 0 else 0.02 for i in range(50)]
    durs = [d * 3.0 / sum(durs) for d in durs]
    lines = []
    for i, (f, d) in enumerate(zip(frames, durs)):
        Image.fromarray(f).save(tmp_path / f"f{i:03d}.png")
        lines.append(f"file 'f{i:03d}.png'\nduration {d:.6f}\n")
    lines.append("file 'f049.png'\n")
    (tmp_path / "list.txt").write_text("".join(lines))
    src = tmp_path / "vfr.mp4"
    subprocess.run([ffmpeg(), "-y", "-v", "error", "-f", "concat", "-i", str(tmp_path / "list.txt"), "-f", "lavfi",
                    "-i", "sine=duration=3", "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-shortest", str(src)], check=True)
    for i in range(50):
        (tmp_path / f"f{i:03d}.png").unlink()
    starts = list(np.cumsum([0.0] + durs[:-1]))
    return src, starts, frames


def packet_times(path: Path) -> list[float]:
    """Presentation times (s) of the video's frames, from its packets (ffmpeg, copied, not decoded)."""
    proc = subprocess.run([ffmpeg(), "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc",
                           "-"], capture_output=True, text=True)
    tb = re.search(r"#tb 0: (\d+)/(\d+)", proc.stdout)
    pts = sorted(int(line.split(",")[2]) for line in proc.stdout.splitlines() if line[:1].isdigit())
    return [(p - pts[0]) * int(tb.group(1)) / int(tb.group(2)) for p in pts]


def test_variable_frame_rate_keeps_its_time_and_audio_sync(tmp_path):
    src, _, _ = vfr_clip(tmp_path)
    starts = packet_times(src)
    shown_bands = [band(f) for f in video_frames(src)]  # what the source shows from each start on
    assert len(set(np.round(np.diff(starts), 3))) > 1, "the test clip is not variable-rate"
    proc = run(src, "--model", "blur")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "vfr_anonymized.mp4"
    assert stream_duration(out, "v") == pytest.approx(stream_duration(src, "v"), abs=0.1)
    assert stream_duration(out, "a") == pytest.approx(stream_duration(src, "a"), abs=0.05)
    frames = video_frames(out)
    rate = len(frames) / stream_duration(out, "v")
    ends = starts[1:] + [stream_duration(src, "v")]
    off = []
    for k, f in enumerate(frames):  # output frame k (at k / rate) shows a source frame on screen within a frame
        t = k / rate
        near = {shown_bands[i] for i, (a, b) in enumerate(zip(starts, ends)) if a < t + 1 / rate and b > t - 1 / rate}
        if band(f) not in near:
            off.append((k, band(f), sorted(near)))
    assert not off, f"{len(off)} of {len(frames)} frames are not the source's frame at their time: {off}"
    assert "variable-rate source resampled" in proc.stderr


# ------------------------------------------------------------------------------------------------ refusals


def test_wrong_output_extensions_are_refused_before_any_work(tmp_path):
    clip = encode_video(numbered(3), tmp_path / "clip.mp4")
    photo = tmp_path / "photo.jpg"
    Image.fromarray(portrait()).save(photo)
    for src, dst, what in ((clip, "clip.png", "a video cannot be written as .png"),
                           (photo, "photo.mp4", "an image cannot be written as .mp4"),
                           (clip, "clip.webm", "a video cannot be written as .webm")):
        proc = run(src, tmp_path / dst, "--model", "blur")
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"deid: {tmp_path / dst}: {what} (use "), lines
        assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "photo.jpg"]


def test_truncated_source_names_the_frames_that_could_be_read(tmp_path):
    full = encode_video(numbered(90, 320, 240), tmp_path / "full.mp4", fps=30, extra=["-movflags", "+faststart"])
    src = tmp_path / "cut.mp4"
    data = full.read_bytes()
    src.write_bytes(data[:len(data) * 4 // 10])
    proc = run(src, "--model", "blur")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        rf"deid: failed {re.escape(str(src))}: the file is truncated: \d+ of about 90 frames can be read; "
        "nothing written", lines[0]), lines
    assert not (tmp_path / "cut_anonymized.mp4").exists() and not no_temporaries(tmp_path)


def in_namespace_with_tmpfs(folder: Path, options: str, command: list[str], timeout: int = 300):
    """Run `command` where `folder` is a fresh tmpfs mounted with `options` (user+mount namespace: no root
    needed on the host; the network is shared, so a server on 127.0.0.1 would answer)."""
    script = f'mount -t tmpfs -o {options} tmpfs "{folder}" && exec "$@"'
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
                           *map(str, command)], capture_output=True, text=True, timeout=timeout)


def test_full_disk_says_so_and_leaves_nothing(tmp_path):
    clip = encode_video([f + np.random.default_rng(i).integers(0, 40, f.shape, dtype=np.uint8)
                         for i, f in enumerate(numbered(30))], tmp_path / "noisy.mp4")  # noise: a big output
    full = tmp_path / "full"
    full.mkdir()
    listing = tmp_path / "listing.txt"
    script = f'"$0" run "$1" "$2" --model blur --no-progress --no-audio; rc=$?; ls -A "{full}" > "{listing}"; exit $rc'
    proc = in_namespace_with_tmpfs(full, "size=64k", ["sh", "-c", script, FACEDEID, clip, full / "out.mp4"])
    if "unshare" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.fail(f"user namespaces are not available here: {proc.stderr}")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"deid: failed {full / 'out.mp4'}: not written: no space left in {full}"], lines
    assert listing.read_text().strip() == ""  # no output, no temporaries


def test_read_only_folder_is_refused_before_any_work(tmp_path):
    clip = encode_video(numbered(3), tmp_path / "clip.mp4")
    ro = tmp_path / "ro"
    ro.mkdir()
    proc = in_namespace_with_tmpfs(ro, "ro", [FACEDEID, "run", clip, ro / "out.mp4", "--model", "blur",
                                              "--no-progress"])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"deid: cannot write to {ro} (Read-only file system)"]


def test_image_on_a_full_disk_says_so(tmp_path):
    src = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(src)
    full = tmp_path / "full"
    full.mkdir()
    proc = in_namespace_with_tmpfs(full, "size=64k", [FACEDEID, "run", src, full / "out.png", "--model", "blur",
                                                      "--no-progress"])
    assert proc.returncode == 1, proc.stderr
    assert f"deid: failed {full / 'out.png'}: not written: no space left in {full}" in proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ stopping


def test_ctrl_c_on_a_folder_stops_keeps_finished_files_and_exits_130(tmp_path):
    src = tmp_path / "clips"
    for i in range(5):
        encode_video(numbered(50), src / f"clip{i}.mp4")
    out = tmp_path / "out"
    # Ctrl-C as a terminal sends it: a session started in the background without job control (`cmd &` in a
    # script) ignores SIGINT, and an ignored signal stays ignored across exec, so the run would never see it. A
    # handler of our own is reset to the default in the child, whose Python then turns SIGINT into KeyboardInterrupt.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([str(FACEDEID), "run", str(src), str(out), "--model", "blur", "--no-progress"],
                                stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (out.exists() and any(p.suffix == ".mp4" and not p.name.startswith(".")
                                                                      for p in out.iterdir())):
        time.sleep(0.05)
    time.sleep(0.3)  # the next file is under way
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    written = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    assert 1 <= len(written) < 5
    assert last == (f"deid: interrupted: {len(written)} file(s) written to {out}; the file in progress was not "
                    "written and nothing after it was started")
    assert not no_temporaries(out)
    for p in written:
        assert len(video_frames(p)) == 50  # finished files are whole


def test_killed_run_leaves_nothing_under_the_output_name(tmp_path):
    clip = encode_video(numbered(120), tmp_path / "long.mp4")
    dst = tmp_path / "long_anonymized.mp4"
    proc = subprocess.Popen([str(FACEDEID), "run", str(clip), "--model", "blur", "--no-progress"],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.name.startswith(".long_anonymized") for p in tmp_path.iterdir()):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert not dst.exists()
    for p in tmp_path.iterdir():  # a kill leaves hidden temporaries at most, never the output name
        assert p.name in ("long.mp4",) or p.name.startswith(".long_anonymized"), p.name
    for p in list(tmp_path.iterdir()):
        if p.name.startswith("."):
            p.unlink()


def test_client_close_never_races_requests_in_flight(triton):
    """Requests in flight or retrying when the client closes end as errors naming the close, never as grpc's
    `UsageError: Channel is closed`, and nothing runs after close returns."""
    from concurrent.futures import CancelledError

    from facedeid.client.triton import DeidClient, DeidError

    frame = portrait(640, 480)
    for _ in range(3):
        client = DeidClient([triton.grpc_url], concurrency=8, timeout_s=60)
        futures = [client.submit("deid_mobileunet", frame) for _ in range(24)]
        time.sleep(0.2)
        client.close()
        for fut in futures:
            assert fut.done()
            try:
                fut.result(timeout=0)
            except CancelledError:
                pass
            except DeidError as exc:
                assert "closed before this frame was done" in str(exc), exc
        with pytest.raises(DeidError, match="closed"):
            client.submit("deid_mobileunet", frame).result()


def test_every_output_container_is_written_and_read_back_as_a_source(tmp_path):
    """Each container the run writes plays back with every frame and the sound, and is itself a source the run
    reads (AVI has decode times only, MPEG-TS and FLV start their streams after zero)."""
    from facedeid.client.video_io import OUTPUT_MUXERS

    frames = numbered(12)
    silent = encode_video(frames, tmp_path / "silent.mp4")
    clip = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(silent), "-f", "lavfi", "-i", "sine=duration=1.2",
                    "-c:v", "copy", "-c:a", "aac", "-shortest", str(clip)], check=True)
    for ext in OUTPUT_MUXERS:
        out = tmp_path / f"out{ext}"
        proc = run(clip, out, "--model", "blur")
        assert proc.returncode == 0, (ext, proc.stderr[-1000:])
        assert len(video_frames(out)) == 12 and "Audio:" in ffmpeg_info(out), ext
        if ext in (".avi", ".ts", ".flv"):
            again = tmp_path / f"again_{ext[1:]}.mp4"
            proc = run(out, again, "--model", "blur")
            assert proc.returncode == 0, (ext, proc.stderr[-1000:])
            assert len(video_frames(again)) == 12, ext
            assert stream_duration(again, "a") == pytest.approx(stream_duration(out, "a"), abs=0.05), ext


def test_keep_metadata_icc_keeps_the_colour_profile_only(tmp_path):
    src = tmp_path / "photo.jpg"
    phone_photo(src, 6)
    proc = run(src, tmp_path / "kept.jpg", "--model", "blur", "--keep-metadata", "icc")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(src) as im_src, Image.open(tmp_path / "kept.jpg") as im:
        assert im.info.get("icc_profile") == im_src.info["icc_profile"]
        assert not im.getexif() and "xmp" not in im.info
