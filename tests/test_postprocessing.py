"""nnU-Net's post-processing choice: custom_nets.postprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from custom_nets.postprocessing import (
    KeepLargestComponentsd,
    PostprocessingChooser,
    keep_largest,
    largest_component,
    read_choice,
)


def two_blobs(shape=(20, 20, 12), big=(slice(2, 10), slice(2, 10), slice(2, 8)),
              small=(slice(14, 17), slice(14, 17), slice(8, 10))) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[big] = True
    mask[small] = True
    return mask


def test_largest_component_uses_full_connectivity_and_keeps_only_the_biggest() -> None:
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:2] = True  # 4 pixels
    mask[2, 2] = True  # touches (1, 1) by a corner only: part of the first component
    mask[4:6, 3:6] = True  # 6 pixels: the largest
    kept = largest_component(mask)
    assert kept.sum() == 6 and kept[4:6, 3:6].all()
    mask[4:6, 3:6] = False
    assert largest_component(mask).sum() == 5  # the corner pixel joined the 2x2 block
    assert not largest_component(np.zeros((3, 3), bool)).any()


def test_keep_largest_zeroes_the_small_component_of_chosen_channels_only() -> None:
    mask = two_blobs()
    probabilities = MetaTensor(torch.stack([mask * 0.9, mask * 0.8]).float(), affine=torch.eye(4) * 2)
    out = keep_largest(probabilities, [0])
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, probabilities.affine)
    assert int((out[0] > 0.5).sum()) == 8 * 8 * 6 and float(out[0].max()) == pytest.approx(0.9)
    assert torch.equal(out[1], probabilities[1])  # not chosen: untouched
    assert int((probabilities[0] > 0.5).sum()) == 8 * 8 * 6 + 3 * 3 * 2  # the input is not modified


def run_chooser(tmp_path: Path, cases: list[tuple[torch.Tensor, torch.Tensor]], names=("organ", "lesions")) -> dict:
    """Run the handler on an ignite engine whose output per iteration is one decollated case."""
    path = tmp_path / "models" / "postprocessing.json"
    engine = Engine(lambda engine, batch: [{"pred": batch[0], "label": batch[1]}])
    PostprocessingChooser(path, list(names)).attach(engine)
    engine.run(cases, max_epochs=1)
    return json.loads(path.read_text())


def test_chooser_keeps_the_largest_component_where_it_helps_and_not_where_it_hurts(tmp_path: Path) -> None:
    organ = two_blobs(small=(slice(0, 0),) * 3)  # one true component
    lesions = two_blobs()  # two true components
    cases = []
    for _ in range(3):
        # channel 0: the organ plus a false positive blob far away (removing it helps);
        # channel 1: both true lesions found (keeping only the largest loses one)
        pred = torch.stack([organ | two_blobs(big=(slice(0, 0),) * 3), lesions]).float()
        cases.append((pred, torch.stack([organ, lesions]).float()))
    choice = run_chooser(tmp_path, cases)
    assert choice["channels"] == [0] and choice["keep_largest_component"] == ["organ"] and choice["cases"] == 3
    assert choice["dice"]["organ"]["largest_component"] == pytest.approx(1.0)
    assert choice["dice"]["organ"]["as_is"] < 1.0
    assert choice["dice"]["lesions"]["as_is"] == pytest.approx(1.0)
    assert choice["dice"]["lesions"]["largest_component"] < 1.0
    assert read_choice(tmp_path / "models" / "postprocessing.json") == [0]


def test_chooser_ignores_cases_where_a_channel_is_empty_in_both(tmp_path: Path) -> None:
    empty = torch.zeros(2, 6, 6, 6)
    choice = run_chooser(tmp_path, [(empty, empty)])
    assert choice["channels"] == [] and choice["cases"] == 1
    assert all(np.isnan(v["as_is"]) for v in choice["dice"].values())


def test_transform_reads_the_choice_file_and_a_missing_file_changes_nothing(tmp_path: Path) -> None:
    mask = two_blobs()
    data = {"pred": torch.stack([mask, mask]).float()}
    unchanged = KeepLargestComponentsd("pred", choice_file=tmp_path / "missing.json")(data)
    assert torch.equal(unchanged["pred"], data["pred"])
    choice = tmp_path / "postprocessing.json"
    choice.write_text(json.dumps({"channels": [1], "keep_largest_component": ["b"]}))
    out = KeepLargestComponentsd("pred", choice_file=choice)(data)["pred"]
    assert int(out[0].sum()) == int(mask.sum()) and int(out[1].sum()) == 8 * 8 * 6
    choice.write_text("{not json")
    with pytest.raises(ValueError, match="postprocessing.json: not a post-processing choice"):
        KeepLargestComponentsd("pred", choice_file=choice)
