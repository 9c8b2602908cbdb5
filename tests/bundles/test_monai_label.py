"""Packaged bundles served by the real MONAI Label 0.8.5 server, driven as 3D Slicer's MONAI Label plugin drives it.

Slow and optional (``make test-monailabel``): it needs the separate environment ``.venv-monailabel`` made by
``make monailabel-venv`` (or another one named by ``MONAI_LABEL_VENV``) and is skipped without it. The test itself runs
in the project's environment (it generates the data and packages the bundles with ``scripts/package_bundle.py``); the
servers run in the MONAI Label environment, where ``custom_nets`` is not installed, from a working directory outside
the repository and without ``PYTHONPATH``, so every bundle must work from its vendored copy of ``custom_nets``.

Two servers (module fixtures; MONAI Label has one datastore per server and trains on every labelled study of it):
the three 3D bundles on synthetic BraTS studies (4-channel NIfTI files), and the eight 2D bundles on 3-channel PNG
studies (an LGG slice, a Kvasir frame, a UW-Madison 2.5D stack of slices -2, 0, +2). Each serves packaged bundles with
randomly initialised weights (MONAI Label ignores a bundle without ``models/model.pt``) from a temporary copy of MONAI
Label's ``monaibundle`` sample app. What the plugin does is emulated from its code (MONAI Label 0.8.5,
``plugins/slicer/MONAILabel/MONAILabel.py``):

- request parameters are ``/info/``'s ``config`` of the model or trainer with each list replaced by its first item
  (``getParamsFromConfig``): a training request carries ``run_id ""``, which runs ``train.json``'s root id;
- a result is imported with ``ImportLabelmapToSegmentationNode``, which puts label value ``i + 1`` in the ``i``-th
  segment of the model's label names sorted by value (:func:`_slicer_segments`);
- labels a user submits are saved as ``labels/final/<study>.nii.gz`` (the plugin's default extension: a 2D study's
  label is a ``(W, H, 1)`` volume) with the segments numbered 1..N; PNG labels are tested too.

Each training request must start the trainer exactly once, and may add files to the served bundle only under
``models/`` (checkpoints, ``task.json``) and ``runs/`` (logs). The servers are always stopped at the end (their whole
process group, with any training they started).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
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
from PIL import Image

requests = pytest.importorskip("requests")  # installed with mlflow (requirements-dev.txt)

pytestmark = pytest.mark.slow

ML_VENV = Path(os.environ.get("MONAI_LABEL_VENV", REPO / ".venv-monailabel"))
ML_PYTHON = ML_VENV / "bin" / "python"
SAMPLE_APP = ML_VENV / "monailabel" / "sample-apps" / "monaibundle"  # where pip puts MONAI Label's sample apps
START_TIMEOUT = 300.0
INFER_TIMEOUT = 600.0
TRAIN_TIMEOUT = 1800.0

BRATS_SHAPE = (64, 64, 48)
UNLABELLED_CASE = "DEMO_003"  # the study inferred on; DEMO_000 to DEMO_002 get labels (training data)
SLICER_AFFINE_2D = np.diag([-1.0, -1.0, 1.0, 1.0])  # a PNG's geometry in 3D Slicer (LPS identity), saved as RAS

BUNDLES_3D = ["arunet3d", "linknet3d", "pspnet3d"]
# 2D bundles: their inference postprocessing ends with custom_nets.transforms.MonaiLabelOutputd, which gives MONAI
# Label a uint8 (x, y) label map (docs/monai_label.md, "2D bundles"); the result's file type is the input's, or PNG
# for a JPEG input
BUNDLES_2D = ["unet2d", "attention_unet2d", "attention_resunet2d", "drrmsan", "ddanet", "ssformer", "unet3plus", "fct"]
ALL_BUNDLES = BUNDLES_3D + BUNDLES_2D
# 2D studies: name -> (demo task, label file type as submitted)
STUDIES_2D = {"lgg_0": ("lgg", ".nii.gz"), "polyp_0": ("kvasir", ".png"), "gi_0": ("uwmadison", ".nii.gz")}
# a first epoch's first iteration (StatsHandler): one per trainer run
TRAINER_START = re.compile(r"Epoch: 1/\d+, Iter: 1/")


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


def _slicer_params(info: dict, section: str, name: str) -> dict:
    """The plugin's ``getParamsFromConfig``: the model's or trainer's ``config`` from /info/, lists -> first item."""
    config = info[section][name].get("config", {})
    return {k: v[0] if isinstance(v, list) else v for k, v in config.items()}


def _slicer_segments(labels: dict[str, int], label_map: np.ndarray) -> dict[str, int]:
    """Voxels per segment as 3D Slicer's plugin imports a result; fails on any label the user would not see.

    The plugin sorts the label names by value and calls ``ImportLabelmapToSegmentationNode(labelmap, segmentation,
    segmentIds)``, which fills the ``i``-th segment from label value ``i + 1`` and drops every other value.
    """
    names = [k for k, _ in sorted(labels.items(), key=lambda item: item[1])]
    wrong = {n: v for i, (n, v) in enumerate(sorted(labels.items(), key=lambda item: item[1])) if v != i + 1}
    assert not wrong, f"label values {wrong} are shown in the segments numbered by position: {names}"
    values = set(np.unique(label_map).astype(int).tolist()) - {0}
    lost = sorted(v for v in values if not 1 <= v <= len(names))
    assert not lost, f"label values {lost} of the result reach no segment of {names}"
    return {n: int((label_map == i + 1).sum()) for i, n in enumerate(names)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _random_weights(name: str, path: Path) -> Path:
    """A state_dict of the bundle's network as configured (untrained): MONAI Label needs some models/model.pt."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "inference.json"))
    parser["ckpt_dir"] = str(path.parent / "no task")  # the task a packaged bundle serves: no task.json ships
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
    """Synthetic BraTS cases as MONAI Label studies: one 4-channel NIfTI per case (the demo's imagesTr files stacked
    on the last axis, as docs/monai_label.md shows), labels of three in labels/final with values 1..3 (as Slicer
    numbers the three segments): the plugin's default val_split 0.2 then validates on one."""
    from custom_nets.data.demo import make_demo

    demo = make_demo("brats", root / "brats_demo", num_cases=4, shape=BRATS_SHAPE)
    studies = root / "studies_3d"
    (studies / "labels" / "final").mkdir(parents=True)
    for label_file in sorted((demo / "labelsTr").glob("*.nii.gz")):
        case = label_file.name[: -len(".nii.gz")]
        images = [nib.load(f) for f in sorted((demo / "imagesTr").glob(f"{case}_000[0-9].nii.gz"))]
        assert len(images) == 4, case
        data = np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in images], axis=-1)
        nib.save(nib.Nifti1Image(data, images[0].affine), studies / f"{case}.nii.gz")
        if case != UNLABELLED_CASE:
            label = nib.load(label_file)
            values = np.asarray(label.dataobj).astype(np.uint8)
            assert set(np.unique(values).tolist()) <= {0, 1, 2, 3}, f"{label_file}: not BraTS 2023 values"
            nib.save(nib.Nifti1Image(values, label.affine), studies / "labels" / "final" / f"{case}.nii.gz")
    return studies


def _save_slicer_label(values_hw: np.ndarray, path: Path) -> None:
    """A 2D study's label as the plugin saves it by default: a ``(W, H, 1)`` NIfTI volume (Slicer's i = column)."""
    nib.save(nib.Nifti1Image(values_hw.T[..., None].astype(np.uint8), SLICER_AFFINE_2D), path)


def _studies_2d(root: Path) -> Path:
    """3-channel PNG studies (one per demo task), each labelled: label maps of the task's values, in ``STUDIES_2D``'s
    file types. The GI study stacks slices -2, 0, +2 (the demo's 16-bit channel files, scaled to 8 bits)."""
    from custom_nets.data.demo import make_demo

    studies = root / "studies_2d"
    (studies / "labels" / "final").mkdir(parents=True)
    sizes = {"lgg": {"num_patients": 1, "slices_per_patient": 2, "size": 64}, "kvasir": {"num_images": 2},
             "uwmadison": {"num_cases": 1, "days_per_case": 1, "slices_per_day": 6}}
    for study, (task, label_ext) in STUDIES_2D.items():
        demo = make_demo(task, root / f"{task}_demo", **sizes[task])
        label_file = sorted((demo / "labelsTr").glob("*.png"))[1]
        case = label_file.name[: -len(".png")]
        channels = [np.asarray(Image.open(f)) for f in sorted((demo / "imagesTr").glob(f"{case}_000[0-9].png"))]
        image = channels[0] if len(channels) == 1 else np.stack(channels, axis=-1)
        if image.dtype != np.uint8:
            image = (image.astype(np.float64) * 255 / max(float(image.max()), 1.0)).round().astype(np.uint8)
        assert image.ndim == 3 and image.shape[-1] == 3, f"{case}: {image.shape}"
        Image.fromarray(image).save(studies / f"{study}.png")
        label = np.asarray(Image.open(label_file))
        target = studies / "labels" / "final" / f"{study}{label_ext}"
        if label_ext == ".png":
            Image.fromarray(label.astype(np.uint8)).save(target)
        else:
            _save_slicer_label(label, target)
    return studies


def _uploads_2d(root: Path, studies_2d: Path) -> dict[str, Path]:
    """One input image per 2D bundle in a format its users have: an LGG TIFF slice, a Kvasir JPEG frame, the GI
    study's 3-channel PNG."""
    from custom_nets.data.lgg import generate_lgg_demo
    from custom_nets.data.polyp_skin import generate_kvasir_demo

    lgg = generate_lgg_demo(root / "lgg_public", num_patients=1, slices_per_patient=3, size=128)
    kvasir = generate_kvasir_demo(root / "kvasir_public", num_images=1)
    lgg_slice = sorted(p for p in lgg.rglob("*.tif") if not p.name.endswith("_mask.tif"))[1]
    polyp = sorted((kvasir / "images").iterdir())[0]
    gi = studies_2d / "gi_0.png"
    return {"unet2d": lgg_slice, "attention_unet2d": lgg_slice, "attention_resunet2d": lgg_slice,
            "drrmsan": polyp, "ddanet": polyp, "ssformer": polyp, "unet3plus": gi, "fct": gi}


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: Path, app: Path, studies: Path, bundles: list[str]):
        self.process, self.url, self.log, self.app, self.studies = process, url, log, app, studies
        self.bundles = bundles
        self.inputs: dict[str, Path] = {}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_text()[-chars:] or "(no server log)"

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


def _start_server(root: Path, bundles: list[str], studies: Path):
    """A MONAI Label server (generator: yields it, then stops it) serving ``bundles`` packaged into a copy of the
    ``monaibundle`` app, on the datastore ``studies``."""
    if not ML_PYTHON.exists():
        pytest.skip(f"no MONAI Label environment at {ML_VENV} (make monailabel-venv, or set MONAI_LABEL_VENV)")
    probe = subprocess.run([str(ML_PYTHON), "-c", "import monailabel, torchvision.utils"], capture_output=True,
                           text=True, cwd=root, timeout=300)
    if probe.returncode != 0:
        pytest.skip(f"monailabel does not import in {ML_VENV}: {probe.stderr.strip().splitlines()[-1:]}"
                    " (make monailabel-venv applies scripts/patch_torchvision_ops.py)")
    if not SAMPLE_APP.is_dir():
        pytest.skip(f"MONAI Label's monaibundle sample app not found at {SAMPLE_APP}")

    app = root / "app"
    shutil.copytree(SAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__"))
    (app / "model").mkdir(exist_ok=True)
    weights = root / "weights"
    weights.mkdir()
    for name in bundles:
        _package(name, app / "model", _random_weights(name, weights / f"{name}.pt"))

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.setdefault("OMP_NUM_THREADS", "2")
    cwd = root / "cwd"  # not the repository: `python -m` puts the working directory on sys.path
    cwd.mkdir()
    cmd = [str(ML_PYTHON), "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
           "--conf", "models", ",".join(bundles), "--conf", "zoo_source", "github", "--conf", "sam2", "false",
           "--host", "127.0.0.1", "--port", str(port)]
    start = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(process, url, log, app, studies, bundles)
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
        print(f"MONAI Label server with {len(bundles)} bundles answered /info/ after "
              f"{time.perf_counter() - start:.1f} s")
        yield srv
    finally:
        srv.stop()


# ----------------------------------------------------------------------------------------------------------------------
# the servers
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("monai label 3d")  # a space in the path on purpose
    yield from _start_server(root, BUNDLES_3D, _brats_studies(root))


@pytest.fixture(scope="module")
def server_2d(tmp_path_factory):
    root = tmp_path_factory.mktemp("monai label 2d")
    studies = _studies_2d(root)
    inputs = _uploads_2d(root, studies)
    for srv in _start_server(root, BUNDLES_2D, studies):
        srv.inputs = inputs
        yield srv


@pytest.fixture
def server(request) -> Server:
    """The server of the test's ``name`` parameter."""
    name = request.node.callspec.params["name"]
    return request.getfixturevalue("server_3d" if name in BUNDLES_3D else "server_2d")


def _info(server: Server) -> dict:
    return requests.get(f"{server.url}/info/", timeout=30).json()


def _infer(server: Server, name: str, **kwargs) -> requests.Response:
    """An inference request with the parameters the plugin sends (the model's /info/ config)."""
    params = _slicer_params(_info(server), "models", name)
    start = time.perf_counter()
    response = requests.post(f"{server.url}/infer/{name}", params={"output": "image", **kwargs.pop("params", {})},
                             data={"params": json.dumps(params)}, timeout=INFER_TIMEOUT, **kwargs)
    print(f"{name}: inference answered {response.status_code} in {time.perf_counter() - start:.1f} s")
    return response


def _read_result(response: requests.Response, tmp_path: Path) -> tuple[np.ndarray, Path]:
    import itk  # noqa: PLC0415 - reads NIfTI, TIFF and PNG results alike, as MONAI Label wrote them

    filename = response.headers.get("content-disposition", "").rpartition("filename=")[2].strip('"')
    suffix = ".nii.gz" if filename.endswith(".nii.gz") else Path(filename).suffix.lower()
    result = tmp_path / f"pred{suffix}"
    result.write_bytes(response.content)
    return itk.array_from_image(itk.imread(str(result))), result


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _train(server: Server, name: str, max_epochs: int, **overrides) -> str:
    """A training request as the plugin sends it; returns the server log it produced. Checks that it started the
    trainer once and changed nothing in the served bundle but ``models/`` and ``runs/``."""
    params = {**_slicer_params(_info(server), "trainers", name), "max_epochs": max_epochs, **overrides}
    bundle = server.app / "model" / name
    before, log_start = _files(bundle), len(server.log_text())
    start = time.perf_counter()
    response = requests.post(f"{server.url}/train/{name}", params={"run_sync": "true"}, json=params,
                             timeout=TRAIN_TIMEOUT)
    log = server.log_text()[log_start:]
    print(f"{name}: {max_epochs} training epochs (run_id {params.get('run_id')!r}) through MONAI Label in "
          f"{time.perf_counter() - start:.1f} s")
    assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\n{log[-6000:]}"
    assert "Training Finished" in log, log[-4000:]
    runs = len(TRAINER_START.findall(log))
    assert runs == 1, f"{name}: the request started the trainer {runs} times\n{log[-4000:]}"
    after = _files(bundle)
    changed = sorted(p for p in after if after[p] != before.get(p) and p.split(os.sep)[0] not in ("models", "runs"))
    assert not changed, f"{name}: training wrote {changed} in the served bundle"
    assert not (bundle / "demo_data").exists()
    return log


# ----------------------------------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_loaded_with_its_label_names(server: Server, name: str) -> None:
    """Every packaged bundle loads as a model and a trainer; the labels shown are its channel_def names, numbered
    1..N in the order of their values, so the plugin's segments get the right voxels."""
    info = _info(server)
    assert name in info["models"], f"{name} not served; models: {sorted(info['models'])}"
    assert name in info["trainers"], f"{name} has no trainer; trainers: {sorted(info['trainers'])}"
    model = info["models"][name]
    assert model["type"] == "segmentation"
    assert model["dimension"] == (3 if name in BUNDLES_3D else 2)
    assert model["labels"] == _channel_names(name)
    assert model["config"]["model_filename"] == ["model.pt"]  # an empty list breaks 3D Slicer's client
    assert set(model["labels"]) <= set(info["labels"])
    # 3D Slicer names the segments of a result by these numbers: they must be the label map's values, 1..N
    assert set(model["labels"].values()) == _label_values(name) - {0}
    _slicer_segments(model["labels"], np.arange(len(model["labels"]) + 1))
    assert _slicer_params(info, "trainers", name)["run_id"] == ""  # what the plugin sends back


@pytest.mark.parametrize("name", BUNDLES_3D)
def test_infer_3d(server: Server, name: str, tmp_path: Path) -> None:
    """A study of the datastore in, a label map with the study's shape and affine whose values reach their
    segments."""
    response = _infer(server, name, params={"image": UNLABELLED_CASE})
    assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\n{server.log_tail()}"
    _, result = _read_result(response, tmp_path)
    pred = nib.load(result)
    image = nib.load(server.studies / f"{UNLABELLED_CASE}.nii.gz")
    assert pred.shape == image.shape[:3] == BRATS_SHAPE
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)
    _slicer_segments(_channel_names(name), np.asarray(pred.dataobj))


@pytest.mark.parametrize("name", BUNDLES_2D)
def test_infer_2d(server: Server, name: str, tmp_path: Path) -> None:
    """An uploaded 2D image in, a 2D uint8 label map of the same size whose values reach their segments.

    The result comes in the input's file type (TIFF, PNG), or as PNG for a JPEG input (lossy, and ITK writes no
    label map as JPEG).
    """
    source = server.inputs[name]
    with open(source, "rb") as f:
        response = _infer(server, name, files={"file": (source.name, f)})
    assert response.status_code == 200, f"{response.status_code} {response.text[:300]}\n{server.log_tail()}"
    pred, result = _read_result(response, tmp_path)
    assert result.suffix == (".png" if source.suffix.lower() in (".jpg", ".jpeg") else source.suffix.lower())
    import itk  # noqa: PLC0415

    image = itk.array_from_image(itk.imread(str(source)))
    assert pred.shape == image.shape[:2], f"label map {pred.shape} {pred.dtype} for an input of {image.shape}"
    assert pred.dtype == np.uint8
    _slicer_segments(_channel_names(name), pred)


@pytest.mark.parametrize(
    "name, study, expected",
    [
        ("arunet3d", "one_channel.nii.gz", "1 channel, but the model takes 4 (FLAIR, T1, T1ce, T2) in one image"),
        ("unet2d", "grey.png", "1 channel, but the model takes 3 (R, G, B) in one image"),
        ("unet3plus", "grey.png", "1 channel, but the model takes 3 (MRI slice -2, MRI slice 0, MRI slice +2)"),
    ],
)
def test_wrong_input_fails_with_one_line(server: Server, name: str, study: str, expected: str, tmp_path: Path) -> None:
    """A study with the wrong number of channels is refused on reading, with one log line saying what the model
    takes (MONAI Label answers HTTP 500; the message is in the server log)."""
    path = tmp_path / study
    if study.endswith(".nii.gz"):
        nib.save(nib.Nifti1Image(np.zeros((16, 16, 8), np.float32), np.eye(4)), path)
    else:
        Image.fromarray(np.zeros((32, 48), np.uint8)).save(path)
    log_start = len(server.log_text())
    with open(path, "rb") as f:
        response = _infer(server, name, files={"file": (path.name, f)})
    assert response.status_code != 200
    deadline = time.perf_counter() + 30  # the server logs the error after answering
    while expected not in server.log_text()[log_start:] and time.perf_counter() < deadline:
        time.sleep(0.5)
    log = server.log_text()[log_start:]
    assert re.search(r"ValueError: \S+: " + re.escape(expected), log), log[-4000:]


@pytest.mark.parametrize("name", BUNDLES_3D[1:] + BUNDLES_2D)
def test_train_from_slicer_labels(server: Server, name: str, tmp_path: Path) -> None:
    """A training request as the plugin sends it (run_id "", val_split 0.2) trains once from the submitted label
    maps (2D: a ``(W, H, 1)`` NIfTI and a PNG label), validates on one study, and rewrites models/model.pt with the
    validated weights (the packaged random ones are no validated model), which inference then uses."""
    model = server.app / "model" / name / "models" / "model.pt"
    before = torch.load(model, map_location="cpu", weights_only=True)
    log = _train(server, name, max_epochs=1)
    assert "Total Records for Training: 2" in log and "Total Records for Validation: 1" in log, log[-4000:]
    assert "new best, saved as" in log, log[-4000:]
    after = torch.load(model, map_location="cpu", weights_only=True)
    after = after.get("model", after) if isinstance(after, dict) and "model" in after else after
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before), "models/model.pt was not rewritten by training"
    if name in BUNDLES_3D:
        response = _infer(server, name, params={"image": UNLABELLED_CASE})
    else:
        with open(server.inputs[name], "rb") as f:
            response = _infer(server, name, files={"file": (server.inputs[name].name, f)})
    assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\n{server.log_tail()}"
    _slicer_segments(_channel_names(name), _read_result(response, tmp_path)[0])


@pytest.mark.parametrize("name", ["arunet3d"])
def test_train_then_train_again_then_infer(server: Server, name: str, tmp_path: Path) -> None:
    """Training from MONAI Label's datalist (labels/final) finishes and writes models/model.pt, which inference uses.

    The first request (run_id "", as the plugin sends it) runs 5 epochs and validates (``val_interval`` = 5), and the
    best validated model becomes model.pt; the second (run_id "run") runs 2 epochs as a new run from the finished
    one's weights, validates after its last epoch, and model.pt is then the better validated model of the two
    (docs/monai_label.md, "Train from 3D Slicer").
    """
    model = server.app / "model" / name / "models" / "model.pt"
    before = torch.load(model, map_location="cpu", weights_only=True)
    log = _train(server, name, max_epochs=5)
    assert "Total Records for Training: 2" in log and "Total Records for Validation: 1" in log
    assert "Epoch: 5/5" in log and "new best, saved as" in log, log[-4000:]

    after = torch.load(model, map_location="cpu", weights_only=True)
    after = after.get("model", after) if isinstance(after, dict) and "model" in after else after
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before), "models/model.pt was not rewritten by training"
    assert (model.parent / "checkpoint_last.pt").is_file()

    # a second, shorter request trains again instead of resuming the finished run; model.pt stays a validated model
    log = _train(server, name, max_epochs=2, run_id="run")
    assert "is from a finished run (5 epochs): starting a new run of 2 epochs" in log, log[-4000:]
    assert "Epoch: 2/2" in log and ("new best, saved as" in log or "stays the model of epoch" in log), log[-4000:]
    record = json.loads(model.with_suffix(".json").read_text())
    assert record["kind"] == "validated", record

    # the inference task reloads the changed checkpoint; its labels still reach their segments
    response = _infer(server, name, params={"image": UNLABELLED_CASE})
    assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\n{server.log_tail()}"
    pred, _ = _read_result(response, tmp_path)
    assert pred.shape == BRATS_SHAPE[::-1]  # ITK's (z, y, x)
    _slicer_segments(_channel_names(name), pred)
