"""Longest-side geometry, property-based: any image size maps into the model frame and back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from radvlsm.data.geometry import LongestSideGeometry
from radvlsm.errors import RadVLSMInputError

sizes = st.tuples(st.integers(1, 9000), st.integers(1, 9000))
frames = st.sampled_from([64, 256, 1024])


@settings(max_examples=300, deadline=None)
@given(hw=sizes, size=frames, data=st.data())
def test_points_and_boxes_inside_the_image_land_inside_the_frame_and_come_back(hw, size, data) -> None:
    h, w = hw
    geometry = LongestSideGeometry((h, w), size)
    xs = data.draw(st.lists(st.floats(0, w), min_size=2, max_size=2))
    ys = data.draw(st.lists(st.floats(0, h), min_size=2, max_size=2))
    box = torch.tensor([min(xs), min(ys), max(xs), max(ys)])
    points = torch.tensor([[xs[0], ys[0]], [xs[1], ys[1]]])
    rh, rw = geometry.resized_size
    in_frame = geometry.boxes_to_model(box)
    assert float(in_frame.min()) >= 0 and float(in_frame[[0, 2]].max()) <= rw + 0.5
    assert float(in_frame[[1, 3]].max()) <= rh + 0.5 and max(rh, rw) == size
    model_points = geometry.points_to_model(points)
    assert ((model_points >= 0) & (model_points <= size)).all()
    torch.testing.assert_close(geometry.boxes_to_original(in_frame), box, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(geometry.points_to_original(model_points), points, rtol=1e-5, atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(hw=st.tuples(st.integers(1, 700), st.integers(1, 700)), size=st.sampled_from([64, 256]))
def test_images_and_maps_round_trip_any_size(hw, size) -> None:
    h, w = hw
    geometry = LongestSideGeometry((h, w), size)
    image = torch.rand(h, w)
    frame = geometry.image_to_model(image)
    assert frame.shape == (1, size, size)
    rh, rw = geometry.resized_size
    assert float(frame[:, rh:, :].abs().sum()) == 0 and float(frame[:, :, rw:].abs().sum()) == 0  # padding
    back = geometry.model_to_original(frame[0])
    assert back.shape == (h, w)
    if max(h, w) <= size:  # only enlarged: a constant map survives the round trip exactly
        const = geometry.model_to_original(geometry.image_to_model(torch.full((h, w), 0.7))[0])
        torch.testing.assert_close(const, torch.full((h, w), 0.7))
    mask = torch.zeros(h, w)
    mask[h // 3 : max(h // 3 + 1, 2 * h // 3), w // 3 : max(w // 3 + 1, 2 * w // 3)] = 1
    again = geometry.model_to_original(geometry.mask_to_model(mask)[0], mode="nearest")
    assert again.shape == (h, w) and set(torch.unique(again).tolist()) <= {0.0, 1.0}
    if min(h, w) >= 8 and max(h, w) <= size:  # enlarged, then shrunk back: the mask comes back exactly
        assert torch.equal(again, mask)


@pytest.mark.parametrize("hw", [(0, 5), (5, 0), (-3, 4)])
def test_negative_or_empty_sizes_are_input_errors(hw) -> None:
    with pytest.raises(RadVLSMInputError, match="must be positive"):
        LongestSideGeometry(hw, 256)


def test_an_image_of_another_size_is_refused() -> None:
    with pytest.raises(RadVLSMInputError, match="geometry expects"):
        LongestSideGeometry((10, 20), 64).image_to_model(np.zeros((20, 10)))
