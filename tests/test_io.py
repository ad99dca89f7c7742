"""Tests of vfe_hub.io: every input kind, frame metadata, order, lazy decoding, read_frame and the error messages."""
from __future__ import annotations

import os
import re
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from media import panning_clip, photo, write_image, write_video
from vfe_hub.errors import InputError
from vfe_hub.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Frame, FrameStore, natural_key, open_frames, read_frame

LOSSY_TOLERANCE = 8.0  # mean abs difference (0-255) allowed after a lossy codec (jpeg, webp, H.264, mpeg4)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def check_image(frame: Frame, shape: tuple[int, int]) -> None:
    assert frame.image.shape == (*shape, 3)
    assert frame.image.dtype == np.uint8
    assert frame.image.flags.c_contiguous


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    return panning_clip(n=6, size=(120, 160))


@pytest.fixture(scope="module")
def mp4(tmp_path_factory, clip) -> str:
    return str(write_video(tmp_path_factory.mktemp("video") / "clip.mp4", clip))


# ---------------------------------------------------------------------------------------------------- images


def test_png_reads_back_exactly_in_rgb_order(tmp_path):
    image = photo("chelsea", (90, 120))
    assert mean_abs_diff(image, image[..., ::-1]) > 20  # the photo would reveal a BGR mix-up
    path = write_image(tmp_path / "cat.png", image)
    frames = list(open_frames(path))
    assert len(frames) == 1
    frame = frames[0]
    check_image(frame, (90, 120))
    np.testing.assert_array_equal(frame.image, image)
    assert (frame.name, frame.index, frame.sequence, frame.source) == (str(path), 0, "<stream>", str(path))


@pytest.mark.parametrize("name", ["photo.jpg", "PHOTO.JPEG", "photo.bmp", "photo.webp", "photo.tif", "photo.TIFF"])
def test_every_image_extension(tmp_path, name):
    image = photo("coffee", (64, 96))
    frame, = open_frames(write_image(tmp_path / name, image))
    check_image(frame, (64, 96))
    if name.lower().endswith((".bmp", ".tif", ".tiff")):
        np.testing.assert_array_equal(frame.image, image)
    else:  # jpeg and webp are lossy
        assert mean_abs_diff(frame.image, image) < LOSSY_TOLERANCE
        assert mean_abs_diff(frame.image, image[..., ::-1]) > 3 * LOSSY_TOLERANCE


def test_grayscale_and_rgba_files_become_rgb(tmp_path):
    gray = photo("camera", (40, 60))[..., 0]
    rgba = np.dstack([photo("rocket", (40, 60)), np.full((40, 60), 128, np.uint8)])
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    gray_frame, rgba_frame = open_frames([tmp_path / "gray.png", tmp_path / "rgba.png"])
    np.testing.assert_array_equal(gray_frame.image, np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_array_equal(rgba_frame.image, rgba[..., :3])


def test_palette_la_and_cmyk_files_become_rgb(tmp_path):
    rgb = photo("coffee", (40, 60))
    palette = Image.fromarray(rgb).quantize(16)
    la = Image.fromarray(rgb).convert("LA")
    cmyk = Image.fromarray(rgb).convert("CMYK")
    palette.save(tmp_path / "palette.png")
    la.save(tmp_path / "la.png")
    cmyk.save(tmp_path / "cmyk.tif")
    frames = list(open_frames([tmp_path / "palette.png", tmp_path / "la.png", tmp_path / "cmyk.tif"]))
    for frame, image in zip(frames, [palette, la, cmyk]):
        check_image(frame, (40, 60))
        np.testing.assert_array_equal(frame.image, np.array(image.convert("RGB")))
    assert mean_abs_diff(frames[2].image, rgb) < 2  # CMYK holds the same picture


def test_exif_orientation_is_applied(tmp_path):
    image = photo("astronaut", (40, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(image).save(tmp_path / "phone.png", exif=exif)
    frame, = open_frames(tmp_path / "phone.png")
    np.testing.assert_array_equal(frame.image, np.rot90(image, -1))


def gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(values.astype(np.uint8)[..., None], 3, axis=2)


def test_16_bit_png_is_read_on_the_full_16_bit_scale(tmp_path):
    values = np.array([[0, 1, 128, 129, 257], [5000, 32767, 32768, 65278, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "levels.png")
    picture = photo("camera", (40, 60))[..., 0]
    Image.fromarray(picture.astype(np.uint16) * 257).save(tmp_path / "camera16.png")
    with Image.open(tmp_path / "levels.png") as image:
        assert image.mode == "I;16"
    levels, camera = open_frames([tmp_path / "levels.png", tmp_path / "camera16.png"])
    check_image(levels, (2, 5))
    np.testing.assert_array_equal(levels.image, gray(np.array([[0, 0, 0, 1, 1], [19, 127, 128, 254, 255]])))
    np.testing.assert_array_equal(camera.image, gray(picture))  # v * 257 reads back as v
    np.testing.assert_array_equal(read_frame(tmp_path / "camera16.png"), gray(picture))


def test_16_bit_arrays_are_read_as_16_bit_files_are(tmp_path):
    """A uint16 array gives the frame its 16-bit PNG gives (not the values modulo 256)."""
    values = np.array([[0, 1, 128, 129, 257], [5000, 32767, 32768, 65278, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "levels.png")
    expected = gray(np.array([[0, 0, 0, 1, 1], [19, 127, 128, 254, 255]]))
    np.testing.assert_array_equal(next(iter(open_frames(tmp_path / "levels.png"))).image, expected)
    rgb = np.repeat(values[..., None], 3, axis=2)
    frames = list(open_frames([values, rgb, np.stack([rgb, 65535 - rgb])]))
    assert len(frames) == 4
    for frame in frames[:3]:
        check_image(frame, (2, 5))
        np.testing.assert_array_equal(frame.image, expected)
    np.testing.assert_array_equal(frames[3].image, 255 - expected)


@pytest.mark.parametrize(("values", "hint"), [
    (np.array([[0, 255]], dtype=np.int64), r"Its values are 0-255: convert it with array\.astype\(np\.uint8\)"),
    (np.array([[0, 4095]], dtype=np.int32), r"Its values reach 4095: .*array\.astype\(np\.uint16\)"),
    (np.array([[-5, 300]], dtype=np.int16), r"Its values span -5 to 300: scale them to 0-255 first"),
    (np.array([[False, True]]), r"If it is a mask, convert it with array\.astype\(np\.uint8\) \* 255"),
])
def test_other_integer_arrays_get_the_conversion_their_values_need(values, hint):
    with pytest.raises(InputError, match=r"expected dtype uint8 .*" + hint):
        open_frames(values)


def test_high_bit_depth_pil_images(tmp_path):
    values = np.array([[0, 257, 65535]], dtype=np.uint16)
    big_endian = Image.frombytes("I;16B", (3, 1), values.astype(">u2").tobytes())
    as_int32 = Image.fromarray(values.astype(np.int32))
    signed = Image.fromarray(np.array([[-100, 0, 300]], dtype=np.int32))  # outside 0-65535: stretched
    unit = Image.fromarray(np.array([[0.0, 0.2, 1.0]], dtype=np.float32))
    wide = Image.fromarray(np.array([[-1.0, 0.0, 3.0]], dtype=np.float32))  # outside [0, 1]: stretched
    flat = Image.fromarray(np.full((1, 3), 7.5, dtype=np.float32))
    assert [im.mode for im in (big_endian, as_int32, signed, unit, wide, flat)] == ["I;16B", "I", "I", "F", "F", "F"]
    unit.save(tmp_path / "unit.tif")
    frames = list(open_frames([big_endian, as_int32, signed, unit, wide, flat, tmp_path / "unit.tif"]))
    expected = [[0, 1, 255], [0, 1, 255], [0, 64, 255], [0, 51, 255], [0, 64, 255], [0, 0, 0], [0, 51, 255]]
    for frame, row in zip(frames, expected, strict=True):
        check_image(frame, (1, 3))
        np.testing.assert_array_equal(frame.image, gray(np.array([row])))


def test_float_image_with_nan_is_an_error(tmp_path):
    Image.fromarray(np.array([[0.5, np.nan]], dtype=np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(InputError, match=r"nan\.tif holds NaN or infinite values.*nan_to_num"):
        list(open_frames(tmp_path / "nan.tif"))
    with pytest.raises(InputError, match=r"input 1 \(PIL image\) holds NaN"):
        list(open_frames([photo("coffee", (4, 4)), Image.fromarray(np.array([[np.inf]], dtype=np.float32))]))


def png_header(width: int, height: int) -> bytes:
    """A PNG file whose header claims ``width x height`` RGB pixels, with no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_decompression_bomb_is_an_input_error_that_says_how_to_allow_it(tmp_path, monkeypatch):
    (tmp_path / "huge.png").write_bytes(png_header(50_000, 40_000))  # 2 gigapixels in 57 bytes
    source = open_frames(tmp_path / "huge.png")  # nothing is decoded yet
    with pytest.raises(InputError, match=r"huge\.png is too large to decode safely.*MAX_IMAGE_PIXELS = None"):
        list(source)
    image = photo("rocket", (40, 60))
    path = write_image(tmp_path / "rocket.png", image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 2400 pixels: Pillow only warns up to twice the limit
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(
            InputError, match=r"rocket\.png is too large.*60 x 40 pixels, over PIL\.Image\.MAX_IMAGE_PIXELS = 2000"):
        read_frame(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses
    with pytest.raises(InputError, match=r"rocket\.png is too large.*MAX_IMAGE_PIXELS = None"):
        list(open_frames(path))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the documented way to allow it
    frame, = open_frames(path)
    np.testing.assert_array_equal(frame.image, image)


# ---------------------------------------------------------------------------------------------------- videos


@pytest.mark.parametrize("name", ["clip.mp4", "clip.avi", "clip.MOV"])  # H.264, mpeg4, H.264
def test_video_decodes_to_its_frames(tmp_path, clip, name):
    path = str(write_video(tmp_path / name, clip))
    source = open_frames(path)
    assert len(source) == 6
    assert source.sequences == [(path, 6)]
    frames = list(source)
    assert len(frames) == 6
    for i, (frame, original) in enumerate(zip(frames, clip)):
        check_image(frame, (120, 160))
        assert mean_abs_diff(frame.image, original) < LOSSY_TOLERANCE
        assert mean_abs_diff(frame.image, original[..., ::-1]) > 3 * LOSSY_TOLERANCE  # RGB, not BGR
        assert (frame.name, frame.index, frame.sequence, frame.source) == (f"{path}#{i}", i, path, f"{path}#{i}")
    # the pan is visible: each decoded frame matches its own original better than its neighbour's
    assert mean_abs_diff(frames[3].image, clip[3]) < mean_abs_diff(frames[3].image, clip[2])


def test_video_without_frame_count_has_no_len(tmp_path, clip):
    path = str(write_video(tmp_path / "clip.mkv", clip))  # matroska stores no frame count
    source = open_frames(path)
    assert source.sequences == [(path, None)]
    with pytest.raises(TypeError, match="clip.mkv"):
        len(source)
    assert len(list(source)) == 6


def test_video_rotation_metadata_is_applied(tmp_path, clip):
    path = write_video(tmp_path / "portrait.mp4", clip, rotation=90)
    frames = list(open_frames(path))
    check_image(frames[0], (160, 120))
    assert mean_abs_diff(frames[0].image, np.rot90(clip[0], 1)) < LOSSY_TOLERANCE


def test_decoding_is_lazy_and_repeatable(tmp_path, clip):
    path = write_video(tmp_path / "clip.mp4", clip)
    image_path = write_image(tmp_path / "still.png", clip[0])
    source = open_frames([path, image_path])
    other = panning_clip(n=6, size=(120, 160), name="coffee")
    write_video(path, other)  # replaced after open_frames: iteration must decode the new content
    write_image(image_path, other[0])
    first = list(source)
    assert mean_abs_diff(first[0].image, other[0]) < LOSSY_TOLERANCE
    np.testing.assert_array_equal(first[-1].image, other[0])
    second = list(source)
    assert [f.name for f in second] == [f.name for f in first]
    np.testing.assert_array_equal(second[2].image, first[2].image)


# ---------------------------------------------------------------------------------------------------- folders and globs


def test_natural_key():
    names = ["frame_10.jpg", "Frame_2.jpg", "frame_1.jpg", "frame_02b.jpg", "a.jpg"]
    assert sorted(names, key=natural_key) == ["a.jpg", "frame_1.jpg", "Frame_2.jpg", "frame_02b.jpg", "frame_10.jpg"]


def test_folder_is_one_sequence_in_natural_order(tmp_path, clip):
    folder = tmp_path / "frames"
    for number, image in zip([10, 2, 1], clip):
        write_image(folder / f"frame_{number}.png", image)
    (folder / "labels.txt").write_text("not an image, skipped")
    (folder / ".frame_0.png").write_text("hidden, skipped")
    source = open_frames(folder)
    assert source.sequences == [(str(folder), 3)]
    assert len(source) == 3
    frames = list(source)
    assert [os.path.basename(f.name) for f in frames] == ["frame_1.png", "frame_2.png", "frame_10.png"]
    assert [f.index for f in frames] == [0, 1, 2]
    assert {f.sequence for f in frames} == {str(folder)}
    assert frames[1].source == str(folder / "frame_2.png")
    for frame, original in zip(frames, [clip[2], clip[1], clip[0]]):
        np.testing.assert_array_equal(frame.image, original)


def test_folder_videos_and_recursive_subfolders(tmp_path, clip):
    root = tmp_path / "data"
    write_video(root / "b.mp4", clip[:3])
    write_video(root / "a.mp4", clip[:2])
    write_image(root / "seq1" / "0.png", clip[0])
    write_image(root / "seq10" / "0.png", clip[0])
    write_image(root / "seq2" / "0.png", clip[0])
    write_image(root / "seq2" / "1.png", clip[1])
    assert open_frames(root).sequences == [(str(root / "a.mp4"), 2), (str(root / "b.mp4"), 3)]
    source = open_frames(root, recursive=True)
    assert source.sequences == [(str(root / "a.mp4"), 2), (str(root / "b.mp4"), 3), (str(root / "seq1"), 1),
                                (str(root / "seq2"), 2), (str(root / "seq10"), 1)]
    frames = list(source)
    assert len(frames) == len(source) == 9
    assert [(f.sequence.rsplit(os.sep, 1)[-1], f.index) for f in frames] == [
        ("a.mp4", 0), ("a.mp4", 1), ("b.mp4", 0), ("b.mp4", 1), ("b.mp4", 2),
        ("seq1", 0), ("seq2", 0), ("seq2", 1), ("seq10", 0)]


def test_glob_is_sorted_naturally_with_one_sequence_per_folder(tmp_path, clip):
    for folder in ["cam_b", "cam_a"]:
        for number in [11, 3]:
            write_image(tmp_path / folder / f"{number}.png", clip[number % 6])
    write_image(tmp_path / "cam_a" / "skip.jpg", clip[0])
    source = open_frames(str(tmp_path / "cam_*" / "*.png"))
    assert source.sequences == [(str(tmp_path / "cam_a"), 2), (str(tmp_path / "cam_b"), 2)]
    frames = list(source)
    assert [os.path.relpath(f.name, tmp_path) for f in frames] == [
        os.path.join("cam_a", "3.png"), os.path.join("cam_a", "11.png"),
        os.path.join("cam_b", "3.png"), os.path.join("cam_b", "11.png")]
    assert [f.index for f in frames] == [0, 1, 0, 1]
    np.testing.assert_array_equal(frames[1].image, clip[5])
    assert len(open_frames(str(tmp_path / "**" / "*.jpg"))) == 1


# ---------------------------------------------------------------------------------------------------- in memory


def test_in_memory_inputs_form_one_stream(clip):
    rgb, gray = clip[0], clip[1][..., 1]
    batch = np.stack(clip[2:4])
    chw = torch.from_numpy(clip[4]).permute(2, 0, 1)
    float_batch = torch.from_numpy(np.stack(clip[:2])).permute(0, 3, 1, 2).float() / 255
    inputs = [Image.fromarray(clip[5]), rgb, gray, batch, chw, float_batch]
    source = open_frames(inputs)
    assert source.sequences == [("<stream>", 8)]
    frames = list(source)
    expected = [clip[5], rgb, np.repeat(gray[..., None], 3, axis=2), clip[2], clip[3], clip[4], clip[0], clip[1]]
    assert len(frames) == len(expected)
    for i, (frame, image) in enumerate(zip(frames, expected)):
        check_image(frame, (120, 160))
        np.testing.assert_array_equal(frame.image, image)
        assert (frame.name, frame.index, frame.sequence, frame.source) == (f"<array {i}>", i, "<stream>", None)


def test_float_tensor_is_rounded_to_uint8():
    values = torch.tensor([0.0, 0.2, 0.5, 0.999, 1.0], dtype=torch.float64)
    frame, = open_frames(values.reshape(1, 1, 5).expand(3, 1, 5))
    np.testing.assert_array_equal(frame.image[0, :, 0], [0, 51, 128, 255, 255])  # round(x * 255)
    assert frame.image.shape == (1, 5, 3)


def test_pil_image_is_converted_to_rgb():
    image = photo("chelsea", (30, 40))
    frame, = open_frames(Image.fromarray(image).convert("RGBA"))
    np.testing.assert_array_equal(frame.image, image)


def test_tensor_on_the_device_under_test_is_read_back_to_the_host(clip, device):
    """A ``(3, H, W)`` uint8 tensor on the tests' device (``VFE_HUB_TEST_DEVICE``; the GPU check runs this on CUDA)
    becomes the same ``(H, W, 3)`` host image."""
    frame, = open_frames(torch.from_numpy(clip[0]).permute(2, 0, 1).to(device))
    assert isinstance(frame.image, np.ndarray)
    np.testing.assert_array_equal(frame.image, clip[0])


def test_loose_images_and_videos_keep_input_order(tmp_path, clip, mp4):
    still = write_image(tmp_path / "still.png", clip[0])
    source = open_frames([still, mp4, clip[1]])
    assert source.sequences == [("<stream>", 2), (mp4, 6)]
    frames = list(source)
    assert [(f.sequence, f.index) for f in frames] == [("<stream>", 0)] + [(mp4, i) for i in range(6)] + [
        ("<stream>", 1)]
    assert frames[-1].name == "<array 1>"
    assert [f.image_id for f in frames] == list(range(1, 9))  # 1-based over the whole input, across sequences
    assert [f.image_id for f in source] == list(range(1, 9))  # again on the next iteration


# ---------------------------------------------------------------------------------------------------- read_frame


def test_read_frame_round_trip(tmp_path, clip, mp4):
    still = write_image(tmp_path / "still.png", clip[0])
    frames = list(open_frames([still, mp4]))
    np.testing.assert_array_equal(read_frame(frames[0].source), clip[0])
    for k in (0, 4):
        np.testing.assert_array_equal(read_frame(frames[1 + k].source), frames[1 + k].image)
    with pytest.raises(InputError, match=r"clip\.mp4 has 6 frames; frame 99"):
        read_frame(f"{mp4}#99")
    with pytest.raises(InputError, match=re.escape(f"{mp4}#<index>")):
        read_frame(mp4)


# ---------------------------------------------------------------------------------------------------- errors


def test_missing_path_suggests_close_names(tmp_path, clip):
    write_image(tmp_path / "frame_01.png", clip[0])
    with pytest.raises(InputError, match=r"frame_1\.png: no such file.*did you mean 'frame_01\.png'"):
        open_frames(tmp_path / "frame_1.png")
    with pytest.raises(InputError, match=r"nowhere.*does not exist"):
        open_frames(tmp_path / "nowhere" / "clip.mp4")
    with pytest.raises(InputError, match="frame_1.png: no such file"):
        read_frame(str(tmp_path / "frame_1.png"))


def test_unknown_extension(tmp_path):
    Image.fromarray(photo("coffee", (20, 20))).save(tmp_path / "anim.gif")
    with pytest.raises(InputError, match=r"anim\.gif: unsupported file type '\.gif'.*\.png"):
        open_frames(tmp_path / "anim.gif")


def test_text_file_named_as_image_fails_when_decoded(tmp_path):
    (tmp_path / "notes.jpg").write_text("not a picture")
    source = open_frames(tmp_path / "notes.jpg")
    with pytest.raises(InputError, match=r"notes\.jpg cannot be decoded as an image"):
        list(source)


@pytest.mark.parametrize("content", ["meeting notes\n", ""])
def test_text_or_empty_file_named_as_video(tmp_path, content):
    (tmp_path / "notes.mp4").write_text(content)
    with pytest.raises(InputError, match=r"notes\.mp4 cannot be opened as a video"):
        open_frames(tmp_path / "notes.mp4")


def test_video_without_frames(tmp_path):
    path = write_video(tmp_path / "empty.avi", [])  # a video stream with no frames
    source = open_frames(path)
    assert source.sequences == [(str(path), None)]
    with pytest.raises(InputError, match=r"empty\.avi contains no decodable video frames"):
        list(source)


def test_empty_folder_and_glob(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "readme.txt").write_text("no media here")
    with pytest.raises(InputError, match=f"{re.escape(str(tmp_path))} contains no images or videos.*recursive=True"):
        open_frames(tmp_path)
    with pytest.raises(InputError, match=r"sub contains no images or videos"):
        open_frames(tmp_path / "sub")
    with pytest.raises(InputError, match=r"'.*\*\.jpg' matches no files"):
        open_frames(str(tmp_path / "*.jpg"))
    with pytest.raises(InputError, match=r"'.*\*' matches 1 files but no image or video"):
        open_frames(str(tmp_path / "*"))


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros((8, 8, 3), np.float64), r"shape \(8, 8, 3\), dtype float64\): expected dtype uint8.*\* 255"),
    (np.zeros((8, 8, 4), np.uint8), r"shape \(8, 8, 4\).*expected shape \(H, W, 3\).*alpha"),
    (np.zeros((3, 8, 8), np.uint8), r"shape \(3, 8, 8\).*transpose\(1, 2, 0\)"),
    (np.zeros((2, 8, 8, 3, 1), np.uint8), r"shape \(2, 8, 8, 3, 1\)"),
    (np.zeros((0, 8, 8, 3), np.uint8), r"shape \(0, 8, 8, 3\).*empty"),
    (torch.zeros(8, 8, 3, dtype=torch.uint8), r"shape \(8, 8, 3\).*expected shape \(3, H, W\).*permute\(2, 0, 1\)"),
    (torch.zeros(3, 8, 8, dtype=torch.int64), r"dtype torch\.int64\): expected dtype uint8"),
    (torch.full((3, 8, 8), 255.0), r"float values must lie in \[0, 1\], got \[255, 255\]"),
    (torch.full((3, 8, 8), float("nan")), r"must lie in \[0, 1\]"),
])
def test_bad_arrays(array, message):
    with pytest.raises(InputError, match=message):
        open_frames(array)


def test_bad_items_and_lists(tmp_path, clip, mp4):
    with pytest.raises(InputError, match=r"input 1 is a int \(3\); expected a path"):
        open_frames([clip[0], 3])
    with pytest.raises(InputError, match="nested lists"):
        open_frames([[clip[0]]])
    with pytest.raises(InputError, match="no inputs"):
        open_frames([])
    with pytest.raises(InputError, match=re.escape(f"{mp4} is given more than once")):
        open_frames([mp4, os.path.dirname(mp4)])


def test_extension_sets():
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"} == IMAGE_EXTENSIONS
    assert {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"} == VIDEO_EXTENSIONS


def test_frame_store_gives_frames_back_in_any_order_from_disk(tmp_path):
    """Video frames go to a temporary file, image files stay paths, arrays stay as given: each comes back equal,
    with its identity, in any order."""
    video = write_video(tmp_path / "clip.mp4", panning_clip(n=4, size=(48, 64)))
    image = write_image(tmp_path / "still.png", photo("coffee", (30, 40)))
    frames = list(open_frames([video, image, photo("chelsea", (20, 30))]))
    with FrameStore() as store:
        for frame in frames:
            store.add(frame)
        assert len(store) == len(frames) == 6
        for i in (5, 2, 0, 4, 1, 3, 2):
            got, want = store[i], frames[i]
            assert np.array_equal(got.image, want.image) and got.image.dtype == np.uint8
            assert (got.name, got.index, got.sequence, got.source, got.image_id) == (
                want.name, want.index, want.sequence, want.source, want.image_id)


def test_frame_store_keeps_decoded_video_frames_out_of_memory():
    import tracemalloc

    frame = np.full((240, 320, 3), 7, dtype=np.uint8)  # 230 KB each, 40 of them: 9.2 MB
    tracemalloc.start()
    try:
        with FrameStore() as store:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(40):
                store.add(Frame(frame.copy(), f"clip.mp4#{i}", i, "clip.mp4", f"/videos/clip.mp4#{i}", i + 1))
            held = tracemalloc.get_traced_memory()[0] - before
            assert np.array_equal(store[39].image, frame)
    finally:
        tracemalloc.stop()
    assert held < 1_000_000, f"{held} bytes held for 40 stored frames"
