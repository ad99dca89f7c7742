"""GlobalTracker (GTR's sliding-window tracker and delayed classification) on hand-built feature sequences with
known answers, and against a whole-video reference written out from GTR's ``sliding_inference``."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision
from scipy.optimize import linear_sum_assignment

from vfe_hub.tracking import GlobalTracker, TrackerConfig

D, C = 8, 3
CLS = torch.tensor([0.9, 0.0, 0.0])  # one class, passes the 0.05 threshold


def unit(i: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(i), D).float()


def dot_associate(window: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Unit features of one object give logit 10 (probability ~1), of different objects -10 (~0; a logit 0 would
    be as likely as the no-match slot)."""
    return 20.0 * query @ window.T - 10.0


def frame(objects: list[int], cls: torch.Tensor = CLS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes (apart, one per object), features and class scores of a frame showing ``objects``."""
    boxes = torch.tensor([[100.0 * o, 0.0, 100.0 * o + 50, 50.0] for o in objects]).reshape(-1, 4)
    features = torch.stack([unit(o) for o in objects]) if objects else torch.zeros(0, D)
    return boxes, features, cls.expand(len(objects), C).clone()


def track(tracker: GlobalTracker, frames: list[list[int]]) -> list[list[int]]:
    return [tracker.update(*frame(objects)[1:]).tolist() for objects in frames]


def test_first_frame_ids_and_the_unused_counter_value():
    ids = track(GlobalTracker(dot_associate), [[0, 1], [0, 1, 2], [3, 1]])
    assert ids == [[1, 2], [1, 2, 4], [5, 2]]  # 3 (n0 + 1) is never handed out


def test_crossing_objects_keep_their_ids():
    frames = [[0, 1]] * 5 + [[1, 0]] * 5  # the detection order swaps as the boxes cross
    ids = track(GlobalTracker(dot_associate), frames)
    assert ids == [[1, 2]] * 5 + [[2, 1]] * 5


@pytest.mark.parametrize("gap, same_id", [(8, True), (14, True), (15, False), (25, False)])
def test_an_object_missing_for_a_while_keeps_its_id_only_within_the_window(gap, same_id):
    frames = [[0, 1]] * 5 + [[1]] * gap + [[0, 1]]
    ids = track(GlobalTracker(dot_associate), frames)
    assert all(f == [2] for f in ids[5:-1])
    # back at frame 5 + gap, whose window starts at frame gap - 10: it holds frame 4 iff gap <= 14
    assert ids[-1] == ([1, 2] if same_id else [4, 2])


def test_zero_detections_in_a_frame():
    tracker = GlobalTracker(dot_associate)
    ids = [tracker.update(*frame(o)[1:]) for o in [[0], [], [0], [], [1]]]
    assert [i.tolist() for i in ids] == [[1], [], [1], [], [3]]
    assert ids[1].dtype == torch.int64
    tracker.reset()  # an empty first frame still sets the counter (to 1)
    assert track(tracker, [[], [0], [0, 1]]) == [[], [2], [2, 3]]


def test_class_gating_separates_the_same_feature_with_disjoint_classes():
    tracker = GlobalTracker(dot_associate)
    a = tracker.update(unit(0)[None], torch.tensor([[0.9, 0.0, 0.0]]))
    b = tracker.update(unit(0)[None], torch.tensor([[0.0, 0.9, 0.0]]))  # dot product 0 < 0.01: no association
    c = tracker.update(unit(0)[None], torch.tensor([[0.0, 0.8, 0.0]]))  # gated from a, not from b
    assert (a.tolist(), b.tolist(), c.tolist()) == ([1], [3], [3])


@pytest.mark.parametrize("first, matched", [(0.099, False), (0.101, True)])
def test_class_gate_threshold(first, matched):
    tracker = GlobalTracker(dot_associate)
    tracker.update(unit(0)[None], torch.tensor([[0.1, 0.0, 0.0]]))
    ids = tracker.update(unit(0)[None], torch.tensor([[first, 0.5, 0.0]]))  # dot product 0.0099 or 0.0101
    assert ids.tolist() == ([1] if matched else [3])


def table_associate(logits: dict[tuple[int, int], float]):
    """Logits from a table keyed by (query uid, window uid), -30 elsewhere; a feature's first entry is its uid."""
    def associate(window: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[logits.get((int(q[0]), int(k[0])), -30.0) for k in window] for q in query])
    return associate


@pytest.mark.parametrize("length, p, accepted", [(4, 0.35, False), (3, 0.35, True), (1, 0.101, True),
                                                  (1, 0.099, False), (2, 0.21, True), (2, 0.19, False)])
def test_acceptance_threshold_scales_with_the_track_length_in_the_window(length, p, accepted):
    """A track of ``length`` detections; the query matches only its last one, with probability ``p`` (one
    detection per frame: sigmoid of the logit). Accepted iff p > 0.1 * length."""
    table = {(u, u - 1): 30.0 for u in range(1, length)}
    table[(length, length - 1)] = math.log(p / (1 - p))
    tracker = GlobalTracker(table_associate(table))
    ids = [tracker.update(torch.full((1, D), float(u)), CLS[None]).item() for u in range(length + 1)]
    assert ids[:length] == [1] * length
    assert ids[length] == (1 if accepted else 3)


def test_hungarian_gives_each_track_to_one_detection():
    """Frame 1's detections against frame 0's tracks 1, 2 give probabilities [[0.88, 0], [0.55, 0.33]]: both
    prefer track 1; the assignment 0 -> 1, 1 -> 2 (sum 1.21) is the best one."""
    table = {(2, 0): 2.0, (3, 0): 1.5, (3, 1): 1.0}  # logits of the frame-1 detections against frame 0's
    tracker = GlobalTracker(table_associate(table))
    tracker.update(torch.tensor([[0.0] * D, [1.0] * D]), CLS.expand(2, C))
    assert tracker.update(torch.tensor([[2.0] * D, [3.0] * D]), CLS.expand(2, C)).tolist() == [1, 2]


def run(protocol: str, frames: list[list[int]], classes: dict[int, list[torch.Tensor]] | None = None,
        config: TrackerConfig = TrackerConfig()) -> list:
    """Step through ``frames``; ``classes[o]`` gives object o's class scores frame by frame (default CLS)."""
    tracker = GlobalTracker(dot_associate, config, protocol=protocol)
    out, seen = [], {}
    for objects in frames:
        cls = [classes[o][seen.get(o, 0)] if classes and o in classes else CLS for o in objects]
        seen.update({o: seen.get(o, 0) + 1 for o in objects})
        boxes, features, _ = frame(objects)
        out.append(tracker.step(boxes, features, torch.stack(cls) if cls else torch.zeros(0, C)))
    return out + list(tracker.finish())


def test_short_tracks_are_dropped_in_paper_but_not_in_streaming():
    frames = [[0, 1]] * 3 + [[0]] * 4  # object 1 (id 2) has 3 detections < 5
    paper = run("paper", frames)
    assert paper[:len(frames)] == [None] * len(frames) and len(paper) == 2 * len(frames)
    assert [f.track_ids.tolist() for f in paper[len(frames):]] == [[1]] * 7
    streaming = run("streaming", frames)
    assert len(streaming) == len(frames)
    assert [sorted(f.track_ids.tolist()) for f in streaming] == [[1, 2]] * 3 + [[1]] * 4
    assert all(f.labels.tolist() == [0] * len(f.labels) for f in streaming)
    assert torch.allclose(streaming[0].scores, torch.tensor([0.9, 0.9]))


def test_a_track_passing_two_classes_yields_two_output_tracks():
    cls = [torch.tensor([0.6, 0.2, 0.01]), torch.tensor([0.4, 0.4, 0.03])] * 3  # mean 0.5, 0.3, 0.02
    paper = run("paper", [[0]] * 6, {0: cls})[6:]
    for f in paper:
        assert f.track_ids.tolist() == [1, 1 + 10000]  # class 2's mean 0.02 < 0.05: no output
        assert f.labels.tolist() == [0, 1]
        torch.testing.assert_close(f.scores, torch.tensor([0.5, 0.3]))
        torch.testing.assert_close(f.boxes, torch.tensor([[0.0, 0.0, 50.0, 50.0]] * 2))
    streaming = run("streaming", [[0]] * 6, {0: cls})
    torch.testing.assert_close(streaming[0].scores, torch.tensor([0.6, 0.2]))  # the running mean
    torch.testing.assert_close(streaming[1].scores, torch.tensor([0.5, 0.3]))
    assert streaming[1].track_ids.tolist() == [1, 10001]


def test_classwise_nms_and_top_k_per_frame():
    """Two tracks on the same box: the lower-scoring one is suppressed in its class; top-k keeps the best."""
    tracker = GlobalTracker(dot_associate, TrackerConfig(max_per_frame=2), protocol="paper")
    boxes = torch.tensor([[10.0, 10.0, 60.0, 60.0], [10.0, 10.0, 60.0, 60.0], [200.0, 10.0, 260.0, 60.0]])
    cls = torch.tensor([[0.9, 0.0, 0.0], [0.6, 0.7, 0.0], [0.0, 0.0, 0.5]])
    for _ in range(5):
        tracker.step(boxes, torch.stack([unit(0), unit(1), unit(2)]), cls)
    for f in tracker.finish():
        # (2, class 0) at 0.6 is suppressed by (1, class 0) at 0.9; (3, class 2) at 0.5 is the third: cut
        assert f.track_ids.tolist() == [1, 2 + 10000]
        torch.testing.assert_close(f.scores, torch.tensor([0.9, 0.7]))


def test_memory_is_bounded_by_the_window():
    windows = []

    def recording(window, query):
        windows.append(len(window))
        return dot_associate(window, query)

    tracker = GlobalTracker(recording, protocol="streaming")
    for _ in range(100):
        ids = tracker.update(*frame([0, 1, 2])[1:])
    assert ids.tolist() == [1, 2, 3]
    assert max(windows) == 16 * 3 and windows[-1] == 16 * 3
    assert len(tracker._window) == 15  # the earlier frames of the next window; nothing older is kept


def test_paper_frames_with_zero_detections_and_reset_between_videos():
    tracker = GlobalTracker(dot_associate)
    for objects in [[0], [], [0], [0], [0], [0]]:
        tracker.step(*frame(objects))
    out = list(tracker.finish())
    assert [len(f.boxes) for f in out] == [1, 0, 1, 1, 1, 1]
    assert out[1].boxes.shape == (0, 4) and out[1].track_ids.dtype == torch.int64
    assert list(tracker.finish()) == []
    assert track(tracker, [[5, 6]]) == [[1, 2]]  # a new video starts at id 1


# ---- against a whole-video reference of GTR's sliding_inference + _remove_short_track + _delay_cls ----------


def reference_video(features, cls_scores, boxes, associate, window=16, min_len=5):
    """GTR's algorithm written out over the whole video (every frame kept, ids concatenated per window)."""
    ids_per_frame, count = [], 0
    for f in range(len(features)):
        if f == 0:
            ids_per_frame.append(torch.arange(1, len(features[0]) + 1))
            count = len(features[0]) + 1
            continue
        st = max(0, f + 1 - window)
        n_t = [len(x) for x in features[st:f + 1]]
        logits = associate(torch.cat(features[st:f + 1]), features[f])
        blocks = [torch.cat([b, b.new_zeros(len(b), 1)], 1).softmax(1)[:, :-1] for b in logits.split(n_t, 1)]
        asso = torch.cat(blocks, 1)[:, :sum(n_t[:-1])]
        ids = torch.cat(ids_per_frame[st:f])
        sim = cls_scores[f] @ torch.cat(cls_scores[st:f]).T
        asso[sim < 0.01] = 0
        unique = torch.unique(ids)
        inds = (unique[None, :] == ids[:, None]).float()
        traj = asso @ inds
        out = torch.full((len(features[f]),), -1, dtype=torch.long)
        for i, j in zip(*linear_sum_assignment((-traj).numpy())):
            if traj[i, j] > 0.1 * inds[:, j].sum():
                out[i] = unique[j]
        for i in range(len(out)):
            if out[i] < 0:
                count += 1
                out[i] = count
        ids_per_frame.append(out)
    ids = torch.cat(ids_per_frame)
    unique = ids.unique()
    inds = (unique[:, None] == ids[None, :]).double()
    track_of = torch.where(inds.T)[1]
    means = (inds @ torch.cat(cls_scores).double() / inds.sum(1, keepdim=True))[track_of]
    keep = inds.sum(1)[track_of] >= min_len
    results, start = [], 0
    for b, t in zip(boxes, ids_per_frame):
        m, k = means[start:start + len(t)].float(), keep[start:start + len(t)]
        start += len(t)
        b, m, t = b[k], m[k], t[k]
        rows, labels = torch.nonzero(m > 0.05, as_tuple=True)
        kept = torchvision.ops.batched_nms(b[rows], m[rows, labels], labels, 0.7)[:300]
        results.append((b[rows[kept]], m[rows[kept], labels[kept]], labels[kept],
                        t[rows[kept]] + labels[kept] * 10000))
    return ids_per_frame, results


def test_equals_the_whole_video_reference_on_random_videos():
    g = torch.Generator().manual_seed(0)
    objects = torch.nn.functional.normalize(torch.randn(12, 16, generator=g), dim=1)
    object_cls = torch.rand(12, 6, generator=g) * (torch.rand(12, 6, generator=g) < 0.3)
    features, cls_scores, boxes = [], [], []
    for _ in range(40):
        present = torch.nonzero(torch.rand(12, generator=g) < 0.5).flatten()
        present = present[torch.randperm(len(present), generator=g)]
        features.append(objects[present] + 0.3 * torch.randn(len(present), 16, generator=g))
        cls_scores.append((object_cls[present] + 0.05 * torch.rand(len(present), 6, generator=g)).clamp(max=1))
        xy = torch.rand(len(present), 2, generator=g) * 100
        boxes.append(torch.cat([xy, xy + 20 + 40 * torch.rand(len(present), 2, generator=g)], 1))

    def associate(window, query):
        return 6.0 * query @ window.T

    expected_ids, expected = reference_video(features, cls_scores, boxes, associate)
    tracker = GlobalTracker(associate)
    got_ids = []
    for f, c, b in zip(features, cls_scores, boxes):
        got_ids.append(tracker.update(f, c))
    assert [t.tolist() for t in got_ids] == [t.tolist() for t in expected_ids]
    assert len(torch.cat(got_ids).unique()) > 12  # new ids, re-identifications and misses all happen
    tracker = GlobalTracker(associate)
    for f, c, b in zip(features, cls_scores, boxes):
        tracker.step(b, f, c)
    got = list(tracker.finish())
    assert sum(len(r.track_ids) for r in got) > 40
    for r, (eb, es, el, et) in zip(got, expected):
        assert r.track_ids.tolist() == et.tolist() and r.labels.tolist() == el.tolist()
        torch.testing.assert_close(r.scores, es)
        torch.testing.assert_close(r.boxes, eb, rtol=0, atol=0)


@pytest.mark.parametrize("protocol", ["paper", "streaming"])
def test_rows_point_back_to_the_frames_detections(protocol):
    """``rows`` index each output in the frame's detections as given, also where the paper protocol dropped a
    short track before it (object 1 shows up 3 times only)."""
    tracker = GlobalTracker(dot_associate, protocol=protocol)
    frames = [[1, 0, 2]] * 3 + [[0, 2]] * 3
    given, out = [], []
    for objects in frames:
        boxes, features, cls = frame(objects)
        given.append(boxes)
        out.append(tracker.step(boxes, features, cls))
    out = out if protocol == "streaming" else list(tracker.finish())
    for boxes, tracked in zip(given, out, strict=True):
        assert torch.equal(boxes[tracked.rows], tracked.boxes)
    assert len(out[0].rows) == (2 if protocol == "paper" else 3)
