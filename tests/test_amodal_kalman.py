"""The Kalman gap filling of amodal tracks: the filter against a float64 hand computation, and the filling rules."""
from __future__ import annotations

import numpy as np
import pytest

from vfe_hub.amodal_kalman import DepthBoxKalman, box_to_z, kalman_fill, state_to_box
from vfe_hub.errors import DatasetError

F_REF = np.array([[1, 0, 0, 0, 0, 1, 0, 0, 0],   # cx + vx
                  [0, 1, 0, 0, 0, 0, 1, 0, 0],   # cy + vy
                  [0, 0, 1, 0, 0, 0, 0, 0, 0],   # s (vs not applied)
                  [0, 0, 0, 1, 0, 0, 0, 0, 0],   # r
                  [0, 0, 0, 0, 1, 0, 0, 0, 1],   # d + vd
                  [0, 0, 0, 0, 0, 1, 0, 0, 0],
                  [0, 0, 0, 0, 0, 0, 1, 0, 0],
                  [0, 0, 0, 0, 0, 0, 0, 1, 0],
                  [0, 0, 0, 0, 0, 0, 0, 0, 1]], dtype=np.float64)
H_REF = np.array([[1, 0, 0, 0, 0, 0, 0, 0, 0],
                  [0, 1, 0, 0, 0, 0, 0, 0, 0],
                  [0, 0, 1, 0, 0, 0, 0, 0, 0],
                  [0, 0, 0, 1, 0, 0, 0, 0, 0],
                  [0, 0, 0, 0, 1, 0, 0, 0, 0]], dtype=np.float64)
R_REF = np.diag([0.01] * 5)
P0_REF = np.diag([10.0, 10.0, 10.0, 10.0, 10.0, 10000.0, 10000.0, 10000.0, 10000.0])
Q_REF = np.diag([1.0, 1.0, 1.0, 1.0, 1.0, 0.01, 0.01, 0.0001, 0.01])


def textbook_update(x, P, z):
    K = P @ H_REF.T @ np.linalg.inv(H_REF @ P @ H_REF.T + R_REF)
    return x + K @ (z - H_REF @ x), (np.eye(9) - K @ H_REF) @ P


def test_filter_update_predict_update_equals_the_hand_computation():
    z0, z1, z2 = (np.array([50.0, 40.0, 600.0, 0.5, 3.0]), np.array([53.0, 38.0, 640.0, 0.55, 3.5]),
                  np.array([58.0, 35.0, 610.0, 0.45, 4.5]))
    kalman = DepthBoxKalman(z0)
    np.testing.assert_array_equal(kalman.x, np.concatenate([z0, np.zeros(4)]))
    np.testing.assert_array_equal(kalman.P, P0_REF)
    kalman.update(z1)
    x, P = textbook_update(np.concatenate([z0, np.zeros(4)]), P0_REF, z1)
    np.testing.assert_allclose(kalman.x, x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kalman.P, P, rtol=1e-9, atol=1e-12)
    gain = 10 / 10.01  # scalar blocks: P = 10, R = 0.01; no covariance with the velocities before a prediction
    assert np.isclose(kalman.x[2], 600 + gain * 40) and np.isclose(kalman.P[2, 2], 10 * 0.01 / 10.01)
    assert kalman.x[5] == kalman.x[6] == kalman.x[8] == 0.0

    predicted = kalman.predict().copy()
    x, P = F_REF @ x, F_REF @ P @ F_REF.T + Q_REF
    np.testing.assert_allclose(predicted, x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kalman.P, P, rtol=1e-9, atol=1e-12)
    p_cx = 10 * 0.01 / 10.01
    assert np.isclose(kalman.P[0, 0], p_cx + 10000 + 1) and np.isclose(kalman.P[0, 5], 10000)

    cx_before = kalman.x[0]
    kalman.update(z2)
    x, P = textbook_update(x, P, z2)
    np.testing.assert_allclose(kalman.x, x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kalman.P, P, rtol=1e-9, atol=1e-9)
    # (cx, vx) block: vx gains P[5,0] / (P[0,0] + R) of the innovation once a prediction has coupled them
    assert np.isclose(kalman.x[5], 10000 / (p_cx + 10001 + 0.01) * (58 - cx_before))


def test_velocities_stay_zero_between_updates_and_vs_is_reset_but_never_applied():
    kalman = DepthBoxKalman(box_to_z((10, 10, 30, 50), 2.0))
    for shift in range(1, 6):  # consecutive detections without a prediction in between: no velocity is learnt
        kalman.update(box_to_z((10 + 4 * shift, 10, 30 + 4 * shift, 50), 2.0))
    assert kalman.x[5] == kalman.x[6] == kalman.x[8] == 0.0
    kalman.x[7] = 25.0
    s, r = kalman.x[2], kalman.x[3]
    kalman.predict()
    assert kalman.x[2] == s and kalman.x[3] == r and kalman.x[7] == 25.0  # vs is carried, the area is kept
    kalman.x[7] = -s - 1.0
    kalman.predict()
    assert kalman.x[7] == 0.0 and kalman.x[2] == s


def test_box_conversions_round_trip():
    z = box_to_z((10.0, 20.0, 40.0, 80.0), 7.0)
    np.testing.assert_allclose(z, [25.0, 50.0, 1800.0, 0.5, 7.0])
    state = np.concatenate([z, np.zeros(4)])
    np.testing.assert_allclose(state_to_box(state), (10.0, 20.0, 40.0, 80.0))


def images(n, height=80, width=100):
    return [{"id": 100 + i, "height": height, "width": width} for i in range(n)]


def rec(track, frame, bbox, score=0.9, category=3):
    return {"track_id": track, "image_id": 100 + frame, "bbox": list(bbox), "score": score,
            "category_id": category, "video_id": 7}


def added_frames(out, records, track):
    assert out[:len(records)] == records  # the given results first, untouched
    return [r["image_id"] - 100 for r in out[len(records):] if r["track_id"] == track]


def test_gaps_are_filled_within_the_window_after_the_last_detection():
    box = (20.0, 10.0, 30.0, 40.0)
    records = [rec(1, f, box) for f in (0, 1, 2, 3, 9)]
    before = [dict(r) for r in records]
    out = kalman_fill(records, images(12))
    assert records == before
    assert added_frames(out, records, 1) == [4, 5, 6, 10, 11]  # frames 7, 8: too far; 11: the video's end
    for r in out[len(records):]:
        assert r["score"] == 0.9 and r["category_id"] == 3 and r["video_id"] == 7
        np.testing.assert_allclose(r["bbox"], box, rtol=1e-12)
    assert added_frames(kalman_fill(records, images(12), window=1), records, 1) == [4, 10]


def test_the_first_detection_is_not_a_hit_and_emitted_records_copy_the_first_record():
    box = (20.0, 10.0, 30.0, 40.0)
    three = [rec(1, f, box) for f in (0, 1, 2)]
    assert added_frames(kalman_fill(three, images(8)), three, 1) == []  # two hits only
    four = [rec(1, 3, box, score=0.5, category=8)] + [rec(1, f, box) for f in (0, 1, 2)]
    out = kalman_fill(four, images(8))
    assert added_frames(out, four, 1) == [4, 5, 6]
    assert all(r["score"] == 0.5 and r["category_id"] == 8 for r in out[4:])  # the first record in list order
    assert added_frames(kalman_fill(four, images(8), min_hits=4), four, 1) == []


def test_consecutive_detections_are_averaged_and_give_no_velocity():
    """No prediction between updates: no process noise, so the state is the precision-weighted mean of the
    detections (initial P 10, R 0.01), and the predicted box does not move through the gap."""
    records = [rec(1, f, (20.0 + 5 * f, 10.0, 30.0, 40.0)) for f in range(4)]  # centres 35, 40, 45, 50
    out = kalman_fill(records, images(8))
    cx = (35 / 10 + (40 + 45 + 50) / 0.01) / (1 / 10 + 3 / 0.01)
    assert [r["image_id"] for r in out[4:]] == [104, 105, 106]
    for r in out[4:]:
        np.testing.assert_allclose(r["bbox"], [cx - 15, 10.0, 30.0, 40.0], rtol=1e-9)


def test_only_boxes_covering_a_pixel_of_the_frame_are_emitted_unclipped():
    tracks = {1: (95.0, 10.0, 10.0, 20.0),   # half outside on the right
              2: (101.0, 10.0, 10.0, 20.0),  # entirely outside
              3: (10.2, 10.0, 0.6, 20.0),    # inside, but empty once truncated to whole pixels (10 .. 10)
              4: (-5.0, -5.0, 10.4, 10.4)}   # top-left corner
    records = [rec(t, f, box) for t, box in tracks.items() for f in range(4)]
    out = kalman_fill(records, images(6))
    assert [added_frames(out, records, t) for t in tracks] == [[4, 5], [], [], [4, 5]]
    right = next(r for r in out[len(records):] if r["track_id"] == 1)
    assert right["bbox"][0] + right["bbox"][2] == pytest.approx(105.0)


def test_the_depth_gate_emits_only_occluded_predictions():
    box = (20.0, 10.0, 10.0, 40.0)  # pixels x 20..29, y 10..49
    maps = {100 + f: np.full((80, 100), 5.0) for f in range(4)}  # the track's depth: 5
    maps[104] = np.full((80, 100), 5.0)
    maps[104][:, 18:32] = 2.0    # something in front of the box
    maps[105] = np.full((80, 100), 9.0)  # only background behind: visible, hence not emitted
    maps[106] = np.full((80, 100), 8.9)
    maps[106][:, 20:25] = 1.0    # mean over columns 20..29 = 4.95 < 5; with column 30 it would be 5.31
    maps[105][:, 55:75] = 1.0    # in front of track 2 (pixels x 60..69)
    maps[107] = np.full((80, 100), 5.0)  # equal depth: not in front
    calls = []

    def depth(image_id):
        calls.append(image_id)
        return maps[image_id]

    records = [rec(1, f, box) for f in range(4)] + [rec(2, f, (60.0, 10.0, 10.0, 40.0)) for f in range(5)]
    out = kalman_fill(records, images(8), depth=depth)
    assert added_frames(out, records, 1) == [4, 6]
    assert added_frames(out, records, 2) == [5]  # frame 4 observed; 5 occluded; 6 behind; 7 equal depth
    assert sorted(calls) == sorted(set(calls))  # one read per image
    no_depth = kalman_fill(records, images(8))
    assert added_frames(no_depth, records, 1) == [4, 5, 6] and added_frames(no_depth, records, 2) == [5, 6, 7]
    depth_boxes = [r["bbox"] for r in out[len(records):] if r["image_id"] == 106 and r["track_id"] == 1]
    plain_boxes = [r["bbox"] for r in no_depth[len(records):] if r["image_id"] == 106 and r["track_id"] == 1]
    assert len(depth_boxes) == len(plain_boxes) == 1
    np.testing.assert_allclose(depth_boxes, plain_boxes, rtol=1e-12)  # depth does not move the boxes


def test_bad_inputs_name_the_fix():
    box = (20.0, 10.0, 10.0, 40.0)
    with pytest.raises(DatasetError, match="not in the video's images"):
        kalman_fill([rec(1, 9, box)], images(4))
    with pytest.raises(DatasetError, match="without area"):
        kalman_fill([rec(1, 0, (1.0, 1.0, 5.0, 0.0))], images(4))
    with pytest.raises(DatasetError, match="two results on image 101"):
        kalman_fill([rec(1, 1, box), rec(1, 1, box)], images(4))
    with pytest.raises(DatasetError, match="lacks"):
        kalman_fill([rec(1, 0, box)], [{"id": 100}])
    with pytest.raises(DatasetError, match=r"shape \(40, 50\).*\(80, 100\)"):
        kalman_fill([rec(1, 0, box)], images(4), depth=lambda image_id: np.zeros((40, 50)))
