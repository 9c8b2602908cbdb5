"""Experiment tracking: ``python -m monai.bundle run training ... --tracking mlflow`` logs to a local MLflow store.

MONAI's default tracking settings (``monai.bundle.utils.DEFAULT_EXP_MGMT_SETTINGS``) add ``MLFlowHandler`` to the
trainer and validator; the tracking URI is set here with ``--tracking_uri`` (a local SQLite database: MLflow 3.13+
rejects the old ``file://`` store). The test then reads the store back with MLflow's own client.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from conftest import BUNDLES, run_bundle

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install -r requirements-tracking.txt)")
pytest.importorskip("sqlalchemy", reason="the local SQLite MLflow store needs sqlalchemy (requirements-tracking.txt)")

TINY = ["--network_def#channels", "[8,16,32,64]", "--roi_size", "[32,32,32]", "--num_workers", "0"]


def test_mlflow_tracking_logs_train_and_validation_metrics(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    bundle = tmp_path / "arunet3d copy"
    shutil.copytree(BUNDLES / "arunet3d", bundle, ignore=shutil.ignore_patterns("models", "runs", "eval", "demo_data"))
    elsewhere = tmp_path / "somewhere else"
    elsewhere.mkdir()
    store = tmp_path / "tracking store" / "mlruns.db"
    store.parent.mkdir()
    tracking_uri = f"sqlite:///{store.as_posix()}"

    run_bundle(
        [
            "run", "training", "--config_file", str(bundle / "configs" / "train.json"), *TINY,
            "--epochs", "1", "--val_interval", "1",
            "--tracking", "mlflow", "--tracking_uri", tracking_uri, "--experiment_name", "tracking_test",
        ],
        cwd=elsewhere,
    )  # fmt: skip
    assert store.is_file(), "no MLflow database was written at the given tracking URI"
    assert not any(elsewhere.iterdir()), f"outputs leaked into the working directory: {list(elsewhere.iterdir())}"

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("tracking_test")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, f"expected one run, got {len(runs)}"
    run = runs[0]
    assert run.info.status == "FINISHED"
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert losses and all(math.isfinite(v) for v in losses), f"train_loss history: {losses}"
    assert "val_mean_dice" in run.data.metrics, f"no validation metric; metrics: {sorted(run.data.metrics)}"
    assert 0.0 <= run.data.metrics["val_mean_dice"] <= 1.0
    # the executed config is stored as a run artifact (save_execute_config)
    assert any(a.path.endswith(".json") for a in client.list_artifacts(run.info.run_id))
