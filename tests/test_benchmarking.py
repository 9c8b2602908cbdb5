"""custom_nets.benchmarking: the synthetic BraTS case, the window count and the training-throughput report the
benchmark gives (no timing assertions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from custom_nets.benchmarking import ENHANCING, NECROSIS, OEDEMA, synthetic_brats_case, window_count

REPO = Path(__file__).resolve().parents[1]


def test_synthetic_case_is_deterministic_with_a_zero_background() -> None:
    image, label = synthetic_brats_case((64, 72, 56), seed=3, brain_fraction=(0.8, 0.8, 0.8))
    again, label_again = synthetic_brats_case((64, 72, 56), seed=3, brain_fraction=(0.8, 0.8, 0.8))
    other, _ = synthetic_brats_case((64, 72, 56), seed=4, brain_fraction=(0.8, 0.8, 0.8))
    assert image.shape == (4, 64, 72, 56) and image.dtype == np.float32 and label.dtype == np.uint8
    assert np.array_equal(image, again) and np.array_equal(label, label_again) and not np.array_equal(image, other)
    brain = image.any(axis=0)
    assert np.all(image[:, ~brain] == 0) and np.all(image[:, brain] > 0)  # every channel nonzero in the brain
    assert 0.2 < brain.mean() < 0.4  # an ellipsoid of 0.8 x the volume's half-axes: pi/6 * 0.512
    assert set(np.unique(label)) == {0, NECROSIS, OEDEMA, ENHANCING}
    assert np.all(brain[label > 0])  # the tumour lies in the brain
    # the enhancing rim is bright on T1ce (channel 2), the oedema on FLAIR (channel 0)
    assert image[2][label == ENHANCING].mean() > 1.5 * image[2][(label == 0) & brain].mean()
    assert image[0][label == OEDEMA].mean() > 1.5 * image[0][(label == 0) & brain].mean()


@pytest.mark.parametrize("spatial,roi,overlap", [((48, 40, 33), (16, 16, 16), 0.5), ((50, 20, 9), (32, 32, 8), 0.25),
                                                  ((64, 64, 64), (64, 64, 64), 0.0)])
def test_window_count_is_monai_s(spatial: tuple, roi: tuple, overlap: float) -> None:
    calls = []

    def network(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x

    sliding_window_inference(torch.zeros(1, 1, *spatial), roi, 1, network, overlap=overlap)
    assert window_count(spatial, roi, overlap) == sum(calls)


# training throughput (issue #18): the real pipeline of a bundle at tiny sizes, three iterations; structure only
TINY_UNET2D = {"batch_size": 4, "roi_size": [64, 64], "num_workers": 0, "network_def#channels": [4, 8, 16, 32, 64]}


@pytest.fixture(scope="module")
def training_report(tmp_path_factory):
    from custom_nets.benchmarking import BUNDLES_DIR, measure_training

    bundle = BUNDLES_DIR / "unet2d"
    before = sorted(p.name for p in bundle.iterdir())
    lines: list[str] = []
    workdir = tmp_path_factory.mktemp("training")
    result = measure_training(bundle, workdir, iterations=2, warmup=1, overrides=TINY_UNET2D, samples=2,
                              log=lines.append)
    assert sorted(p.name for p in bundle.iterdir()) == before  # demo, checkpoints and logs went to the workdir
    return result, lines, workdir


def test_training_measurement_report(training_report) -> None:
    result, lines, workdir = training_report
    assert result["bundle"] == "unet2d" and result["iterations"] == 2 and result["warmup"] == 1
    assert len(result["iteration_times"]) == 2 and len(result["pure_times"]) == 2
    assert result["iteration_s"] > 0 and result["pure_s"] > 0
    assert result["ratio"] == pytest.approx(result["iteration_s"] / result["pure_s"], rel=1e-12)
    assert all(t > 0 for t in result["iteration_times"] + result["pure_times"])
    assert result["data_wait_s"] >= 0 and result["step_s"] > 0 and result["loader_cpu_s"] > 0
    assert result["overhead_bound"] == pytest.approx(
        1 + (result["data_wait_s"] + result["loader_cpu_s"]) / result["pure_s"], rel=1e-12)
    assert result["validation_s"] == []  # three iterations of a 15-iteration epoch: no validation ran
    settings = result["settings"]
    assert settings["dataset"] == "CacheDataset" and settings["cache_rate"] == 1.0
    assert settings["loader"] == "DataLoader" and settings["num_workers"] == 0 and settings["batch_size"] == 4
    assert settings["patch"] == [64, 64] and settings["batch_shape"] == [4, 3, 64, 64]
    assert settings["epoch_length"] >= 3 and settings["amp"] is False and settings["device"] == "cpu"
    assert (workdir / "unet2d" / "demo_data" / "dataset.json").is_file()
    assert any("ratio" in line for line in lines)  # progress lines while it runs


def test_training_table_renders_every_bundle(training_report) -> None:
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("benchmark_script", REPO / "scripts" / "benchmark.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    result, _, _ = training_report
    report = {"machine": {"cpu": "cpu", "cpus": 2, "loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": [2.0, 2.0, 2.0]},
              "options": {"iterations": 2, "warmup": 1},
              "training": [{"bundle": "unet2d", "result": json.loads(json.dumps(result))},
                           {"bundle": "broken", "result": {"error": "worker exit 1: boom"}}]}
    table = script.render_training(report)
    assert f"{result['ratio']:.2f}x" in table and f"{result['overhead_bound']:.2f}x" in table
    assert "CacheDataset" in table and "4x3x64x64" in table
    assert "broken  ERROR: worker exit 1: boom" in table


def test_training_measurement_names_a_missing_config(tmp_path) -> None:
    from custom_nets.benchmarking import measure_training

    with pytest.raises(FileNotFoundError, match="train.json"):
        measure_training(tmp_path, tmp_path / "work")
