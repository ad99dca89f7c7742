"""Small benchmark layouts written to disk for evaluation tests: ImageNet VID (ILSVRC2015 folders and XML) and
LVIS v1 (COCO 2017 folders and an annotation file with polygon masks)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from media import panning_clip, photo, write_image

# (video, number of frames, objects per frame as (wordnet id, track id, x1, y1, x2, y2) moving 4 px per frame)
VIDEOS = (("val/ILSVRC2015_val_00000000", 4, [("n02691156", 0, 10, 20, 70, 90)]),
          ("val/ILSVRC2015_val_00000001", 3, [("n02391049", 0, 30, 10, 100, 60), ("n02084071", 1, 5, 5, 40, 50)]))


def write_vid(root: Path) -> None:
    """A two-video ILSVRC2015 layout: JPEG frames under Data/VID, XML under Annotations/VID, the video list."""
    lines, first = [], 1
    for video, count, objects in VIDEOS:
        for k, frame in enumerate(panning_clip(n=count, size=(120, 160))):
            write_image(root / "Data" / "VID" / video / f"{k:06d}.JPEG", frame)
            ann = ET.Element("annotation")
            size = ET.SubElement(ann, "size")
            ET.SubElement(size, "width").text, ET.SubElement(size, "height").text = "160", "120"
            for wnid, track, x1, y1, x2, y2 in objects:
                obj = ET.SubElement(ann, "object")
                for tag, value in (("trackid", track), ("name", wnid), ("occluded", 0), ("generated", 0)):
                    ET.SubElement(obj, tag).text = str(value)
                box = ET.SubElement(obj, "bndbox")
                for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1 + 4 * k, y1, x2 + 4 * k, y2)):
                    ET.SubElement(box, tag).text = str(value)
            path = root / "Annotations" / "VID" / video / f"{k:06d}.xml"
            path.parent.mkdir(parents=True, exist_ok=True)
            ET.ElementTree(ann).write(path)
        lines.append(f"{video} {first} 0 {count}")
        first += count
    (root / "ImageSets" / "VID").mkdir(parents=True)
    (root / "ImageSets" / "VID" / "VID_val_videos.txt").write_text("\n".join(lines) + "\n")


CATEGORIES = [{"id": 3, "name": "cat", "frequency": "r"}, {"id": 7, "name": "mug", "frequency": "c"},
              {"id": 9, "name": "rocket", "frequency": "f"}]
# (image id, folder, photo, [(category id, x1, y1, x2, y2)])
IMAGES = [(11, "val2017", "chelsea", [(3, 20, 10, 90, 70), (7, 100, 40, 150, 100)]),
          (4, "train2017", "coffee", [(9, 30, 30, 80, 110)])]


def write_lvis(root: Path, categories: list[dict] = CATEGORIES) -> Path:
    """COCO 2017 folders with two images and an LVIS v1 style annotation file with polygon masks."""
    images, annotations = [], []
    for image_id, folder, name, objects in IMAGES:
        array = photo(name, (120, 160))
        write_image(root / folder / f"{image_id:012d}.jpg", array)
        images.append({"id": image_id, "height": 120, "width": 160, "neg_category_ids": [],
                       "not_exhaustive_category_ids": [],
                       "coco_url": f"http://images.cocodataset.org/{folder}/{image_id:012d}.jpg"})
        for category, x1, y1, x2, y2 in objects:
            polygon = [x1, y1, x2, y1, (x1 + x2) / 2, y2]  # a triangle: the mask differs from the box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1) / 2,
                                "segmentation": [polygon]})
    path = root / "annotations" / "lvis_v1_val.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path
