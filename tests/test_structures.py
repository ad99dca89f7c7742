"""Detections as people and tools see them: default integer image ids that pycocotools accepts, a short repr,
and plotting with nothing to draw."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from media import panning_clip, photo, write_image, write_video
from small_models import SMALL
from vfe_hub import engine
from vfe_hub.errors import VfeHubError
from vfe_hub.io import open_frames
from vfe_hub.registry import IMAGENET_VID_CLASSES
from vfe_hub.structures import Detections, FrameInfo

CLASSES = ("car", "dog", "a_class_name_far_longer_than_any_column_should_be")


def detections(scores: list[float], labels: list[int], *, name: str = "clip.mp4#12", image_id: int | None = 1,
               size: tuple[int, int] = (40, 60), masks: bool = False, tracks: bool = False) -> Detections:
    n = len(scores)
    boxes = torch.tensor([[2.0 + i, 3.0, 20.0 + i, 30.0] for i in range(n)]).reshape(n, 4)
    rles = None
    if masks:
        m = torch.zeros(n, *size, dtype=torch.bool)
        m[:, 3:30, 2:20] = True
        rles = Detections.encode_masks(m)
    return Detections(boxes, torch.tensor(scores, dtype=torch.float32), torch.tensor(labels), CLASSES,
                      FrameInfo(name, 12, "clip.mp4", None, size, image_id),
                      track_ids=torch.arange(n) + 5 if tracks else None, masks=rles)


def coco_ground_truth(image_ids: list[int], sizes: list[tuple[int, int]], num_classes: int) -> COCO:
    """A tiny COCO ground truth: one box per image, categories 1..num_classes."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "height": h, "width": w, "file_name": f"{i}.jpg"} for i, (h, w) in zip(image_ids, sizes)],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": 1, "bbox": [1.0, 1.0, 10.0, 10.0], "area": 100.0,
                         "iscrowd": 0} for k, i in enumerate(image_ids)],
        "categories": [{"id": c + 1, "name": f"class {c}"} for c in range(num_classes)],
    }
    coco.createIndex()
    return coco


# ---------------------------------------------------------------------------------------------------- image ids


def test_frames_are_numbered_over_the_whole_input_and_loadres_accepts_the_ids(tmp_path):
    """Two loose images, a 2-frame video and an array: ids 1..5 in input order, whatever the sequence, carried
    from io through preprocessing into the results."""
    clip = panning_clip(n=2, size=(96, 128))
    still = write_image(tmp_path / "still.png", photo("coffee", (96, 128)))
    video = write_video(tmp_path / "clip.mp4", clip)
    batch = engine.preprocess(list(open_frames([still, video, clip[1], still])), SMALL, torch.device("cpu"))
    assert [(f.sequence, f.index) for f in batch.frames] == [
        ("<stream>", 0), (str(video), 0), (str(video), 1), ("<stream>", 1), ("<stream>", 2)]
    assert [f.image_id for f in batch.frames] == [1, 2, 3, 4, 5]
    results = [Detections(torch.tensor([[1.0, 2.0, 30.0, 40.0]] * i), torch.linspace(0.9, 0.5, i),
                          torch.arange(i) % 30, IMAGENET_VID_CLASSES, frame)
               for i, frame in enumerate(batch.frames, 1)]
    records = json.loads(json.dumps([r for d in results for r in d.to_json()]))
    assert [r["image_id"] for r in records] == [i for i in range(1, 6) for _ in range(i)]
    gt = coco_ground_truth([1, 2, 3, 4, 5], [(96, 128)] * 5, len(IMAGENET_VID_CLASSES))
    loaded = gt.loadRes(records)
    assert len(loaded.getAnnIds()) == 15 and len(loaded.getAnnIds(imgIds=[3])) == 3
    assert loaded.loadAnns(loaded.getAnnIds(imgIds=[2]))[1]["category_id"] == 2


def test_to_json_default_id_with_masks_is_accepted_by_loadres():
    dets = [detections([0.9, 0.4], [0, 1], image_id=1, masks=True),
            detections([0.7], [2], image_id=2, masks=True)]
    records = [r for d in dets for r in d.to_json()]
    assert [r["image_id"] for r in records] == [1, 1, 2]
    loaded = coco_ground_truth([1, 2], [(40, 60)] * 2, 3).loadRes(records)
    assert loaded.anns[1]["area"] == 27 * 18  # decoded from the RLE
    assert [a["category_id"] for a in loaded.loadAnns(loaded.getAnnIds(imgIds=[2]))] == [3]


def test_to_json_explicit_id_and_frames_built_without_one():
    det = detections([0.9], [0], image_id=None)
    assert det.to_json(image_id=42)[0]["image_id"] == 42
    with pytest.raises(VfeHubError, match=r"clip\.mp4#12 have no image id.*to_json\(image_id=\.\.\.\)"):
        det.to_json()


# ---------------------------------------------------------------------------------------------------- repr


def test_repr_is_one_short_line():
    scores, labels = [0.2] * 100, [1] * 100
    scores[40], scores[7], scores[93], labels[40], labels[7], labels[93] = 0.5, 0.97, 0.91, 2, 0, 1
    text = repr(detections(scores, labels, masks=True, tracks=True))
    assert text == ("Detections(frame='clip.mp4#12', n=100, classes=3, masks=yes, tracks=yes, top=[('car', 0.97), "
                    "('dog', 0.91), ('a_class_name_far_longer_', 0.5)])")
    assert "\n" not in text and "tensor" not in text and "counts" not in text
    long_name = detections([], [], name="/data/" + "very_long_folder/" * 20 + "frame_000123.jpg")
    text = repr(long_name)
    assert len(text) < 300 and "frame_000123.jpg" in text and "n=0" in text and "top=[])" in text
    assert "masks=no, tracks=no" in text


# ---------------------------------------------------------------------------------------------------- plot


@pytest.mark.parametrize("masks", [False, True])
def test_plot_with_nothing_above_the_threshold_is_silent_and_unchanged(masks):
    image = photo("astronaut", (40, 60))
    for det in (detections([0.1, 0.2], [0, 1], masks=masks), detections([], [], masks=masks)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            drawn = det.plot(image, score_thr=0.5)
        assert caught == []
        np.testing.assert_array_equal(np.asarray(drawn), image)
    assert not np.array_equal(np.asarray(detections([0.9], [0], masks=masks).plot(image, score_thr=0.5)), image)


# ---------------------------------------------------------------------------------------- tracks, amodal boxes

def test_tracked_json_is_tao_results_with_video_offsets():
    det = detections([0.9, 0.5], [0, 1], tracks=True)
    plain = det.to_json()
    assert [r["track_id"] for r in plain] == [5, 6] and "video_id" not in plain[0]
    records = det.to_json(video_id=4)
    assert [(r["track_id"], r["video_id"]) for r in records] == [(4 * 10**8 + 5, 4), (4 * 10**8 + 6, 4)]
    assert "track_id" not in detections([0.9], [0]).to_json()[0]


def test_track_colours_are_stable_per_track():
    """A track has the same colour in every frame, whatever its class; another track has another colour."""
    image = np.zeros((40, 60, 3), np.uint8)

    def edge_colour(label: int, track: int) -> list[int]:
        det = Detections(torch.tensor([[2.0, 3.0, 20.0, 30.0]]), torch.tensor([0.9]), torch.tensor([label]),
                         CLASSES, FrameInfo("f", 0, "s", None, (40, 60), 1), track_ids=torch.tensor([track]))
        return np.asarray(det.plot(image, score_thr=0))[30, 10].tolist()  # the bottom edge, below the label

    assert edge_colour(0, 5) == edge_colour(1, 5) != edge_colour(0, 6)
    assert edge_colour(0, 5) != [0, 0, 0]


def test_amodal_boxes_are_the_json_bbox_and_drawn_beyond_the_frame():
    det = detections([0.9], [0], tracks=True)
    det.amodal_boxes = torch.tensor([[-10.0, 3.0, 20.0, 50.0]])  # leaves the 40 x 60 frame left and below
    [record] = det.to_json(video_id=1)
    assert record["bbox"] == [-10.0, 3.0, 30.0, 47.0] and record["modal_bbox"] == [2.0, 3.0, 18.0, 27.0]
    drawn = det.plot(np.zeros((40, 60, 3), np.uint8), score_thr=0)
    assert drawn.size == (60 + 10, 40 + 10)  # 10 px of canvas on the left, 10 below
    pixels = np.asarray(drawn)
    assert (pixels[:, :10] == 128).any() and pixels[45, 0].tolist() != [128, 128, 128], "the amodal box is drawn there"
    assert det.cpu().amodal_boxes is not None
