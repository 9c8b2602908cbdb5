"""``configs/multi_gpu_train.json`` through ``torchrun``: 2 processes on CPU (gloo), one tiny epoch.

The bundle is copied out of the repository and run from an unrelated working directory, as in
``test_bundle_brats3d.py``. Only rank 0 may write checkpoints and logs, so each output must exist exactly once.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BUNDLES

# AR-UNet 3D (the brief's check) and U-Net 2D: the 2D tasks' handler lists differ from the 3D one's, and the
# multi-GPU overrides are shared by all bundles. Expected logged iterations: rank 0's share of one epoch.
TINY = {
    "arunet3d": (["--network_def#channels", "[8,16,32,64]", "--roi_size", "[32,32,32]"], 3),
    "unet2d": (["--network_def#channels", "[4,8,16,32,64]", "--batch_size", "8"], None),
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("name", sorted(TINY))
def test_torchrun_two_processes_on_cpu(name: str, tmp_path: Path) -> None:
    overrides, iterations = TINY[name]
    bundle = tmp_path / f"{name} copy"
    shutil.copytree(BUNDLES / name, bundle, ignore=shutil.ignore_patterns("models", "runs", "eval", "demo_data"))
    elsewhere = tmp_path / "somewhere else"
    elsewhere.mkdir()
    configs = bundle / "configs"
    config_files = f"['{configs / 'train.json'}','{configs / 'multi_gpu_train.json'}']"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "-m", "monai.bundle", "run", "training", "--config_file", config_files,
        *overrides, "--num_workers", "0", "--epochs", "1", "--val_interval", "1",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    # a timeout rather than a hang if the ranks ever wait for each other (a collective called on some ranks only)
    result = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"torchrun failed ({result.returncode}):\n{output[-8000:]}"

    for name in ["checkpoint_last.pt", "model.pt"]:
        found = sorted(bundle.rglob(name))
        assert found == [bundle / "models" / name], f"expected exactly one models/{name}, found {found}"
    assert (bundle / "runs" / "train.log").is_file()
    assert not any(elsewhere.iterdir()), f"outputs leaked into the working directory: {list(elsewhere.iterdir())}"

    losses = [float(v) for v in re.findall(r"train_loss: (\S+)", output)]
    assert losses, f"no train_loss in the output:\n{output[-4000:]}"
    assert all(math.isfinite(v) for v in losses), f"non-finite train loss: {losses}"
    # each iteration's loss is logged once (by rank 0), not once per process; 8 demo cases, 20% validation -> 3 each
    if iterations is not None:
        assert len(losses) == iterations, f"expected {iterations} logged iterations (rank 0 only), got {losses}"
    # the validation ran and was reported once (only rank 0 has a StatsHandler)
    assert output.count("Key metric:") == 1, output[-4000:]


@pytest.mark.parametrize("in_torchrun", [True, False])
def test_end_distributed_run_ends_only_torchrun_bundle_workers(in_torchrun: bool, tmp_path: Path) -> None:
    """``custom_nets.bundle.end_distributed_run`` (the ``finalize`` of every ``multi_gpu_train.json``) ends a
    ``torchrun`` worker of ``python -m monai.bundle`` before interpreter teardown, with status 0 and after the
    ``atexit`` handlers; anywhere else it returns and the workflow goes on."""
    config = tmp_path / "config.json"
    config.write_text(
        '{"imports": ["$import atexit", "$import custom_nets"],'
        ' "initialize": ["$atexit.register(print, \'ATEXIT\', flush=True)"],'
        ' "run": ["$print(\'RAN\', flush=True)"],'
        ' "finalize": ["$custom_nets.bundle.end_distributed_run()", "$print(\'AFTER\', flush=True)"]}'
    )
    env = {k: v for k, v in os.environ.items() if k != "TORCHELASTIC_RUN_ID"}
    if in_torchrun:
        env["TORCHELASTIC_RUN_ID"] = "none"  # what torchrun sets in a standalone run
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "RAN" in lines and lines[-1:] == ["ATEXIT"], result.stdout[-3000:]
    assert ("AFTER" in lines) is not in_torchrun, result.stdout[-3000:]
    # in a plain Python process it never exits, even under torchrun's environment variable
    from custom_nets.bundle import end_distributed_run

    os.environ["TORCHELASTIC_RUN_ID"] = "none"
    try:
        end_distributed_run()
    finally:
        del os.environ["TORCHELASTIC_RUN_ID"]
