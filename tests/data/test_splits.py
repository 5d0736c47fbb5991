from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radvlsm.data.records import DatasetReport
from radvlsm.data.splits import all_split, read_split, split_by_case, write_split
from radvlsm.errors import DataValidationError, RadVLSMInputError


def _items(n_cases: int, malignant_every: int = 3, images_per_case: int = 2) -> list[dict]:
    items = []
    for c in range(n_cases):
        pathology = "malignant" if c % malignant_every == 0 else "benign"
        for k in range(images_per_case):
            items.append({"id": f"bus_{c:04d}-{k}", "case": str(c), "pathology": pathology})
    return items


def _cases(items: list[dict]) -> set[str]:
    return {it["case"] for it in items}


def test_grouped_deterministic_and_stratified() -> None:
    items = _items(100)
    splits = split_by_case(items, seed=0)
    assert list(splits) == ["training", "validation", "test"]
    assert sum(len(v) for v in splits.values()) == len(items)
    tr, va, te = (_cases(splits[k]) for k in ("training", "validation", "test"))
    assert not (tr & va or tr & te or va & te)
    assert (len(tr), len(va), len(te)) == (70, 10, 20)
    overall = sum(it["pathology"] == "malignant" for it in items) / len(items)
    for part in splits.values():
        frac = sum(it["pathology"] == "malignant" for it in part) / len(part)
        assert abs(frac - overall) < 0.06
    again = split_by_case(items, seed=0)
    assert {k: [i["id"] for i in v] for k, v in again.items()} == {k: [i["id"] for i in v] for k, v in splits.items()}
    other = split_by_case(items, seed=1)
    assert _cases(other["test"]) != te


def test_patient_label_is_malignant_if_any_image_is() -> None:
    items = _items(20, malignant_every=1000)  # all benign
    items[0]["pathology"] = "malignant"  # case 0 mixed
    splits = split_by_case(items, fractions=(0.5, 0.0, 0.5), seed=3)
    assert not splits["validation"]
    side = next(k for k, v in splits.items() if any(it["case"] == "0" for it in v))
    assert sum(it["case"] == "0" for it in splits[side]) == 2


@settings(max_examples=40, deadline=None)
@given(
    n_cases=st.integers(1, 40),
    per_case=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    fractions=st.sampled_from([(0.7, 0.1, 0.2), (0.8, 0.2, 0.0), (1.0, 0.0, 0.0), (0.34, 0.33, 0.33)]),
)
def test_no_case_on_two_sides(n_cases: int, per_case: int, seed: int, fractions: tuple[float, ...]) -> None:
    items = _items(n_cases, images_per_case=per_case)
    splits = split_by_case(items, fractions=fractions, seed=seed)
    owners: dict[str, str] = {}
    for name, part in splits.items():
        for it in part:
            assert owners.setdefault(it["case"], name) == name
    assert sorted(i["id"] for v in splits.values() for i in v) == sorted(i["id"] for i in items)
    for name, frac in zip(("training", "validation", "test"), fractions, strict=True):
        if frac == 0:
            assert not splits[name]
        elif n_cases >= 3:
            assert splits[name], (name, n_cases)


def test_bad_fractions() -> None:
    with pytest.raises(RadVLSMInputError, match="fractions"):
        split_by_case(_items(5), fractions=(0.5, 0.5, 0.5))


def test_write_read_split(tmp_path: Path) -> None:
    items = [{**it, "image": f"/data/{it['id']}.png"} for it in _items(30)]
    report = DatasetReport(items=items, layout="bus-bra", root="/data")
    splits = split_by_case(items, seed=4)
    path = write_split(tmp_path / "split.json", splits, dataset_name="bus-bra", seed=4)
    data = json.loads(path.read_text())
    assert data["dataset"] == "bus-bra" and data["seed"] == 4
    assert data["test"] == [it["id"] for it in splits["test"]]
    assert "/" not in path.read_text()  # IDs only, no paths
    assert read_split(path, report) == splits
    smaller = DatasetReport(items=[it for it in items if it["id"] != data["test"][0]], root="/data")
    with pytest.raises(DataValidationError, match=rf"split\.json.*1 image ID.*{data['test'][0]}"):
        read_split(path, smaller)


def test_read_split_rejects_patient_leak(tmp_path: Path) -> None:
    items = _items(3)
    path = tmp_path / "leak.json"
    path.write_text(json.dumps({"training": ["bus_0000-0"], "test": ["bus_0000-1"]}))
    with pytest.raises(DataValidationError, match="patient '0'"):
        read_split(path, DatasetReport(items=items))


def test_all_split() -> None:
    report = DatasetReport(items=_items(2))
    assert all_split(report) == {"all": report.items}
