"""Packaged bundles served by the real MONAI Label 0.8.5 server: labels, inference and training through its HTTP API.

Slow and optional (``make test-monailabel``): it needs the separate environment ``.venv-monailabel`` made by
``make monailabel-venv`` (or another one named by ``MONAI_LABEL_VENV``) and is skipped without it. The test itself runs
in the project's environment (it generates the data and packages the bundles with ``scripts/package_bundle.py``); the
server runs in the MONAI Label environment, where ``custom_nets`` is not installed, from a working directory outside
the repository and without ``PYTHONPATH``, so every bundle must work from its vendored copy of ``custom_nets``.

One server (module fixture) serves every bundle from a temporary copy of MONAI Label's ``monaibundle`` sample app, with
``model/<name>`` the packaged bundle and randomly initialised weights (MONAI Label ignores a bundle without
``models/model.pt``). Studies are synthetic BraTS cases stacked into 4-channel NIfTI files (two with labels in
``labels/final``, for training); 2D bundles get a generated slice uploaded with the request. The server is always
stopped at the end (its whole process group, with any training it started).

Known problems would be marked ``xfail(strict=True)`` with the reason, so a fix shows up as an XPASS that fails the
run (remove the marker then); docs/monai_label.md explains each. There are none at the moment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLES, REPO

requests = pytest.importorskip("requests")  # installed with mlflow (requirements-dev.txt)

pytestmark = pytest.mark.slow

ML_VENV = Path(os.environ.get("MONAI_LABEL_VENV", REPO / ".venv-monailabel"))
ML_PYTHON = ML_VENV / "bin" / "python"
SAMPLE_APP = ML_VENV / "monailabel" / "sample-apps" / "monaibundle"  # where pip puts MONAI Label's sample apps
START_TIMEOUT = 300.0
INFER_TIMEOUT = 600.0
TRAIN_TIMEOUT = 1800.0

BRATS_SHAPE = (64, 64, 48)
BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
UNLABELLED_CASE = "DEMO_002"  # the study inferred on; DEMO_000 and DEMO_001 get labels (training data)

BUNDLES_3D = ["arunet3d", "linknet3d", "pspnet3d"]
# 2D bundles: their inference postprocessing ends with custom_nets.transforms.MonaiLabelOutputd, which gives MONAI
# Label a uint8 (x, y) label map (docs/monai_label.md, "2D bundles"); the result's file type is the input's, or PNG
# for a JPEG input
BUNDLES_2D = ["unet2d", "attention_unet2d", "attention_resunet2d", "drrmsan", "ddanet", "ssformer", "unet3plus", "fct"]
ALL_BUNDLES = BUNDLES_3D + BUNDLES_2D


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------


def _metadata(name: str) -> dict:
    return json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())


def _label_values(name: str) -> set[int]:
    """The values a label map of this bundle may hold: 0 and the keys of ``label_values`` in its metadata."""
    return {0} | {int(k) for k in _metadata(name).get("label_values", {})}


def _channel_names(name: str) -> dict[str, int]:
    """What MONAI Label 0.8.5 makes of ``channel_def``: lower-cased name -> int(key), without "background"."""
    pred = next(iter(_metadata(name)["network_data_format"]["outputs"].values()))
    return {v.lower(): int(k) for k, v in pred.get("channel_def", {}).items() if v.lower() != "background"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _random_weights(name: str, path: Path) -> Path:
    """A state_dict of the bundle's network as configured (untrained): MONAI Label needs some models/model.pt."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "inference.json"))
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


def _package(name: str, model_dir: Path, weights: Path) -> Path:
    """``python scripts/package_bundle.py bundles/<name> -o <app>/model --checkpoint W --no-zip`` (in-process)."""
    spec = importlib.util.spec_from_file_location("package_bundle_script", REPO / "scripts" / "package_bundle.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    code = script.main([str(BUNDLES / name), "-o", str(model_dir), "--checkpoint", str(weights), "--no-zip"])
    assert code == 0, f"package_bundle.py {name} exited with {code}"
    return model_dir / name


def _brats_studies(root: Path) -> Path:
    """Synthetic BraTS cases as MONAI Label studies: one 4-channel NIfTI per case, labels of two in labels/final."""
    from custom_nets.data.brats import generate_brats_demo

    demo = generate_brats_demo(root / "brats_demo", num_cases=3, shape=BRATS_SHAPE)
    studies = root / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for case in sorted(p for p in demo.iterdir() if p.is_dir()):
        images = [nib.load(case / f"{case.name}_{m}.nii.gz") for m in BRATS_MODALITIES]
        data = np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in images], axis=-1)
        nib.save(nib.Nifti1Image(data, images[0].affine), studies / f"{case.name}.nii.gz")
        if case.name != UNLABELLED_CASE:
            shutil.copy(case / f"{case.name}_seg.nii.gz", studies / "labels" / "final" / f"{case.name}.nii.gz")
    return studies


def _slices_2d(root: Path) -> dict[str, Path]:
    """One generated input image per 2D bundle, in the format its inference reads."""
    from custom_nets.data.lgg import generate_lgg_demo
    from custom_nets.data.polyp_skin import generate_kvasir_demo
    from custom_nets.data.uwmadison import generate_uwmadison_demo

    lgg = generate_lgg_demo(root / "lgg", num_patients=1, slices_per_patient=3, size=128)
    kvasir = generate_kvasir_demo(root / "kvasir", num_images=1)
    uw = generate_uwmadison_demo(root / "uw", num_cases=1, days_per_case=1, slices_per_day=4)
    lgg_slice = sorted(p for p in lgg.rglob("*.tif") if not p.name.endswith("_mask.tif"))[1]
    polyp = sorted((kvasir / "images").iterdir())[0]
    gi_slice = sorted((uw / "train").rglob("*.png"))[2]
    return {"unet2d": lgg_slice, "attention_unet2d": lgg_slice, "attention_resunet2d": lgg_slice,
            "drrmsan": polyp, "ddanet": polyp, "ssformer": polyp, "unet3plus": gi_slice, "fct": gi_slice}


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: Path, app: Path, studies: Path, inputs: dict):
        self.process, self.url, self.log, self.app, self.studies, self.inputs = process, url, log, app, studies, inputs

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no server log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # the server and any training it started
                self.process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=30)


# ----------------------------------------------------------------------------------------------------------------------
# the server
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not ML_PYTHON.exists():
        pytest.skip(f"no MONAI Label environment at {ML_VENV} (make monailabel-venv, or set MONAI_LABEL_VENV)")
    probe = subprocess.run([str(ML_PYTHON), "-c", "import monailabel, torchvision.utils"], capture_output=True,
                           text=True, cwd=tmp_path_factory.getbasetemp(), timeout=300)
    if probe.returncode != 0:
        pytest.skip(f"monailabel does not import in {ML_VENV}: {probe.stderr.strip().splitlines()[-1:]}"
                    " (make monailabel-venv applies scripts/patch_torchvision_ops.py)")
    if not SAMPLE_APP.is_dir():
        pytest.skip(f"MONAI Label's monaibundle sample app not found at {SAMPLE_APP}")

    root = tmp_path_factory.mktemp("monai label")  # a space in the path on purpose
    app = root / "app"
    shutil.copytree(SAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__"))
    (app / "model").mkdir(exist_ok=True)
    weights = root / "weights"
    weights.mkdir()
    for name in ALL_BUNDLES:
        _package(name, app / "model", _random_weights(name, weights / f"{name}.pt"))
    studies = _brats_studies(root)
    inputs = _slices_2d(root)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.setdefault("OMP_NUM_THREADS", "2")
    cwd = root / "cwd"  # not the repository: `python -m` puts the working directory on sys.path
    cwd.mkdir()
    cmd = [str(ML_PYTHON), "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
           "--conf", "models", ",".join(ALL_BUNDLES), "--conf", "zoo_source", "github", "--conf", "sam2", "false",
           "--host", "127.0.0.1", "--port", str(port)]
    start = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(process, url, log, app, studies, inputs)
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"MONAI Label server exited with {process.returncode}:\n{srv.log_tail()}")
            try:
                if requests.get(f"{url}/info/", timeout=10).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.perf_counter() - start > START_TIMEOUT:
                pytest.fail(f"MONAI Label server not answering /info/ after {START_TIMEOUT:.0f} s:\n{srv.log_tail()}")
            time.sleep(1)
        print(f"MONAI Label server with {len(ALL_BUNDLES)} bundles answered /info/ after "
              f"{time.perf_counter() - start:.1f} s")
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def info(server) -> dict:
    return requests.get(f"{server.url}/info/", timeout=30).json()


def _infer(server: Server, name: str, **kwargs) -> requests.Response:
    start = time.perf_counter()
    response = requests.post(f"{server.url}/infer/{name}", params={"output": "image", **kwargs.pop("params", {})},
                             data={"params": "{}"}, timeout=INFER_TIMEOUT, **kwargs)
    print(f"{name}: inference answered {response.status_code} in {time.perf_counter() - start:.1f} s")
    return response


# ----------------------------------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_loaded_with_its_label_names(info: dict, name: str) -> None:
    """Every packaged bundle loads as a model and a trainer; the labels shown are its channel_def names."""
    assert name in info["models"], f"{name} not served; models: {sorted(info['models'])}"
    assert name in info["trainers"], f"{name} has no trainer; trainers: {sorted(info['trainers'])}"
    model = info["models"][name]
    assert model["type"] == "segmentation"
    assert model["dimension"] == (3 if name in BUNDLES_3D else 2)
    assert model["labels"] == _channel_names(name)
    assert model["config"]["model_filename"] == ["model.pt"]  # an empty list breaks 3D Slicer's client
    assert set(model["labels"]) <= set(info["labels"])


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_label_values_shown_match_the_label_map(info: dict, name: str) -> None:
    """3D Slicer names the segments of a result by these numbers: they must be the label map's values.

    MONAI Label 0.8.5 reads ``outputs.pred.channel_def`` as ``{name.lower(): int(key)}`` (tasks/infer/bundle.py), so
    its keys must be the values inference writes (``label_values``), not network output channels.
    """
    assert set(info["models"][name]["labels"].values()) == _label_values(name) - {0}


@pytest.mark.parametrize("name", BUNDLES_3D)
def test_infer_3d(server: Server, name: str, tmp_path: Path) -> None:
    """A study of the datastore in, a label map with the study's shape and affine and the bundle's values out."""
    response = _infer(server, name, params={"image": UNLABELLED_CASE})
    assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\n{server.log_tail()}"
    result = tmp_path / "pred.nii.gz"
    result.write_bytes(response.content)
    pred = nib.load(result)
    image = nib.load(server.studies / f"{UNLABELLED_CASE}.nii.gz")
    assert pred.shape == image.shape[:3] == BRATS_SHAPE
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)
    values = set(np.unique(np.asarray(pred.dataobj)).astype(int).tolist())
    assert values <= _label_values(name), f"label values {values}, expected a subset of {_label_values(name)}"


@pytest.mark.parametrize("name", BUNDLES_2D)
def test_infer_2d(server: Server, name: str, tmp_path: Path) -> None:
    """An uploaded 2D image in, a 2D uint8 label map of the same size with the bundle's values out.

    The result comes in the input's file type (TIFF, PNG), or as PNG for a JPEG input (lossy, and ITK writes no
    label map as JPEG).
    """
    source = server.inputs[name]
    with open(source, "rb") as f:
        response = _infer(server, name, files={"file": (source.name, f)})
    assert response.status_code == 200, f"{response.status_code} {response.text[:300]}\n{server.log_tail()}"
    import itk  # noqa: PLC0415 - reads TIFF and PNG results alike, as MONAI Label wrote them

    filename = response.headers.get("content-disposition", "").rpartition("filename=")[2].strip('"')
    suffix = Path(filename).suffix.lower()
    assert suffix == (".png" if source.suffix.lower() in (".jpg", ".jpeg") else source.suffix.lower()), filename
    result = tmp_path / f"pred{suffix}"
    result.write_bytes(response.content)
    pred = itk.array_from_image(itk.imread(str(result)))
    image = itk.array_from_image(itk.imread(str(source)))
    assert pred.shape == image.shape[:2], f"label map {pred.shape} {pred.dtype} for an input of {image.shape}"
    assert pred.dtype == np.uint8
    values = set(np.unique(pred).astype(int).tolist())
    assert values <= _label_values(name), f"label values {values}, expected a subset of {_label_values(name)}"


def test_train_arunet3d_then_infer(server: Server, tmp_path: Path) -> None:
    """Training from MONAI Label's datalist (labels/final) finishes and writes models/model.pt, which inference uses.

    The first request runs 5 epochs, so the bundle validates (``val_interval`` = 5) and its CheckpointSaver writes
    the best model; the second runs 2 epochs with no validation (docs/monai_label.md, "Train from 3D Slicer").
    """
    name = "arunet3d"
    model = server.app / "model" / name / "models" / "model.pt"
    before = torch.load(model, map_location="cpu", weights_only=True)
    start = time.perf_counter()
    response = requests.post(f"{server.url}/train/{name}", params={"run_sync": "true"},
                             json={"max_epochs": 5, "val_split": 0.5}, timeout=TRAIN_TIMEOUT)
    elapsed = time.perf_counter() - start
    print(f"{name}: 5 training epochs through MONAI Label in {elapsed:.1f} s")
    assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\n{server.log_tail()}"
    log = server.log_tail(200_000)
    assert "Total Records for Training: 1" in log and "Total Records for Validation: 1" in log
    assert "Epoch: 5/5" in log, log[-4000:]
    assert "Training Finished" in log

    after = torch.load(model, map_location="cpu", weights_only=True)
    after = after.get("model", after) if isinstance(after, dict) and "model" in after else after
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before), "models/model.pt was not rewritten by training"
    assert (model.parent / "checkpoint_last.pt").is_file()

    # a second, shorter request (no validation in 2 epochs) trains again instead of resuming the finished run,
    # and still leaves its weights in models/model.pt (ResumableCheckpoint, FinalModelSaver)
    response = requests.post(f"{server.url}/train/{name}", params={"run_sync": "true"},
                             json={"max_epochs": 2, "val_split": 0.5}, timeout=TRAIN_TIMEOUT)
    assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\n{server.log_tail()}"
    log = server.log_tail(200_000)
    assert "is from a finished run (5 epochs): starting a new run of 2 epochs" in log, log[-4000:]
    assert "Epoch: 2/2" in log and "no validation in this run: saved the final weights" in log, log[-4000:]
    again = torch.load(model, map_location="cpu", weights_only=True)
    assert any(not torch.equal(after[k], again[k]) for k in after), "the second training did not reach model.pt"

    # the inference task reloads the changed checkpoint
    response = _infer(server, name, params={"image": UNLABELLED_CASE})
    assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\n{server.log_tail()}"
    result = tmp_path / "pred.nii.gz"
    result.write_bytes(response.content)
    assert nib.load(result).shape == BRATS_SHAPE
