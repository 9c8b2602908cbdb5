"""The machinery shared by the dataset layouts: custom_nets.data.common."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from custom_nets.data import common
from custom_nets.data.common import (
    DEMO_MARKER,
    DEMO_README,
    check_int,
    check_nonempty_file,
    demo_marker,
    is_demo,
    is_hidden,
    is_nonempty_file,
    prepare_demo_dir,
    raise_problems,
    read_demo_marker,
    split_groups,
)
from custom_nets.data.errors import DatasetError
from custom_nets.files import PARTIAL_PREFIX, STALE_PARTIAL_SECONDS, atomic_folder

# ----------------------------------------------------------------------------------------------------------------------
# split_groups
# ----------------------------------------------------------------------------------------------------------------------


def slices(n_groups: int, per_group: int = 3) -> list[dict]:
    """Items of ``n_groups`` patients, ``per_group`` slices each, interleaved (not grouped) in the input order."""
    return [{"patient": f"p{g:02d}", "slice": s} for s in range(per_group) for g in range(n_groups)]


def group(item: dict) -> str:
    return item["patient"]


def groups_of(items: list[dict]) -> set[str]:
    return {group(i) for i in items}


@pytest.mark.parametrize("n_groups", [2, 3, 7, 10])
@pytest.mark.parametrize("val_fraction", [0.01, 0.2, 0.5, 0.99])
def test_fraction_split_is_grouped_disjoint_and_complete(n_groups: int, val_fraction: float) -> None:
    items = slices(n_groups)
    train, val = split_groups(items, group, val_fraction=val_fraction, seed=3)
    assert not groups_of(train) & groups_of(val)  # no group on both sides
    assert train and val  # both sides non-empty, even for extreme fractions
    assert len(groups_of(val)) == min(max(round(val_fraction * n_groups), 1), n_groups - 1)
    assert sorted(map(id, train + val)) == sorted(map(id, items))  # the items themselves, each exactly once
    assert [i for i in items if i in train] == train and [i for i in items if i in val] == val  # input order kept


def test_split_is_deterministic_and_independent_of_input_order() -> None:
    items = slices(9)
    first = split_groups(items, group, seed=5)
    assert split_groups(items, group, seed=5) == first
    shuffled = [items[i] for i in np.random.default_rng(0).permutation(len(items))]
    assert groups_of(split_groups(shuffled, group, seed=5)[1]) == groups_of(first[1])
    assert len({frozenset(groups_of(split_groups(items, group, seed=s)[1])) for s in range(8)}) > 1  # seed matters


@pytest.mark.parametrize("n_groups, num_folds", [(5, 5), (11, 5), (4, 2), (9, 3)])
def test_kfold_validates_every_group_exactly_once(n_groups: int, num_folds: int) -> None:
    items = slices(n_groups)
    seen: list[str] = []
    sizes = []
    for fold in range(num_folds):
        train, val = split_groups(items, group, seed=2, num_folds=num_folds, fold=fold)
        assert val and train and not groups_of(train) & groups_of(val)
        assert len(train) + len(val) == len(items)
        seen += sorted(groups_of(val))
        sizes.append(len(groups_of(val)))
    assert sorted(seen) == sorted(groups_of(items))  # each group validated once over the folds
    assert max(sizes) - min(sizes) <= 1  # near-equal folds
    # num_folds wins over val_fraction
    assert split_groups(items, group, 0.9, 2, num_folds, 0) == split_groups(items, group, 0.1, 2, num_folds, 0)


def test_split_accepts_integral_numbers_of_any_integer_type() -> None:
    items = slices(6)
    expected = split_groups(items, group, num_folds=3, fold=1)
    assert split_groups(items, group, num_folds=np.int64(3), fold=np.int64(1)) == expected
    assert split_groups(items, group, num_folds=3.0, fold=1.0) == expected


def test_split_errors() -> None:
    items = slices(5)
    with pytest.raises(DatasetError, match=r"cannot split 1 case\(s\) \['p00'\].*at least 2 cases"):
        split_groups(slices(1, per_group=1), group)
    with pytest.raises(DatasetError, match=r"3 slice\(s\) of 1 patient\(s\) \['p00'\].*at least 2 patients"):
        split_groups(slices(1), group, unit="patient", item_unit="slice")
    with pytest.raises(DatasetError, match="cannot split 0"):
        split_groups([], group)
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match="val_fraction"):
            split_groups(items, group, val_fraction=bad)
    for bad in (1, 6, 2.5, True, "3"):
        with pytest.raises(ValueError, match=r"num_folds must be an integer between 2 and the number of patients \(5\)"):
            split_groups(items, group, num_folds=bad, unit="patient")
    for bad in (-1, 3, 1.5, True, None):
        with pytest.raises(ValueError, match=r"fold must be an integer between 0 and num_folds - 1 \(2\)"):
            split_groups(items, group, num_folds=3, fold=bad)


# ----------------------------------------------------------------------------------------------------------------------
# Arguments, names, files
# ----------------------------------------------------------------------------------------------------------------------


def test_check_int() -> None:
    assert check_int("n", 3, 1) == 3 and type(check_int("n", np.int64(3), 1)) is int
    assert check_int("n", 3.0, 1) == 3 and check_int("seed", 0, 0) == 0
    with pytest.raises(ValueError, match="num_cases must be a positive integer, got 0"):
        check_int("num_cases", 0, 1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        check_int("seed", -1, 0)
    with pytest.raises(ValueError, match="size must be an integer of at least 32, got 16"):
        check_int("size", 16, 32)
    for bad in (True, False, "3", None, 2.5, float("nan"), [3]):
        with pytest.raises(ValueError, match="n must be"):
            check_int("n", bad, 0)


def test_is_demo_and_is_hidden() -> None:
    for value in (None, "", "  ", "demo", "DEMO", " Demo "):
        assert is_demo(value)
    for value in ("data", "/data/demo", Path("demo"), "demos"):
        assert not is_demo(value)
    for name in (".DS_Store", ".partial-x", "__MACOSX", "__init__"):
        assert is_hidden(name)
    for name in ("case_1", "_private", "a.b"):
        assert not is_hidden(name)


def test_file_checks(tmp_path: Path) -> None:
    full, empty, missing = tmp_path / "full.png", tmp_path / "empty.png", tmp_path / "missing.png"
    full.write_bytes(b"x")
    empty.write_bytes(b"")
    assert check_nonempty_file(full, "an image") is None and is_nonempty_file(full)
    assert check_nonempty_file(empty, "an image") == (
        f"file {empty} is empty (0 bytes); expected an image (re-copy or re-extract it)"
    )
    assert not is_nonempty_file(empty) and not is_nonempty_file(missing)
    problem = check_nonempty_file(missing, "an image")
    assert problem.startswith(f"file {missing} cannot be read (") and problem.endswith("expected an image")


def test_raise_problems_lists_twenty_and_counts_the_rest(tmp_path: Path) -> None:
    raise_problems(tmp_path, [])  # nothing to report
    problems = [f"problem {i}" for i in range(25)]
    with pytest.raises(DatasetError) as info:
        raise_problems(tmp_path, problems, what="label file")
    message = str(info.value)
    assert message.startswith(f"label file {tmp_path} has 25 problem(s):\n  - problem 0")
    assert "problem 19" in message and "problem 20" not in message and message.endswith("... and 5 more")
    assert info.value.path == str(tmp_path)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(PARTIAL_PREFIX))


# ----------------------------------------------------------------------------------------------------------------------
# Demo-data bookkeeping
# ----------------------------------------------------------------------------------------------------------------------

GENERATOR = "tests.make_demo"


class Layout:
    """A toy demo layout: ``item_<i>`` folders holding ``data.txt``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def parameters(self, n: int = 2, seed: int = 0) -> dict:
        return {"generator_version": 1, "n": n, "seed": seed}

    def existing(self) -> list[Path]:
        return sorted(p for p in self.out_dir.iterdir() if p.name.startswith("item_"))

    def complete(self, n: int) -> bool:
        return all(is_nonempty_file(self.out_dir / f"item_{i}" / "data.txt") for i in range(n))

    def prepare(self, n: int = 2, seed: int = 0, overwrite: bool = False, **options) -> bool:
        parameters = self.parameters(n, seed)
        return prepare_demo_dir(
            self.out_dir, parameters, overwrite,
            generator=GENERATOR,
            marker=demo_marker("toy", "SYNTHETIC toy data", parameters, generator=GENERATOR, items=n),
            readme="toy demo\n",
            existing=self.existing,
            is_complete=lambda: self.complete(n),
            **options,
        )  # fmt: skip

    def generate(self, n: int = 2, seed: int = 0, overwrite: bool = False, **options) -> bool:
        reused = self.prepare(n, seed, overwrite, **options)
        for i in range(n):
            folder = self.out_dir / f"item_{i}"
            if not folder.exists():
                with atomic_folder(folder) as tmp:
                    (tmp / "data.txt").write_text(f"{seed}:{i}")
        return reused


def test_demo_marker_key_order() -> None:
    marker = demo_marker("n", "d", {"generator_version": 1, "seed": 0}, generator="g", cases=["a"])
    assert list(marker) == ["name", "description", "synthetic", "generator", "generator_version", "seed", "cases"]
    assert marker["synthetic"] is True
    assert "generator" not in demo_marker("n", "d", {"seed": 0})


def test_prepare_writes_the_marker_then_reuses_a_complete_folder(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "demo")
    assert layout.generate() is False  # fresh: the folder is created, marker and README written
    marker = json.loads((layout.out_dir / DEMO_MARKER).read_text())
    assert marker["synthetic"] and marker["generator"] == GENERATOR and marker["seed"] == 0 and marker["items"] == 2
    assert (layout.out_dir / DEMO_README).read_text() == "toy demo\n"
    stamp = (layout.out_dir / DEMO_MARKER).stat().st_mtime_ns
    assert layout.prepare() is True  # complete, same parameters: reused as it is
    (layout.out_dir / "item_1" / "data.txt").write_bytes(b"")  # an emptied file: incomplete
    assert layout.prepare() is False
    assert (layout.out_dir / DEMO_MARKER).stat().st_mtime_ns == stamp  # a matching marker is not rewritten


def test_prepare_refuses_other_parameters_and_overwrite_replaces_only_generated_items(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "demo")
    layout.generate(n=3)
    (layout.out_dir / "notes.txt").write_text("mine")
    before = sorted(p.name for p in layout.out_dir.iterdir())
    with pytest.raises(DatasetError, match=r"generated with .*'seed': 0.*not the requested .*'seed': 1.*overwrite") as info:
        layout.prepare(seed=1)
    assert info.value.path == str(layout.out_dir) and str(layout.out_dir) in str(info.value)
    assert sorted(p.name for p in layout.out_dir.iterdir()) == before  # nothing deleted
    layout.generate(n=2, seed=1, overwrite=True)
    assert sorted(p.name for p in layout.out_dir.iterdir()) == [DEMO_README, DEMO_MARKER, "item_0", "item_1", "notes.txt"]
    assert (layout.out_dir / "notes.txt").read_text() == "mine"  # other content is never touched
    assert json.loads((layout.out_dir / DEMO_MARKER).read_text())["seed"] == 1
    assert (layout.out_dir / "item_0" / "data.txt").read_text() == "1:0"


def test_prepare_without_replace_on_overwrite_keeps_the_items(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "demo")
    layout.generate()
    assert layout.prepare(seed=1, overwrite=True, replace_on_overwrite=False) is False
    assert [p.name for p in layout.existing()] == ["item_0", "item_1"]  # the caller rewrites them in place
    assert json.loads((layout.out_dir / DEMO_MARKER).read_text())["seed"] == 1


def test_prepare_refuses_unmarked_or_foreign_folders(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "unmarked")
    (layout.out_dir / "item_0").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"holds item_0 but no dataset.json marker.*overwrite=True"):
        layout.prepare()
    assert layout.prepare(overwrite=True) is False and not (layout.out_dir / "item_0").exists()

    foreign = Layout(tmp_path / "foreign")
    foreign.out_dir.mkdir()
    (foreign.out_dir / DEMO_MARKER).write_text(json.dumps({"name": "a real dataset"}))
    with pytest.raises(DatasetError, match="is not a marker of custom_nets demo data"):
        foreign.prepare()
    with pytest.raises(DatasetError, match="not a marker"):  # checked even with overwrite when asked to
        foreign.prepare(overwrite=True, check_marker_on_overwrite=True)
    assert json.loads((foreign.out_dir / DEMO_MARKER).read_text()) == {"name": "a real dataset"}

    other = Layout(tmp_path / "other")
    other.generate()
    marker = json.loads((other.out_dir / DEMO_MARKER).read_text())
    (other.out_dir / DEMO_MARKER).write_text(json.dumps({**marker, "generator": "somebody.else"}))
    other.prepare()  # synthetic is enough by default
    with pytest.raises(DatasetError, match=GENERATOR):
        other.prepare(check_generator=True)

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(DatasetError, match="exists but is not a folder"):
        Layout(afile).prepare()


def test_unreadable_marker_and_overwrite(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "demo")
    layout.generate()
    (layout.out_dir / DEMO_MARKER).write_text("{")
    with pytest.raises(DatasetError, match="cannot be read.*pass overwrite=True"):
        layout.prepare()
    with pytest.raises(DatasetError, match=r"cannot be read.*Delete it \(or the folder\)"):
        layout.prepare(overwrite=True, check_marker_on_overwrite=True)
    assert layout.prepare(overwrite=True) is False  # overwrite replaces it, as the first message says
    assert json.loads((layout.out_dir / DEMO_MARKER).read_text())["seed"] == 0
    assert read_demo_marker(layout.out_dir, GENERATOR, check_generator=True)["n"] == 2
    assert read_demo_marker(tmp_path / "nowhere", GENERATOR) is None


def test_prepare_cleans_stale_partials(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "demo")
    layout.generate()
    sub = layout.out_dir / "item_0"
    old = time.time() - 2 * STALE_PARTIAL_SECONDS
    for folder in (layout.out_dir, sub):
        (folder / ".partial-item_9-1-abcd").mkdir()
        os.utime(folder / ".partial-item_9-1-abcd", (old, old))
    assert layout.prepare(partial_folders=[sub]) is True
    assert not leftovers(layout.out_dir) and not leftovers(sub)
