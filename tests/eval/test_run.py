"""`facedeid run` (= client/deid.py) on a user's own media through the real `tritonserver`: default output names,
audio kept, frame rate and size kept, files others can read, folders, bad input, and the server started for the
run when none answers."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facedeid.client import cli as run_cli
from facedeid.data.ffmpeg import decode_video, encode_video
from facedeid.serving.local_server import free_port

FACEDEID = Path(sys.executable).parent / "facedeid"
FACE = (slice(30, 120), slice(135, 205))  # the astronaut's face in the 320x240 test frames


@pytest.fixture(scope="module")
def server(triton):
    return triton  # a server that cannot start fails these tests (issue 12: failures are failures)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _frame() -> np.ndarray:
    import cv2
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (320, 240), interpolation=cv2.INTER_AREA)


def make_video(path: Path, frames: int = 12, fps: float = 12.0, audio: bool = True,
               size: tuple[int, int] = (320, 240)) -> Path:
    """H.264 clip of the astronaut, with a 440 Hz tone as its sound track when `audio`."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    silent = path.with_name(f"silent_{path.name}") if audio else path
    odd = size[0] % 2 or size[1] % 2
    encode_video(silent, [cv2.resize(_frame(), size)] * frames, fps, pix_fmt="yuv444p" if odd else "yuv420p")
    if audio:
        subprocess.run([_ffmpeg(), "-y", "-v", "error", "-i", str(silent), "-f", "lavfi", "-i",
                        f"sine=frequency=440:duration={frames / fps}", "-c:v", "copy", "-c:a", "aac", "-shortest",
                        str(path)], check=True, timeout=120)
        silent.unlink()
    return path


def decoded_audio(path: Path) -> bytes:
    proc = subprocess.run([_ffmpeg(), "-v", "error", "-i", str(path), "-map", "0:a:0?", "-f", "s16le", "-ac", "1",
                           "-ar", "8000", "-"], capture_output=True, timeout=120)
    return proc.stdout


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    return decode_video(path)


def facedeid(*args, cwd=None, timeout=600):
    return subprocess.run([str(FACEDEID), "run", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, umask=0o022)


def test_video_gets_default_name_audio_rate_size_and_mode(server, tmp_path):
    clip = make_video(tmp_path / "clip.mp4")
    proc = facedeid(clip, "--url", server.grpc_url, "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "clip_anonymized.mp4"
    assert out.exists(), proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip_anonymized.mp4"]  # no temporaries left
    source_audio, out_audio = decoded_audio(clip), decoded_audio(out)
    assert len(out_audio) > 8000 and abs(len(out_audio) - len(source_audio)) < 1600  # about the same 1 s of sound
    frames, fps = read_video(out)
    src_frames, src_fps = read_video(clip)
    assert len(frames) == len(src_frames) == 12 and fps == pytest.approx(src_fps)
    assert frames[0].shape == (240, 320, 3)
    for before, after in zip(src_frames, frames):
        assert np.abs(after[FACE].astype(int) - before[FACE]).mean() > 5, "a frame's face came back unchanged"
        corner = (slice(170, 240), slice(0, 90))
        assert np.abs(after[corner].astype(int) - before[corner]).mean() < 4, "the rest of the frame changed"
    assert "with the source's audio" in proc.stderr


def test_no_audio_and_draw_boxes(server, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=4)
    proc = facedeid(clip, tmp_path / "boxed.mp4", "--url", server.grpc_url, "--no-audio", "--draw-boxes")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert decoded_audio(tmp_path / "boxed.mp4") == b""
    frames, _ = read_video(tmp_path / "boxed.mp4")
    green = (frames[0][..., 1] > 200) & (frames[0][..., 0] < 80) & (frames[0][..., 2] < 80)
    assert green.sum() > 100, "no box drawn"


def test_existing_output_is_refused_unless_overwrite(server, tmp_path):
    import skimage.data

    from facedeid.data import write_image

    src = tmp_path / "photo.png"
    write_image(src, skimage.data.astronaut())
    out = tmp_path / "photo_anonymized.png"
    out.write_bytes(b"keep me")
    proc = facedeid(src, "--url", server.grpc_url)
    assert proc.returncode == 2 and out.read_bytes() == b"keep me"
    assert proc.stderr.strip().splitlines() == [f"deid: {src}: {out} exists (--overwrite replaces it)"]
    proc = facedeid(src, "--url", server.grpc_url, "--overwrite")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_bytes()[:4] == b"\x89PNG" and stat.S_IMODE(out.stat().st_mode) == 0o644


def test_odd_sized_video_keeps_its_size_and_rate(tmp_path):
    """blur (done locally, no server): the writer keeps a 321x241 source at 321x241 and 7.5 fps."""
    clip = make_video(tmp_path / "odd.mp4", frames=6, fps=7.5, audio=False, size=(321, 241))
    proc = facedeid(clip, "--model", "blur", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames, fps = read_video(tmp_path / "odd_anonymized.mp4")
    assert len(frames) == 6 and frames[0].shape == (241, 321, 3) and fps == pytest.approx(7.5)


def test_missing_input_is_one_line(tmp_path):
    proc = facedeid(tmp_path / "nope.mp4")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"deid: {tmp_path / 'nope.mp4'} does not exist"]


def test_folder_reports_each_bad_file_and_goes_on(server, tmp_path):
    import skimage.data

    from facedeid.data import read_image, write_image

    folder = tmp_path / "media"
    write_image(folder / "a.jpg", skimage.data.astronaut())
    make_video(folder / "sub" / "talk.mp4", frames=4)
    make_video(folder / "mute.mp4", frames=4, audio=False)
    (folder / "notes.txt").write_text("not media")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "broken.mp4").write_bytes(b"not a video")
    proc = facedeid(folder, "--url", server.grpc_url, "--no-progress")
    out = tmp_path / "media_anonymized"
    assert proc.returncode == 1, proc.stderr[-3000:]  # some files could not be done
    err = proc.stderr
    assert f"skipped {folder / 'notes.txt'}: not an image or video" in err
    assert "broken.jpg" in err and "broken.mp4: cannot read it as a video" in err
    assert f"{folder / 'mute.mp4'}: no audio stream; the output has none either" in err
    assert "wrote 3 file(s)" in err and "3 not done" in err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["a.jpg", "mute.mp4",
                                                                                       "sub/talk.mp4"]
    assert decoded_audio(out / "sub" / "talk.mp4") and not decoded_audio(out / "mute.mp4")
    face = (slice(58, 178), slice(182, 270))
    assert np.abs(read_image(out / "a.jpg")[face].astype(int) - skimage.data.astronaut()[face]).mean() > 5


def test_starts_a_local_server_for_the_run_when_none_answers(exported_repo, tmp_path, monkeypatch, capsys):
    import skimage.data

    from facedeid.data import read_image, write_image

    monkeypatch.setattr(run_cli, "DEFAULT_URL", f"127.0.0.1:{free_port()}")  # an address where nothing answers
    src = tmp_path / "photo.jpg"
    write_image(src, skimage.data.astronaut())
    code = run_cli.main([str(src), "--repository", str(exported_repo[0])])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    started = [line for line in err.splitlines() if "starting a local server" in line]
    assert len(started) == 1 and "nothing answers on" in started[0] and "stopped after it" in started[0]
    assert "exporting" not in started[0]  # the repository was complete
    face = (slice(58, 178), slice(182, 270))
    out = read_image(tmp_path / "photo_anonymized.jpg")
    assert np.abs(out[face].astype(int) - skimage.data.astronaut()[face]).mean() > 5
