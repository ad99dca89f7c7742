"""How far one run's detections reproduce another's on the same frames (half precision against float32, a GPU
against the CPU): matched detections, the largest score and box differences, unchanged tracks, mask IoU."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import torch
from torchvision.ops import box_iou

from ..errors import InputError
from ..structures import Detections


def twins(reference: Detections, candidate: Detections, iou: float = 0.9) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``: detection ``j`` of ``candidate`` is the twin of detection ``i`` of ``reference`` (same
    label, box IoU >= ``iou``; two equal boxes overlap fully, also empty ones). Reference detections take their
    twins by decreasing score (equal scores by position), each the unused candidate detection of its label with
    the highest IoU; a detection is in at most one pair."""
    if not len(reference) or not len(candidate):
        return []
    a, b = reference.boxes.detach().cpu().double(), candidate.boxes.detach().cpu().double()
    equal = (a[:, None] == b[None]).all(dim=2)  # equal boxes overlap fully, also when empty (IoU 0 / 0)
    overlap = torch.where(equal, 1.0, box_iou(a, b).nan_to_num(0.0))
    same = reference.labels.cpu()[:, None] == candidate.labels.cpu()[None, :]
    overlap = torch.where(same & (overlap >= iou), overlap, torch.full_like(overlap, -1.0))
    pairs = []
    for i in torch.sort(reference.scores.detach().cpu(), descending=True, stable=True).indices.tolist():
        best, j = overlap[i].max(dim=0)
        if best >= 0:
            pairs.append((i, int(j)))
            overlap[:, j] = -1.0
    return pairs


def agreement(reference: Sequence[Detections], candidate: Sequence[Detections], iou: float = 0.9
              ) -> dict[str, float | int | None]:
    """Compare ``candidate``'s results with ``reference``'s, frame by frame (the same frames, in order).

    Returns ``detections`` (reference detections, all frames), ``matched`` (the share of them with a twin in the
    candidate frame: same label, box IoU >= ``iou``; see :func:`twins`), ``score_drift`` (the largest score
    difference between twins) and ``box_drift`` (the largest coordinate difference between twins, pixels).
    With track ids: ``tracks`` (reference tracks) and ``tracks_unchanged`` (the share of them whose every detection
    has a twin, all twins in one candidate track that holds no other detection). With masks: ``mask_iou`` (the
    mean mask IoU of twins; two empty masks agree). Entries that do not apply are ``None``; a share of nothing is
    1.0.
    """
    if len(reference) != len(candidate):
        raise InputError(f"agreement compares the same frames: got {len(reference)} reference results and "
                         f"{len(candidate)} candidate results.")
    total = matched = 0
    score_drift = box_drift = 0.0
    mask_ious: list[float] = []
    tracked = all(d.track_ids is not None for d in (*reference, *candidate))
    reference_tracks: dict[int, list[int | None]] = defaultdict(list)  # id -> the twins' candidate ids
    candidate_sizes: Counter[int] = Counter()
    for ref, cand in zip(reference, candidate):
        pairs = twins(ref, cand, iou)
        total += len(ref)
        matched += len(pairs)
        if pairs:
            i, j = (torch.tensor(x) for x in zip(*pairs))
            score_drift = max(score_drift, (ref.scores.cpu()[i] - cand.scores.cpu()[j]).abs().max().item())
            box_drift = max(box_drift, (ref.boxes.cpu()[i] - cand.boxes.cpu()[j]).abs().max().item())
            if ref.masks is not None and cand.masks is not None:
                a, b = ref.mask_tensor().cpu()[i], cand.mask_tensor().cpu()[j]
                union = (a | b).flatten(1).sum(1)
                inter = (a & b).flatten(1).sum(1)
                mask_ious += torch.where(union > 0, inter / union.clamp(min=1), 1.0).tolist()
        if tracked:
            twin_of = dict(pairs)
            for i, track in enumerate(ref.track_ids.tolist()):
                reference_tracks[track].append(int(cand.track_ids[twin_of[i]]) if i in twin_of else None)
            candidate_sizes.update(cand.track_ids.tolist())
    unchanged = sum(None not in ids and len(set(ids)) == 1 and candidate_sizes[ids[0]] == len(ids)
                    for ids in reference_tracks.values())
    masked = any(d.masks is not None for d in reference)
    return {
        "detections": total,
        "matched": matched / total if total else 1.0,
        "score_drift": score_drift,
        "box_drift": box_drift,
        "tracks": len(reference_tracks) if tracked else None,
        "tracks_unchanged": (unchanged / len(reference_tracks) if reference_tracks else 1.0) if tracked else None,
        "mask_iou": (sum(mask_ious) / len(mask_ious) if mask_ious else 1.0) if masked else None,
    }
