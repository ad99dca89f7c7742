"""Every kind of user input turned into a lazy stream of RGB frames.

:func:`open_frames` accepts a single item or a list/tuple of items, each one of

* a path (``str`` or :class:`pathlib.Path`, ``~`` expanded) to an image file (:data:`IMAGE_EXTENSIONS`, any case);
* a path to a video file (:data:`VIDEO_EXTENSIONS`), decoded with PyAV;
* a directory: its images, sorted in natural order (``frame_2`` before ``frame_10``), form one sequence keyed by
  the directory, and each of its videos is a sequence of its own; with ``recursive=True`` every sub-directory is
  scanned the same way. Hidden files and files of other types (annotations, notes) are skipped;
* a glob pattern (``"frames/*.jpg"``, ``"data/**/*.png"``; ``**`` always recurses): matches sorted in natural
  order, the images of each parent directory forming one sequence, each video its own;
* a :class:`PIL.Image.Image` (converted to RGB as image files are, see below);
* a numpy array, ``uint8``, or ``uint16`` read on the full 16-bit scale as 16-bit image files are (below):
  ``(H, W, 3)`` RGB, ``(H, W)`` grayscale (repeated to 3 channels) or ``(N, H, W, 3)`` for N frames. OpenCV
  images are BGR: pass ``img[..., ::-1]``;
* a torch tensor in torchvision's CHW layout, on any device: ``(3, H, W)`` or ``(N, 3, H, W)``, either ``uint8``
  (0-255) or floating point in [0, 1] (converted by ``round(x * 255)``).

Image files given directly and in-memory images of one call form the sequence ``"<stream>"`` with consecutive
indices, listed once in :attr:`FrameSource.sequences` where it first appears; iteration keeps the order of the
inputs. A sequence key may occur only once per call (a directory or video given twice is an error). Iteration
also numbers every frame over the whole input: :attr:`Frame.image_id` is 1 for the first frame yielded, 2 for the
next, across all sequences.

Images become ``uint8`` RGB as follows. 8-bit and 1-bit modes (grayscale, palette, LA, RGBA, CMYK, YCbCr) are
converted by Pillow (alpha is dropped, not blended). Single-channel 16-bit and 32-bit integer images (Pillow
modes ``I;16``, ``I;16B``, ``I``, e.g. 16-bit PNG or TIFF) are read on the full 16-bit scale,
``round(v / 257)`` (0 -> 0, 65535 -> 255): the same value gives the same grey in every image of a sequence, as in
an image viewer; values outside 0-65535 (only possible in mode ``I``) are stretched from the image's minimum to its
maximum instead. Floating-point images (mode ``F``) in [0, 1] become ``round(v * 255)``, others are stretched
from their minimum to their maximum; a NaN or infinite value is an error. EXIF orientation is applied.

An image file over Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 megapixels by
default) raises :class:`~vfe_hub.errors.InputError` when iterated (up to twice the limit Pillow itself only
warns, and its ``DecompressionBombWarning`` still shows); allow larger files with
``PIL.Image.MAX_IMAGE_PIXELS = None`` (or a larger number) before predicting. Images are decoded at full
resolution even when the model resizes them far down: Pillow's JPEG ``draft`` mode would decode a smaller,
DCT-scaled image whose pixels differ from a full decode followed by the model's resize, and whose size is not
the input's, so it is not used.

Nothing is decoded by :func:`open_frames`: it checks paths, arrays and video containers (metadata only), and
iteration decodes one frame at a time. Every bad input raises :class:`~vfe_hub.errors.InputError` naming it;
image files that cannot be decoded and videos without a decodable frame raise when iterated.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from typing import BinaryIO, Union

import av
import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import InputError, close_matches

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
"""Image file suffixes, lower case with the dot; matched case-insensitively."""
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
"""Video file suffixes, lower case with the dot; matched case-insensitively."""
STREAM = "<stream>"
"""Sequence key of the loose images and in-memory arrays of one :func:`open_frames` call."""

FrameInput = Union[str, os.PathLike[str], Image.Image, np.ndarray, torch.Tensor]
FrameInputs = Union[FrameInput, Sequence[FrameInput]]

_GLOB_CHARS = re.compile(r"[*?\[]")
_ACCEPTED = ("a path to an image, video or folder, a glob pattern, a PIL.Image.Image, "
             "a uint8 or uint16 numpy array (H, W, 3) / (H, W) / (N, H, W, 3) or a torch tensor (3, H, W) / (N, 3, H, W)")


@dataclass(repr=False)
class Frame:
    """One decoded frame and where it came from.

    ``image`` is ``(H, W, 3)`` ``uint8`` RGB, C-contiguous (it may share memory with an in-memory input).
    ``name`` is the image path, ``"clip.mp4#12"`` for frame 12 of a video, or ``"<array 3>"`` for the in-memory
    input at index 3 of the stream. ``index`` is the 0-based position within ``sequence``: the video path, the
    folder path, or ``"<stream>"``. ``source`` is what :func:`read_frame` re-reads: the absolute image path,
    ``"/abs/clip.mp4#12"`` for a video frame, ``None`` for in-memory inputs. ``image_id`` is the frame's 1-based
    position over all frames of its :class:`FrameSource`, counted as it iterates (0 before that).
    """

    image: np.ndarray
    name: str
    index: int
    sequence: str
    source: str | None
    image_id: int = 0

    def __repr__(self) -> str:
        return (f"Frame(name={self.name!r}, index={self.index}, sequence={self.sequence!r}, "
                f"image_id={self.image_id}, shape={self.image.shape})")


@dataclass(frozen=True)
class _Segment:
    """Consecutive frames of one sequence: ``length`` frames (``None`` if unknown) produced by ``read()``."""

    sequence: str
    length: int | None
    read: Callable[[], Iterator[Frame]]


class FrameSource:
    """The frames of :func:`open_frames`'s inputs, decoded lazily; iterable any number of times.

    ``sequences`` lists ``(sequence key, number of frames or None)`` in order of first appearance, known without
    decoding (a video's count comes from its container metadata, ``None`` where it has none, e.g. mkv/webm).
    """

    def __init__(self, segments: list[_Segment]) -> None:
        self._segments = segments
        lengths: dict[str, int | None] = {}
        for segment in segments:  # only the stream continues over several segments
            before = lengths.get(segment.sequence, 0)
            lengths[segment.sequence] = None if before is None or segment.length is None else before + segment.length
        self.sequences: list[tuple[str, int | None]] = list(lengths.items())

    def __iter__(self) -> Iterator[Frame]:
        """The frames in input order, each with its :attr:`Frame.image_id` (1, 2, ... over all sequences)."""
        image_id = 0
        for segment in self._segments:
            for frame in segment.read():
                image_id += 1
                frame.image_id = image_id
                yield frame

    def __len__(self) -> int:
        """Total number of frames; ``TypeError`` if a video's container does not record its frame count."""
        total = 0
        for key, count in self.sequences:
            if count is None:
                raise TypeError(f"the number of frames of {key} is not in its container metadata; "
                                "iterate to count them")
            total += count
        return total

    def __repr__(self) -> str:
        try:
            frames = str(len(self))
        except TypeError:
            frames = "?"
        return f"FrameSource({len(self.sequences)} sequences, {frames} frames)"


def open_frames(inputs: FrameInputs, *, recursive: bool = False) -> FrameSource:
    """Check ``inputs`` (see the module docstring) and return their frames as a lazy :class:`FrameSource`.

    ``recursive`` also scans the sub-directories of directory inputs, each its own sequence.
    Raises :class:`InputError` for a missing path, an unsupported extension, an empty folder or glob, an
    unreadable video container, an array or tensor of the wrong dtype, shape or range, or an unsupported type.
    """
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise InputError("no inputs given: pass a path, a glob pattern, an image or an array, or a list of them")
    segments: list[_Segment] = []
    keys: set[str] = set()
    stream_count = 0
    for position, item in enumerate(items):
        label = f"input {position}" if len(items) > 1 else "the input"
        if isinstance(item, (str, os.PathLike)):
            new = _path_segments(os.path.expanduser(os.fspath(item)), recursive, stream_count)
        elif isinstance(item, Image.Image):
            new = [_Segment(STREAM, 1, partial(_memory_frames, partial(_pil_rgb, item, label), 1, stream_count))]
        elif isinstance(item, np.ndarray):
            new = [_Segment(STREAM, *_numpy_frames(item, label, stream_count))]
        elif isinstance(item, torch.Tensor):
            new = [_Segment(STREAM, *_tensor_frames(item, label, stream_count))]
        else:
            hint = " (nested lists are not supported: flatten them)" if isinstance(item, (list, tuple)) else ""
            raise InputError(f"{label} is a {type(item).__name__} ({item!r:.60}){hint}; expected {_ACCEPTED}")
        for segment in new:
            if segment.sequence == STREAM:
                assert segment.length is not None  # in-memory inputs and image files are counted
                stream_count += segment.length
            elif segment.sequence in keys:
                raise InputError(f"{segment.sequence} is given more than once (directly, through its folder or "
                                 "a glob); give each video and folder once")
            keys.add(segment.sequence)
        segments.extend(new)
    return FrameSource(segments)


def read_frame(source: str | os.PathLike[str]) -> np.ndarray:
    """Re-read the ``(H, W, 3)`` uint8 RGB image that a :attr:`Frame.source` names.

    ``source`` is an image path or ``"clip.mp4#12"`` (frame 12 of the video, decoded from the start, so the cost
    grows with the index).
    """
    source = os.fspath(source)
    path, sep, index = source.rpartition("#")
    if sep and index.isascii() and index.isdigit() and _suffix(path) in VIDEO_EXTENSIONS:
        if not os.path.exists(path):
            raise _missing_error(path)
        return _read_video_frame(path, int(index))
    if not os.path.exists(source):
        raise _missing_error(source)
    suffix = _suffix(source)
    if suffix in VIDEO_EXTENSIONS:
        raise InputError(f"{source} is a whole video; name one of its frames as '{source}#<index>'")
    if suffix not in IMAGE_EXTENSIONS:
        raise _extension_error(source)
    return _load_image(source)


def natural_key(text: str) -> tuple[object, ...]:
    """Sort key for natural order: digit runs compare as numbers, the rest case-insensitively."""
    parts = re.split(r"(\d+)", text, flags=re.ASCII)
    return (*(int(part) if i % 2 else part.lower() for i, part in enumerate(parts)), text)


# ---------------------------------------------------------------------------------------------------- paths


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _path_segments(path: str, recursive: bool, stream_start: int) -> list[_Segment]:
    if not path:
        raise InputError("an input is an empty path: pass the path of an image, a video or a folder")
    if os.path.isdir(path):
        return _directory_segments(path, recursive)
    if os.path.exists(path):
        suffix = _suffix(path)
        if suffix in IMAGE_EXTENSIONS:
            return [_Segment(STREAM, 1, partial(_image_frames, STREAM, [path], stream_start))]
        if suffix in VIDEO_EXTENSIONS:
            return [_video_segment(path)]
        raise _extension_error(path)
    if _GLOB_CHARS.search(path):
        return _glob_segments(path)
    raise _missing_error(path)


def _missing_error(path: str) -> InputError:
    """A not-found error suggesting the closest names in the same folder."""
    folder, name = os.path.split(path)
    folder = folder or "."
    if os.path.isdir(folder):
        matches = close_matches(name, os.listdir(folder))
        hint = f"; did you mean {', '.join(repr(m) for m in matches)}?" if matches else f"; nothing similar in {folder}"
    else:
        hint = f"; the folder {folder} does not exist either"
    where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
    return InputError(f"{path}: no such file or directory{where}{hint}")


def _extension_error(path: str) -> InputError:
    return InputError(f"{path}: unsupported file type {_suffix(path) or '(no extension)'!r}; images must end in "
                      f"{', '.join(sorted(IMAGE_EXTENSIONS))} and videos in {', '.join(sorted(VIDEO_EXTENSIONS))}; "
                      "convert the file or rename it if the extension is wrong")


def _directory_segments(folder: str, recursive: bool) -> list[_Segment]:
    folder = os.path.normpath(folder)
    segments = _scan_directory(folder, recursive, visited=set())
    if not segments:
        with os.scandir(folder) as entries:
            has_subdirs = any(entry.is_dir() for entry in entries)
        hint = ("; its sub-folders are scanned with recursive=True" if has_subdirs and not recursive
                else f"; put images ({', '.join(sorted(IMAGE_EXTENSIONS))}) or videos in it")
        raise InputError(f"{folder} contains no images or videos{hint}")
    return segments


def _scan_directory(folder: str, recursive: bool, visited: set[str]) -> list[_Segment]:
    """Segments of ``folder``: its images as one sequence, then its videos, then (recursive) its sub-folders."""
    visited.add(os.path.realpath(folder))
    images, videos, subdirs, skipped = [], [], [], 0
    with os.scandir(folder) as entries:
        listing = sorted(entries, key=lambda entry: natural_key(entry.name))
    for entry in listing:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            subdirs.append(entry.path)
        elif _suffix(entry.name) in IMAGE_EXTENSIONS:
            images.append(entry.path)
        elif _suffix(entry.name) in VIDEO_EXTENSIONS:
            videos.append(entry.path)
        else:
            skipped += 1
    if skipped:
        logger.debug("%s: skipped %d files that are neither images nor videos", folder, skipped)
    segments = [_image_segment(folder, images)] if images else []
    segments += [_video_segment(video) for video in videos]
    if recursive:
        for subdir in subdirs:
            if os.path.realpath(subdir) not in visited:
                segments += _scan_directory(subdir, recursive, visited)
    return segments


def _glob_segments(pattern: str) -> list[_Segment]:
    matches = sorted((p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)), key=natural_key)
    if not matches:
        raise InputError(f"the glob pattern {pattern!r} matches no files; check the folder and the pattern "
                         "(e.g. 'frames/*.jpg', or 'frames/**/*.jpg' for sub-folders)")
    by_folder: dict[str, list[str]] = {}
    order: list[str] = []  # folder keys and video paths, in order of first appearance
    for path in matches:
        if _suffix(path) in IMAGE_EXTENSIONS:
            folder = os.path.dirname(path) or "."
            if folder not in by_folder:
                by_folder[folder] = []
                order.append(folder)
            by_folder[folder].append(path)
        elif _suffix(path) in VIDEO_EXTENSIONS:
            order.append(path)
    if not order:
        raise InputError(
            f"the glob pattern {pattern!r} matches {len(matches)} files but no image or video (e.g. {matches[0]}); "
            f"supported: {', '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))}")
    return [_image_segment(key, by_folder[key]) if key in by_folder else _video_segment(key) for key in order]


# ---------------------------------------------------------------------------------------------------- images


def _image_segment(folder: str, paths: list[str]) -> _Segment:
    return _Segment(folder, len(paths), partial(_image_frames, folder, paths, 0))


def _image_frames(sequence: str, paths: list[str], start: int) -> Iterator[Frame]:
    for index, path in enumerate(paths, start):
        yield Frame(_load_image(path), path, index, sequence, os.path.abspath(path))


def _load_image(path: str) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB (see the module docstring), applying its EXIF orientation."""
    try:
        with Image.open(path) as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                raise _too_large_error(path, f"{image.width} x {image.height} pixels, over "
                                             f"PIL.Image.MAX_IMAGE_PIXELS = {limit}")
            return _rgb(ImageOps.exif_transpose(image), path)
    except InputError:
        raise
    except Image.DecompressionBombError as error:
        raise _too_large_error(path, str(error)) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path} cannot be decoded as an image ({error}); check that it is a valid "
                         f"{_suffix(path)[1:].upper()} file, or re-save it") from error


def _too_large_error(path: str, why: str) -> InputError:
    return InputError(f"{path} is too large to decode safely ({why}); Pillow guards against decompression bombs. "
                      "If you trust the file, allow it with PIL.Image.MAX_IMAGE_PIXELS = None (or a larger number) "
                      "before predicting, or downscale it")


def _rgb(image: Image.Image, name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a Pillow image of any mode, high bit depths scaled as the module docstring says."""
    if image.mode not in ("F", "I") and not image.mode.startswith("I;16"):
        return np.array(image.convert("RGB"))
    values = np.asarray(image, dtype=np.float64)
    if values.size and not np.isfinite(values).all():
        raise InputError(f"{name} holds NaN or infinite values (Pillow mode {image.mode}); replace them, e.g. "
                         "with numpy.nan_to_num, and save the image again")
    low, high = (values.min(), values.max()) if values.size else (0, 0)
    if image.mode != "F" and 0 <= low and high <= 65535:
        return np.repeat(_from_16_bit(values)[:, :, None], 3, axis=2)
    if image.mode == "F" and 0 <= low and high <= 1:
        gray = values * 255.0
    else:  # stretch the image's own range to 0-255
        gray = (values - low) * (255.0 / (high - low)) if high > low else np.zeros(values.shape)
    return np.repeat(np.round(gray).astype(np.uint8)[:, :, None], 3, axis=2)


def _from_16_bit(values: np.ndarray) -> np.ndarray:
    """Values on the full 16-bit scale as ``uint8``: ``round(v / 257)`` (0 -> 0, 65535 -> 255)."""
    return np.round(values / 257.0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------- videos


def _video_segment(path: str) -> _Segment:
    """Open the container to check it and read its frame count; nothing is decoded."""
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream; pass a file with video in it")
            count = container.streams.video[0].frames
    except av.FFmpegError as error:
        raise InputError(f"{path} cannot be opened as a video ({error}); check that it is a complete video file "
                         "(e.g. it plays in a video player) or re-encode it with ffmpeg") from error
    return _Segment(path, count or None, partial(_video_file_frames, path))


def _video_file_frames(path: str) -> Iterator[Frame]:
    source = os.path.abspath(path)
    for index, frame in enumerate(_decode(path)):
        yield Frame(_video_rgb(frame), f"{path}#{index}", index, path, f"{source}#{index}")


def _decode(path: str) -> Iterator[av.VideoFrame]:
    """The frames of the first video stream, in output order, with threaded decoding."""
    count = 0
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame
                count += 1
    except av.FFmpegError as error:
        raise InputError(f"{path}: decoding failed at frame {count} ({error}); the file may be truncated or "
                         "corrupt: re-encode it with ffmpeg") from error
    if count == 0:
        raise InputError(f"{path} contains no decodable video frames; check that the video plays, or re-encode it")


def _video_rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8 RGB, turned as the display matrix says when it rotates by a multiple of 90 degrees."""
    image = frame.to_ndarray(format="rgb24")
    if frame.rotation % 90 == 0:  # counter-clockwise degrees, as ffmpeg displays it
        image = np.rot90(image, frame.rotation // 90)
    return np.ascontiguousarray(image)


def _read_video_frame(path: str, index: int) -> np.ndarray:
    count = 0
    with closing(_decode(path)) as frames:
        for count, frame in enumerate(frames, 1):
            if count == index + 1:
                return _video_rgb(frame)
    raise InputError(f"{path} has {count} frames; frame {index} does not exist (indices start at 0)")


# ---------------------------------------------------------------------------------------------------- in memory


def _memory_frames(get: Callable[[int], np.ndarray], count: int, start: int) -> Iterator[Frame]:
    for i in range(count):
        yield Frame(get(i), f"<array {start + i}>", start + i, STREAM, None)


def _pil_rgb(image: Image.Image, label: str, _: int) -> np.ndarray:
    return _rgb(image, f"{label} (PIL image)")


def _numpy_frames(array: np.ndarray, label: str, start: int) -> tuple[int, Callable[[], Iterator[Frame]]]:
    """Check a uint8 or uint16 (H, W, 3), (H, W) or (N, H, W, 3) array; return its frame count and reader."""
    what = f"{label} (numpy array of shape {array.shape}, dtype {array.dtype})"
    if array.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{what}: expected dtype uint8 with values 0-255 (or uint16, read on the full 16-bit "
                         f"scale).{_conversion_hint(array)}")
    shape = array.shape
    if array.ndim == 2:
        count, get = 1, partial(_gray_frame, array)
    elif array.ndim in (3, 4) and shape[-1] == 3:
        count, get = (1, partial(_single_frame, array)) if array.ndim == 3 else (shape[0], partial(_nth_frame, array))
    else:
        hint = ""
        if array.ndim == 3 and shape[-1] == 4:
            hint = " Drop the alpha channel with array[..., :3]."
        elif array.ndim == 3 and shape[0] in (1, 3):
            hint = " For a channels-first image use array.transpose(1, 2, 0)."
        raise InputError(f"{what}: expected shape (H, W, 3) RGB, (H, W) grayscale or (N, H, W, 3).{hint}")
    if 0 in shape:
        raise InputError(f"{what}: the array is empty; expected at least one frame of at least 1 x 1 pixels")
    return count, partial(_memory_frames, get, count, start)


def _conversion_hint(array: np.ndarray) -> str:
    """How to turn an array of another dtype into one that is read as the user means it, by its values."""
    if np.issubdtype(array.dtype, np.floating):
        return " If it holds floats in [0, 1], convert it with (array * 255).round().astype(np.uint8)."
    if array.dtype == np.bool_:
        return " If it is a mask, convert it with array.astype(np.uint8) * 255."
    if array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        return ""
    low, high = int(array.min()), int(array.max())
    if low >= 0 and high <= 255:
        return " Its values are 0-255: convert it with array.astype(np.uint8)."
    if low >= 0 and high <= 65535:
        return (f" Its values reach {high}: if it holds 16-bit values, pass array.astype(np.uint16); to stretch "
                f"its own range to 0-255 instead: (array * (255 / array.max())).round().astype(np.uint8).")
    return (f" Its values span {low} to {high}: scale them to 0-255 first, e.g. "
            f"((array - array.min()) * (255 / (array.max() - array.min()))).round().astype(np.uint8).")


def _eight_bit(frame: np.ndarray) -> np.ndarray:
    """A uint8 frame as it is; a uint16 one on the full 16-bit scale (:func:`_from_16_bit`)."""
    return np.ascontiguousarray(frame) if frame.dtype == np.uint8 else _from_16_bit(frame)


def _single_frame(array: np.ndarray, _: int) -> np.ndarray:
    return _eight_bit(array)


def _nth_frame(array: np.ndarray, i: int) -> np.ndarray:
    return _eight_bit(array[i])


def _gray_frame(array: np.ndarray, _: int) -> np.ndarray:
    return np.repeat(_eight_bit(array)[:, :, None], 3, axis=2)


def _tensor_frames(tensor: torch.Tensor, label: str, start: int) -> tuple[int, Callable[[], Iterator[Frame]]]:
    """Check a (3, H, W) or (N, 3, H, W) uint8 or [0, 1] float tensor; return its frame count and reader."""
    tensor = tensor.detach()
    what = f"{label} (torch tensor of shape {tuple(tensor.shape)}, dtype {tensor.dtype})"
    if tensor.dtype != torch.uint8 and not tensor.is_floating_point():
        raise InputError(f"{what}: expected dtype uint8 (0-255) or a float dtype with values in [0, 1]; "
                         "convert it with tensor.to(torch.uint8) or tensor.float() / 255")
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        hint = (" For a channels-last image use tensor.permute(2, 0, 1)."
                if tensor.ndim == 3 and tensor.shape[-1] == 3 else "")
        raise InputError(f"{what}: expected shape (3, H, W) or (N, 3, H, W), RGB channels first.{hint}")
    if tensor.numel() == 0:
        raise InputError(f"{what}: the tensor is empty; expected at least one frame of at least 1 x 1 pixels")
    if tensor.is_floating_point():
        low, high = torch.aminmax(tensor.float())
        if not (low >= 0 and high <= 1):
            raise InputError(f"{what}: float values must lie in [0, 1], got [{low.item():.4g}, {high.item():.4g}]; "
                             "for 0-255 values use tensor.to(torch.uint8), undo any mean/std normalisation first")
    frames = tensor if tensor.ndim == 4 else tensor[None]
    return len(frames), partial(_memory_frames, partial(_tensor_frame, frames), len(frames), start)


def _tensor_frame(frames: torch.Tensor, i: int) -> np.ndarray:
    frame = frames[i].cpu()
    if frame.is_floating_point():
        frame = frame.float().mul(255).round().to(torch.uint8)
    return frame.permute(1, 2, 0).contiguous().numpy()


# ---------------------------------------------------------------------------------------------------- random access


class FrameStore:
    """The frames of one sequence held by reference, for access in any order with bounded memory.

    Image files are kept as their paths and decoded again on access; in-memory frames are kept as they are (the
    caller holds those arrays anyway); decoded video frames are written to an unnamed temporary file (``H * W * 3``
    bytes each, removed on :meth:`close`) and read back. Memory holds no decoded frame beyond in-memory inputs.
    """

    def __init__(self) -> None:
        self._items: list[tuple[Frame, str | tuple[int, tuple[int, ...]] | None]] = []
        self._spill: BinaryIO | None = None

    def add(self, frame: Frame) -> None:
        """Keep ``frame`` (appended; its position is its index in the store)."""
        if frame.source is None:
            self._items.append((frame, None))
            return
        bare = replace(frame, image=_NO_IMAGE)
        if _suffix(frame.source) in IMAGE_EXTENSIONS:
            self._items.append((bare, frame.source))
            return
        if self._spill is None:
            self._spill = tempfile.TemporaryFile()
        offset = self._spill.seek(0, os.SEEK_END)
        self._spill.write(np.ascontiguousarray(frame.image).tobytes())
        self._items.append((bare, (offset, frame.image.shape)))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, position: int) -> Frame:
        frame, where = self._items[position]
        if where is None:
            return frame
        if isinstance(where, str):
            return replace(frame, image=_load_image(where))
        offset, shape = where
        assert self._spill is not None
        self._spill.seek(offset)
        data = bytearray(self._spill.read(int(np.prod(shape))))
        return replace(frame, image=np.frombuffer(data, dtype=np.uint8).reshape(shape))

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        self._items.clear()

    def __enter__(self) -> FrameStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_NO_IMAGE = np.zeros((0, 0, 3), dtype=np.uint8)
