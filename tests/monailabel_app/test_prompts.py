"""Client prompts, property-based: whatever JSON a client sends, the result is a prompt inside the image
or a :class:`RadVLSMInputError` naming the field; never another exception.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from lib.prompts import parse_points, parse_roi

from radvlsm.errors import RadVLSMInputError

sizes = st.tuples(st.integers(1, 9000), st.integers(1, 9000))
numbers = st.one_of(st.integers(-20000, 20000), st.floats(allow_nan=True, allow_infinity=True))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=12,
)
point_lists = st.lists(st.lists(numbers, min_size=2, max_size=3), max_size=6)


@settings(max_examples=400, deadline=None)
@given(hw=sizes, value=st.one_of(point_lists, json_values))
def test_points_are_inside_the_image_or_an_input_error(hw, value) -> None:
    h, w = hw
    for sent in (value, json.dumps(value)):
        try:
            points = parse_points(sent, "foreground", hw)
        except RadVLSMInputError as exc:
            assert str(exc).startswith("foreground")
            continue
        assert all(0 < x < w + 0.5 and 0 < y < h + 0.5 for x, y in points)
        assert all(0 < x <= w and 0 < y <= h for x, y in points)


@settings(max_examples=400, deadline=None)
@given(hw=sizes, value=st.one_of(st.lists(numbers, min_size=4, max_size=6), json_values))
def test_rois_are_clipped_inside_the_image_with_area_or_an_input_error(hw, value) -> None:
    h, w = hw
    for sent in (value, json.dumps(value)):
        try:
            box = parse_roi(sent, hw)
        except RadVLSMInputError as exc:
            assert str(exc).startswith("roi")
            continue
        if box is None:
            continue
        x1, y1, x2, y2 = box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
