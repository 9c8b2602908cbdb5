"""scripts/benchmark.py in --quick mode: the JSON has every field with sane values (no timing assertions)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "scripts" / "benchmark.py"


def _finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    json_path = out / "bench.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--bundles", "arunet3d,unet2d", "--peers", "SegResNet3d",
           "--repeats", "1", "--warmup", "1", "--profile", "unet2d", "--batch-cases", "2",
           "--batch-backends", "eager", "--threads", "1", "--json", str(json_path), "--workdir", str(out / "work")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(json_path.read_text()), proc.stdout


def test_references(report):
    data, _ = report
    for key in ("matmul", "conv3d", "conv2d"):
        ref = data["references"][key]
        assert ref["flops"] > 0 and _finite_positive(ref["seconds"]) and _finite_positive(ref["gflops_per_s"])
    assert data["machine"]["threads"] == 1


def test_networks(report):
    import torch
    from monai.bundle import ConfigParser
    from monai.networks.nets import SegResNet

    data, stdout = report
    names = {n["spec"]["name"]: n for n in data["networks"]}
    assert set(names) == {"arunet3d", "unet2d", "SegResNet3d"}
    for name, net in names.items():
        r = net["result"]
        assert "error" not in r, r.get("error")
        assert r["flops"] > 0 and r["params"] > 0
        assert _finite_positive(r["latency_s"]) and _finite_positive(r["gflops_per_s"])
        assert _finite_positive(r["ratio_to_conv3d"])
        assert math.isclose(r["gflops_per_s"], r["flops"] / r["latency_s"] / 1e9, rel_tol=1e-9)
        sw = r["sliding_window"]
        assert sw["windows"] >= 1 and _finite_positive(sw["mvox_per_s"]) and sw["voxels"] > 0
        assert r["peak_rss_mb"] > 100  # torch alone is more than that
        assert name in stdout
    # quick mode: 32^3 and 128^2 ROIs, 2 x 2 x 1 windows of the 48x48x32 volume
    assert names["arunet3d"]["spec"]["roi"] == [32, 32, 32]
    assert names["arunet3d"]["result"]["sliding_window"]["windows"] == 4
    assert names["unet2d"]["spec"]["roi"] == [128, 128]

    # parameter counts are the networks' own
    root = REPO / "bundles" / "unet2d"
    parser = ConfigParser()
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    unet = parser.get_parsed_content("network_def")
    assert names["unet2d"]["result"]["params"] == sum(p.numel() for p in unet.parameters())
    cfg = names["SegResNet3d"]["spec"]["config"]
    peer = SegResNet(spatial_dims=3, in_channels=4, out_channels=3, **cfg)
    assert names["SegResNet3d"]["result"]["params"] == sum(p.numel() for p in peer.parameters())
    # FLOPs of one ROI patch: 2 per multiply-add of the convolutions, so at least the first conv's
    first = next(m for m in unet.modules() if isinstance(m, torch.nn.Conv2d))
    assert names["unet2d"]["result"]["flops"] > 2 * first.weight.numel() * 64 * 64


def test_profile(report):
    data, stdout = report
    profiled = [n for n in data["networks"] if "profile" in n["result"]]
    assert [n["spec"]["name"] for n in profiled] == ["unet2d"]
    prof = profiled[0]["result"]["profile"]
    assert prof["top_ops"] and "conv" in prof["categories"]
    assert math.isclose(sum(c["share"] for c in prof["categories"].values()), 1.0, rel_tol=1e-6)
    assert "profiles" in stdout


def test_batch(report):
    data, stdout = report
    batch = data["batch"]
    assert "error" not in batch, batch.get("error")
    assert batch["network"]["cases"] == 2 and _finite_positive(batch["network"]["network_seconds"])
    assert len(batch["runs"]) == 1
    row = batch["runs"][0]
    assert row["exit_code"] == 0, row.get("error")
    assert row["cases_ok"] == 2
    assert _finite_positive(row["wall_over_network"]) and _finite_positive(row["cases_over_network"])
    assert "batch inference" in stdout


def test_attention_flops_counted_at_true_head_width():
    """The zero channels padded onto narrow heads for the CPU kernel never count as FLOPs: 2 heads of 8 channels,
    256 queries and 64 keys count 4 * 256 * 64 * 8 per head for the attention, not twice that."""
    import importlib.util

    import torch

    from custom_nets.blocks.conv_attention import padded_attention

    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    q, k, v = torch.randn(1, 2, 256, 8), torch.randn(1, 2, 64, 8), torch.randn(1, 2, 64, 8)
    with torch.no_grad():
        padded, _ = benchmark.count_flops(lambda: padded_attention(q, k, v, min_head_dim=16))
        plain, _ = benchmark.count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    assert plain == 2 * 4 * 256 * 64 * 8
    assert padded == 2 * 2 * 4 * 256 * 64 * 8  # called directly with an explicit width, padding is counted ...
    from custom_nets.blocks.conv_attention import ConvAttention

    layer = ConvAttention(2, 16, num_heads=2).eval()
    x = torch.randn(1, 16, 16, 16)
    with torch.no_grad():
        total, by_op = benchmark.count_flops(lambda: layer(x))
    attention = sum(n for op, n in by_op.items() if "attention" in op)
    assert attention == 2 * 4 * 256 * 64 * 8  # ... but not for a plain layer (nothing patched while counting)


def test_profile_nets_uses_the_benchmark_measures(tmp_path):
    """scripts/profile_nets.py (the in-process companion) reports the benchmark's FLOPs and ROI for a bundle."""
    out = tmp_path / "profile.json"
    cmd = [sys.executable, str(REPO / "scripts" / "profile_nets.py"), "fct", "--repeats", "1", "--warmup", "0",
           "--ops", "2", "--threads", "1", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fct = json.loads(out.read_text())["networks"]["fct"]
    meta = json.loads((REPO / "bundles" / "fct" / "configs" / "metadata.json").read_text())
    channels = meta["network_data_format"]["inputs"]["image"]["num_channels"]  # 3 since the 2.5D neighbour stacks
    assert fct["input"] == [1, channels, 256, 256]
    # the attention FLOPs are counted (about 9.8 of the 17.5 GFLOP of a 256^2 patch), at the true head width
    assert 17.0 < fct["gflop"] < 18.0
    assert all(_finite_positive(fct[k]) for k in ("latency_ms", "gflops", "ref_gflops", "pct_ref"))
    assert len(fct["profile"]["top_ops"]) == 2
