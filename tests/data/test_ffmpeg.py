"""facedeid.data.ffmpeg: whole-clip encode and decode through ffmpeg children started without a fork of the
caller (the test process holds gRPC threads, where imageio-ffmpeg's forked children failed at random)."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from facedeid.data.ffmpeg import FFmpegError, decode_video, encode_video


def frames(n: int, size=(160, 120)) -> list[np.ndarray]:
    import cv2

    photo = cv2.resize(skimage.data.astronaut(), size, interpolation=cv2.INTER_AREA)
    return [np.roll(photo, 4 * i, axis=1) for i in range(n)]


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_a_clip_comes_back_with_its_frames_size_rate_and_pixels(tmp_path, ext):
    src = frames(9)
    path = encode_video(tmp_path / f"clip{ext}", src, 12.5)
    out, fps = decode_video(path)
    assert fps == pytest.approx(12.5) and len(out) == 9 and out[0].shape == (120, 160, 3)
    assert out[0].dtype == np.uint8
    # crf 10 H.264: close to the source, and each frame is its own (the pan is kept, not one frame repeated)
    errors = [np.abs(a.astype(int) - b).mean() for a, b in zip(out, src)]
    assert max(errors) < 4, errors
    assert np.abs(out[8].astype(int) - src[0]).mean() > 4 * max(errors)


def test_odd_sides_need_and_get_444(tmp_path):
    src = frames(3, size=(161, 121))
    with pytest.raises(FFmpegError, match="clip.mp4: ffmpeg could not write it"):
        encode_video(tmp_path / "clip.mp4", src, 10)
    out, _ = decode_video(encode_video(tmp_path / "clip.mp4", src, 10, pix_fmt="yuv444p"))
    assert len(out) == 3 and out[0].shape == (121, 161, 3)


def test_unreadable_files_and_mixed_sizes_fail_with_the_file_named(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(FFmpegError, match="notes.mp4: ffmpeg cannot decode it"):
        decode_video(bad)
    with pytest.raises(ValueError, match="mixed.mp4: frame of 80x60 among 160x120 frames"):
        encode_video(tmp_path / "mixed.mp4", [frames(1)[0], frames(1, size=(80, 60))[0]], 10)
    with pytest.raises(ValueError, match="no frames"):
        encode_video(tmp_path / "empty.mp4", [], 10)


def test_a_stream_knows_its_size_rate_and_duration_before_the_first_frame(tmp_path):
    from facedeid.data.ffmpeg import VideoStream

    src = frames(10)
    stream = VideoStream(encode_video(tmp_path / "clip.mp4", src, 10))
    try:
        assert (stream.width, stream.height, stream.fps) == (160, 120, 10.0)
        assert stream.duration == pytest.approx(1.0, abs=0.05)
        out = list(stream)
    finally:
        stream.close()
    assert len(out) == 10 and np.abs(out[9].astype(int) - src[9]).mean() < 4
