"""scripts/compare.py: two bundles x two folds of a tiny generated dataset give the CSV (one row per bundle and
fold), the Markdown table (mean and spread per bundle) and a PNG plot; rerun after an interruption, it trains and
evaluates only what is missing. Slow (eight short training runs and evaluations through monai.bundle)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from PIL import Image

from custom_nets.data.synthetic import make_synthetic_dataset

pytest.importorskip("matplotlib")

BUNDLES = ("unet2d", "attention_unet2d")
EXTRA = "*=--num_workers 0 --network_def#channels [4,8,16,32,64] --roi_size [32,32]"


def _compare(data: Path, out: Path, *more: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "compare.py"), "--bundles", ",".join(BUNDLES),
                           "--dataset_dir", str(data), "--folds", "2", "--epochs", "1", "--output_dir", str(out),
                           "--extra", EXTRA, *more], capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_compare_two_bundles_two_folds_and_resume(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "data", spatial_dims=2, num_channels=1, num_labels=1, num_cases=4,
                                  shape=(48, 40), num_test=0)
    out = tmp_path / "out"
    result = _compare(data, out)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["bundle"], r["fold"]) for r in rows] == [(b, str(i)) for b in BUNDLES for i in range(2)]
    for r in rows:
        assert int(r["parameters"]) > 0 and float(r["train_seconds"]) > 0
        assert 0.0 <= float(r["dice_structure_1"]) <= 1.0
    table = (out / "comparison.md").read_text()
    assert all(f"| {b} | 2 |" in table for b in BUNDLES) and "±" in table
    with Image.open(out / "comparison.png") as png:
        assert png.format == "PNG" and png.size[0] > 100 and png.size[1] > 100
    # each fold validated on its own cases, the two folds on disjoint ones
    val = [set(line for line in (out / "unet2d" / f"fold_{i}" / "val_datalist.json").read_text().split('"case": ')[1:])
           for i in range(2)]
    assert val[0] and val[1] and not val[0] & val[1]

    # interrupted: one fold lost its evaluation, another its training too
    logs = {p: p.stat().st_mtime_ns for p in out.glob("*/fold_*/*.log")}
    (out / "unet2d" / "fold_1" / "result.json").unlink()
    (out / "attention_unet2d" / "fold_0" / "result.json").unlink()
    (out / "attention_unet2d" / "fold_0" / "train_done.json").unlink()
    rerun = _compare(data, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    steps = [line.split(" (")[0].rsplit(" ", 3)[0] if "evaluating" in line else line.split(" (")[0]
             for line in rerun.stdout.splitlines() if " fold " in line and line.split(" ")[0] in BUNDLES]
    assert steps == ["unet2d fold 1: evaluating", "attention_unet2d fold 0: training",
                     "attention_unet2d fold 0: evaluating"]
    changed = {p for p, t in logs.items() if p.stat().st_mtime_ns != t}
    assert changed == {out / "unet2d" / "fold_1" / "evaluate.log", out / "attention_unet2d" / "fold_0" / "train.log",
                       out / "attention_unet2d" / "fold_0" / "evaluate.log"}
    with open(out / "comparison.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4


def test_compare_refuses_bad_arguments(tmp_path: Path) -> None:
    result = _compare(tmp_path / "missing", tmp_path / "out")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1 and "missing" in result.stderr
    unknown = subprocess.run([sys.executable, str(REPO / "scripts" / "compare.py"), "--bundles", "nonet",
                              "--dataset_dir", "x", "--epochs", "1", "--output_dir", str(tmp_path / "o")],
                             capture_output=True, text=True)
    assert unknown.returncode == 2 and "nonet" in unknown.stderr


def test_tables_and_plot_are_written_whole(tmp_path: Path) -> None:
    """comparison.csv (a row per bundle and fold, empty cells for metrics a bundle lacks), comparison.md (mean ± std)
    and comparison.png, each written atomically: no temporary file stays behind."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import compare
    finally:
        sys.path.remove(str(REPO / "scripts"))
    rows = [
        {"bundle": "a", "fold": 0, "parameters": 1000, "train_seconds": 60.0, "dice_x": 0.5, "dice_y": 0.7},
        {"bundle": "a", "fold": 1, "parameters": 1000, "train_seconds": 62.0, "dice_x": 0.7, "dice_y": 0.9},
        {"bundle": "b", "fold": 0, "parameters": 2000, "train_seconds": 90.0, "dice_x": 0.6},
    ]
    compare.write_tables(rows, tmp_path)
    compare.write_plot(rows, tmp_path / "comparison.png")
    with open(tmp_path / "comparison.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["bundle"], r["fold"], r["dice_x"], r["dice_y"]) for r in table] == [
        ("a", "0", "0.5", "0.7"), ("a", "1", "0.7", "0.9"), ("b", "0", "0.6", "")]
    markdown = (tmp_path / "comparison.md").read_text()
    assert "| a | 2 | 1,000 |" in markdown and "0.600 ± 0.141" in markdown
    assert Image.open(tmp_path / "comparison.png").size[0] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comparison.csv", "comparison.md", "comparison.png"]
