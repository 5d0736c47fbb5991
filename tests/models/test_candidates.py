"""Candidate prompts: geometry invariants (hypothesis), several lesions, padding, fallback, strength, speed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.candidates import CandidateGenerator, CandidatePrompts, cam_strength, greedy_nms, lesion_box_at


def blob_cam(size: int, blobs: list[tuple[float, float, float, float]], noise: float = 0.0, seed: int = 0):
    """``(1, 1, size, size)`` map of Gaussian blobs ``(cx, cy, sigma, amplitude)`` clipped to [0, 1]."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    cam = torch.zeros(size, size)
    for cx, cy, sigma, amp in blobs:
        cam = cam + amp * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    if noise:
        cam = cam + noise * torch.rand(size, size, generator=torch.Generator().manual_seed(seed))
    return cam.clamp(0, 1)[None, None]


def inside(box: torch.Tensor, x: float, y: float) -> bool:
    return bool(box[0] <= x < box[2] and box[1] <= y < box[3])


def check_geometry(out: CandidatePrompts, size: int) -> None:
    b = out.boxes
    assert bool((b >= 0).all() and (b <= size).all())
    assert bool((b[..., 0] < b[..., 2]).all() and (b[..., 1] < b[..., 3]).all())
    assert bool((out.points >= 0).all() and (out.points <= size).all())
    assert set(out.point_labels.unique().tolist()) <= {-1, 0, 1}
    assert bool(out.valid[:, 0].all())
    assert bool((out.point_labels[..., 0] == 1).all())  # every candidate has its positive point


def test_single_blob_candidate() -> None:
    out = CandidateGenerator(k=4)(blob_cam(64, [(20, 40, 5, 1.0)]))
    assert out.boxes.shape == (1, 4, 4) and out.boxes.dtype == torch.float32
    assert out.points.shape == (1, 4, 2, 2) and out.point_labels.dtype == torch.long
    assert out.valid.dtype == torch.bool and out.cam_strength.shape == (1, 4)
    box, pts, lbl = out.boxes[0, 0], out.points[0, 0], out.point_labels[0, 0]
    assert inside(box, 20, 40)
    assert lbl.tolist() == [1, 0]
    assert pts[0].tolist() == [20.0, 40.0]  # positive at the CAM peak
    assert not inside(box, float(pts[1, 0]), float(pts[1, 1]))  # negative outside the box
    assert float(out.cam_strength[0, 0]) > 0.2
    check_geometry(out, 64)


def test_two_blobs_get_two_distinct_valid_candidates() -> None:
    cam = blob_cam(64, [(15, 15, 4, 1.0), (48, 45, 5, 0.7)])
    out = CandidateGenerator(k=6)(cam)
    valid_boxes = out.boxes[0][out.valid[0]]
    first = [i for i, b in enumerate(valid_boxes) if inside(b, 15, 15) and not inside(b, 48, 45)]
    second = [i for i, b in enumerate(valid_boxes) if inside(b, 48, 45) and not inside(b, 15, 15)]
    assert first and second
    assert sorted([first[0], second[0]]) == [0, 1]  # separate lesions are ranked before variants


def test_many_lesions_each_get_a_candidate_before_variants() -> None:
    centres = [(10, 10), (50, 10), (10, 50), (50, 50)]
    out = CandidateGenerator(k=4)(blob_cam(64, [(x, y, 3, 0.9) for x, y in centres]))
    for x, y in centres:
        assert any(inside(b, x, y) for b in out.boxes[0][out.valid[0]])


def test_padding_copies_the_best_as_invalid() -> None:
    out = CandidateGenerator(k=8)(blob_cam(32, [(16, 16, 3, 1.0)]))
    n_valid = int(out.valid.sum())
    assert 1 <= n_valid <= 4  # three thresholds + the global peak region, deduplicated
    assert not bool(out.valid[0, n_valid:].any())
    for name in ("boxes", "points", "point_labels", "cam_strength"):
        t = getattr(out, name)[0]
        assert torch.equal(t[n_valid:], t[:1].expand_as(t[n_valid:])), name


@pytest.mark.parametrize("value", [0.0, 0.2])
def test_flat_map_falls_back_to_one_whole_frame_box(value: float) -> None:
    out = CandidateGenerator(k=3)(torch.full((2, 1, 32, 32), value))
    assert out.valid.tolist() == [[True, False, False]] * 2
    assert out.boxes[0, 0].tolist() == [0.0, 0.0, 32.0, 32.0]
    check_geometry(out, 32)


def test_weak_map_falls_back_to_the_global_peak() -> None:
    out = CandidateGenerator(k=3)(blob_cam(32, [(8, 24, 3, 0.2)]))  # below every threshold
    assert bool(out.valid[0, 0]) and inside(out.boxes[0, 0], 8, 24)
    assert out.points[0, 0, 0].tolist() == [8.0, 24.0]


def test_more_points_per_candidate() -> None:
    out = CandidateGenerator(k=2, n_pos=3, n_neg=2)(blob_cam(48, [(24, 24, 6, 1.0)]))
    assert out.points.shape == (1, 2, 5, 2)
    assert out.point_labels[0, 0].tolist() == [1, 1, 1, 0, 0]
    pos = out.points[0, 0, :3]
    assert len({tuple(p) for p in pos.tolist()}) == 3  # spread, not repeated
    check_geometry(out, 48)


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([16, 32, 48]),
    blobs=st.lists(
        st.tuples(
            st.floats(-4, 52), st.floats(-4, 52), st.floats(0.5, 12), st.floats(0.0, 1.5)
        ),  # cx, cy, sigma, amplitude (clipped)
        max_size=4,
    ),
    noise=st.floats(0.0, 0.6),
    seed=st.integers(0, 100),
    batch=st.integers(1, 2),
    k=st.integers(1, 5),
)
def test_geometry_invariants_on_random_maps(size, blobs, noise, seed, batch, k) -> None:
    cam = blob_cam(size, blobs, noise, seed).repeat(batch, 1, 1, 1)
    out = CandidateGenerator(k=k, n_pos=2, n_neg=1)(cam)
    assert out.boxes.shape == (batch, k, 4) and out.points.shape == (batch, k, 3, 2)
    check_geometry(out, size)


def test_cam_strength_values() -> None:
    cam = torch.zeros(1, 1, 8, 8)
    cam[0, 0, 2:4, 2:4] = 1.0
    boxes = torch.tensor([[[2.0, 2.0, 4.0, 4.0], [4.0, 4.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0]]])
    strength = cam_strength(cam, boxes)
    torch.testing.assert_close(strength, torch.tensor([[1.0, -4 / 48, 4 / 64]]))
    with pytest.raises(RadVLSMInputError, match="boxes"):
        cam_strength(cam, torch.zeros(1, 4))


def test_greedy_nms() -> None:
    boxes = np.asarray([[0, 0, 10, 10], [1, 0, 10, 10], [20, 20, 30, 30]], float)
    assert greedy_nms(boxes, np.asarray([0.5, 0.9, 0.1]), 0.7).tolist() == [1, 2]


def test_to_device_and_bad_input() -> None:
    out = CandidateGenerator(k=2)(blob_cam(16, [(8, 8, 2, 1.0)])).to("cpu")
    assert out.boxes.device.type == "cpu"
    with pytest.raises(RadVLSMInputError, match="cam"):
        CandidateGenerator()(torch.full((1, 1, 16, 16), 2.0))
    with pytest.raises(RadVLSMInputError, match="cam"):
        CandidateGenerator()(torch.rand(1, 16, 16))
    with pytest.raises(RadVLSMInputError, match="thresholds"):
        CandidateGenerator(thresholds=(0.5, 1.5))


def test_mask_candidates_are_described_by_their_masks() -> None:
    from radvlsm.models.candidates import CandidateGenerator

    cam = torch.zeros(1, 1, 32, 32)
    cam[..., 5:12, 8:20] = 1.0
    base = CandidateGenerator(k=2, thresholds=(0.5,))(cam)
    masks = torch.full((1, 2, 1, 32, 32), -5.0)
    masks[0, 0, 0, 4:10, 6:16] = 3.0
    masks[0, 0, 0, 7, 9] = 9.0  # the peak
    out = base.append_masks(masks, cam)
    assert out.boxes.shape == (1, 4, 4) and bool(out.valid[0, 2:].all())
    assert out.boxes[0, 2].tolist() == [6.0, 4.0, 16.0, 10.0]
    assert out.boxes[0, 3].tolist() == [0.0, 0.0, 32.0, 32.0]  # an empty mask: the whole frame
    assert out.points[0, 2, 0].tolist() == [9.0, 7.0] and int(out.point_labels[0, 2, 0]) == 1
    assert bool((out.point_labels[0, 2, 1:] == -1).all())
    torch.testing.assert_close(out.boxes[:, :2], base.boxes)


def test_lesion_box_at_picks_the_lesion_under_the_point() -> None:
    prob = torch.zeros(32, 32)
    prob[2:6, 3:9] = 0.9  # lesion 1: rows 2-5, columns 3-8
    prob[20:30, 18:25] = 0.7  # lesion 2
    prob[6, 9] = 0.8  # touches lesion 1 diagonally: the same 8-connected lesion
    assert lesion_box_at(prob, torch.tensor([4.0, 3.0])).tolist() == [3.0, 2.0, 10.0, 7.0]
    assert lesion_box_at(prob, torch.tensor([20.5, 25.2])).tolist() == [18.0, 20.0, 25.0, 30.0]
    assert lesion_box_at(prob, torch.tensor([15.0, 15.0])) is None  # on no lesion
    assert lesion_box_at(prob, torch.tensor([40.0, -3.0])) is None  # clamped to the frame's corner
