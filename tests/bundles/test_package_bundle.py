"""``scripts/package_bundle.py``: a packaged bundle runs with only ``requirements.txt`` installed, from anywhere.

"Without custom_nets installed" is reproduced in a subprocess started with ``python -S`` and the virtual environment's
site-packages on ``PYTHONPATH``: every installed package imports, but the editable install of ``custom_nets`` (a
``.pth`` import hook, which ``-S`` skips) does not, and the working directory is unrelated to the repository. Each test
first checks that ``import custom_nets`` really fails there.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO, bundle_names, copy_bundle, save_random_weights

from custom_nets.packaging import PackageError, package_bundle, vendor_configs

SCRIPT = REPO / "scripts" / "package_bundle.py"
SCHEMA = REPO / "custom_nets" / "schemas" / "meta_schema.json"
TINY_3D = ["--network_def#channels", "[8,16,32,64]", "--roi_size", "[32,32,32]", "--num_workers", "0"]


def run_without_custom_nets(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -S <args>`` with the venv's packages importable but ``custom_nets`` not installed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(site.getsitepackages()), PYTHONWARNINGS="ignore",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))  # fmt: skip
    result = subprocess.run([sys.executable, "-S", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"python -S {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def assert_custom_nets_not_importable(cwd: Path) -> None:
    probe = run_without_custom_nets(["-c", "import importlib.util as u; print(u.find_spec('custom_nets') is None)"], cwd)
    assert probe.stdout.strip() == "True", "custom_nets is importable in the isolated interpreter: the test proves nothing"


# ----------------------------------------------------------------------------------------------------- config rewrite
def test_vendor_configs_rewrites_names_into_references() -> None:
    config = {
        "imports": ["$import os", "$import custom_nets"],
        "bundle_root": "$custom_nets.bundle.bundle_root()",
        "device": "$custom_nets.bundle.default_device()",
        "network_def": {"_target_": "custom_nets.nets.ARUNet", "spatial_dims": 3},
        "loss": {"_target_": "DiceLoss", "_requires_": "@network_def", "text": "$'custom_nets.x' + my_custom_nets.y"},
    }
    out = vendor_configs(config, locator_source="LOCATOR")
    assert out["imports"] == ["$import os"]
    assert out["_bundle_locator"] == "LOCATOR"
    assert "import" not in out["bundle_root"] and "import" not in out["custom_nets"], "MONAI would ast.parse these"
    assert "@_bundle_locator" in out["bundle_root"] and "@bundle_root" in out["custom_nets"]
    assert out["device"] == "$@custom_nets.bundle.default_device()"
    assert out["network_def"]["_requires_"] == "@custom_nets"
    assert "_requires_" not in config["network_def"], "the input must not be modified"
    assert out["loss"]["_requires_"] == "@network_def", "a MONAI target needs no vendored import"
    assert out["loss"]["text"] == "$'custom_nets.x' + my_custom_nets.y", "quoted strings and longer names are kept"
    plain = {"device": "$torch.device('cpu')"}
    assert vendor_configs(plain, "LOCATOR") == plain


def test_vendor_configs_refuses_submodule_imports() -> None:
    with pytest.raises(PackageError, match="from custom_nets.nets import ARUNet"):
        vendor_configs({"imports": ["$from custom_nets.nets import ARUNet"]}, "LOCATOR", where="train.json")


# ------------------------------------------------------------------------------------------------- layout and errors
def test_package_layout_zip_metadata_and_errors(tmp_path: Path) -> None:
    bundle = copy_bundle("arunet3d", tmp_path)
    checkpoint = save_random_weights(bundle, {"network_def#channels": [8, 16, 32, 64]})
    out = tmp_path / "dist"
    result = subprocess.run([sys.executable, str(SCRIPT), str(bundle), "-o", str(out), "--name", "arunet3d"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    package = out / "arunet3d"
    for relative in ["configs/metadata.json", "configs/inference.json", "configs/train.json", "configs/logging.conf",
                     "docs/README.md", "LICENSE", "large_files.yml", "models/model.pt", "custom_nets/__init__.py",
                     "custom_nets/nets/arunet.py", "custom_nets/locate.py"]:  # fmt: skip
        assert (package / relative).is_file(), f"{relative} missing from the package"
    assert not list(package.rglob("__pycache__")), "compiled files must not be shipped"
    shipped = torch.load(package / "models" / "model.pt", weights_only=True)
    original = torch.load(checkpoint, weights_only=True)
    assert shipped.keys() == original.keys() and all(torch.equal(shipped[k], original[k]) for k in original)

    metadata = json.loads((package / "configs" / "metadata.json").read_text())
    assert "custom-nets" not in metadata["required_packages_version"], "the package must not ask for custom-nets"
    assert metadata["vendored_packages"] == {"custom_nets": "0.1.0"}
    jsonschema.validate(metadata, json.loads(SCHEMA.read_text()))

    archive = out / f"arunet3d_v{metadata['version']}.zip"
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    assert {"arunet3d/configs/metadata.json", "arunet3d/models/model.pt", "arunet3d/custom_nets/__init__.py"} <= names
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"

    again = subprocess.run([sys.executable, str(SCRIPT), str(bundle), "-o", str(out), "--name", "arunet3d"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    package_bundle(bundle, out, name="arunet3d", overwrite=True)

    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(PackageError, match="broken.pt: not a readable PyTorch checkpoint"):
        package_bundle(bundle, tmp_path / "other", checkpoint=broken)
    with pytest.raises(PackageError, match="not a bundle folder"):
        package_bundle(tmp_path, tmp_path / "other")
    assert not (tmp_path / "other" / bundle.name).exists(), "a failed run must leave no package"


def test_packages_carry_a_checksum_manifest_verified_on_load(tmp_path: Path) -> None:
    """CHECKSUMS.sha256 lists every file (sha256sum -c format); batch inference refuses a changed package."""
    import shutil

    from custom_nets.inference.errors import SetupError
    from custom_nets.inference.model import find_bundle
    from custom_nets.packaging import MANIFEST_NAME, verify_manifest

    bundle = copy_bundle("arunet3d", tmp_path)
    save_random_weights(bundle, {"network_def#channels": [8, 16, 32, 64]})
    packaged = package_bundle(bundle, tmp_path / "dist", name="arunet3d")
    listed = {line.split("  ", 1)[1] for line in (packaged.folder / MANIFEST_NAME).read_text().splitlines()}
    files = {p.relative_to(packaged.folder).as_posix() for p in packaged.folder.rglob("*") if p.is_file()}
    assert listed == files - {MANIFEST_NAME} and "configs/inference.json" in listed and "models/model.pt" in listed
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "--check", "--quiet", MANIFEST_NAME], cwd=packaged.folder)
        assert check.returncode == 0
    assert verify_manifest(packaged.folder) is None
    assert find_bundle(packaged.archive, tmp_path / "unzipped").root.name == "arunet3d"

    tampered = tmp_path / "tampered.zip"  # one config changed after packaging (e.g. a $-expression added)
    with zipfile.ZipFile(packaged.archive) as source, zipfile.ZipFile(tampered, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("configs/inference.json"):
                data = data.replace(b'"imports": [', b'"x": "$print(1)",\n    "imports": [', 1)
            target.writestr(item, data)
    with pytest.raises(SetupError, match=r"configs/inference.json does not match its SHA-256 in CHECKSUMS.sha256"):
        find_bundle(tampered, tmp_path / "tampered")

    (packaged.folder / "models" / "model.pt").write_bytes(b"retrained")  # training rewrites models/: not checked
    assert verify_manifest(packaged.folder) is None
    (packaged.folder / "custom_nets" / "added.py").write_text("print('code nobody packaged')\n")
    assert verify_manifest(packaged.folder) == f"custom_nets/added.py is not listed in {MANIFEST_NAME}"
    (packaged.folder / "custom_nets" / "added.py").unlink()
    (packaged.folder / "configs" / "inference.json").unlink()
    assert "configs/inference.json is listed" in verify_manifest(packaged.folder)


# ------------------------------------------------------------------------------------- runs without custom_nets
def test_packaged_3d_bundle_infers_verifies_and_exports_without_custom_nets(tmp_path: Path, elsewhere: Path) -> None:
    from custom_nets.data.brats import generate_brats_demo

    bundle = copy_bundle("arunet3d", tmp_path)
    checkpoint = save_random_weights(bundle, {"network_def#channels": [8, 16, 32, 64]})
    package = package_bundle(bundle, tmp_path / "dist", name="arunet3d").folder
    configs = package / "configs"
    assert_custom_nets_not_importable(elsewhere)

    cases = generate_brats_demo(tmp_path / "cases", num_cases=2, shape=(40, 36, 32))
    output = tmp_path / "predictions"
    run_without_custom_nets(
        ["-m", "monai.bundle", "run", "--config_file", str(configs / "inference.json"), "--dataset_dir", str(cases),
         "--output_dir", str(output), *TINY_3D], cwd=elsewhere,
    )  # fmt: skip
    for case in ("DEMO_000", "DEMO_001"):
        image = nib.load(cases / case / f"{case}_flair.nii.gz")
        pred = nib.load(output / f"{case}_seg.nii.gz")
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 3}  # BraTS 2023 values: ET is 3
    assert not any(elsewhere.iterdir()), "outputs leaked into the working directory"

    run_without_custom_nets(
        ["-m", "monai.bundle", "verify_net_in_out", "network_def", "--config_file", str(configs / "inference.json"),
         "--meta_file", str(configs / "metadata.json"), *TINY_3D[:2]], cwd=elsewhere,
    )  # fmt: skip
    exported = tmp_path / "model.ts"
    run_without_custom_nets(
        ["-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(exported),
         "--ckpt_file", str(package / "models" / "model.pt"), "--meta_file", str(configs / "metadata.json"),
         "--config_file", str(configs / "inference.json"), *TINY_3D[:2]], cwd=elsewhere,
    )  # fmt: skip
    from custom_nets.nets.arunet import ARUNet

    eager = ARUNet(spatial_dims=3, in_channels=4, out_channels=3, channels=(8, 16, 32, 64), deep_supervision=False)
    eager.load_state_dict(torch.load(checkpoint, weights_only=True))
    eager.eval()
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        difference = (torch.jit.load(str(exported))(x) - eager(x)).abs().max().item()
    assert difference < 1e-4, f"TorchScript export of the packaged bundle differs from eager by {difference}"
    embedded = {"metadata.json": "", "inference.json": ""}
    torch.jit.load(str(exported), _extra_files=embedded)
    assert json.loads(embedded["metadata.json"])["vendored_packages"] == {"custom_nets": "0.1.0"}
    assert "_bundle_locator" in json.loads(embedded["inference.json"]), "the packaged config is embedded"


def test_packaged_own_data_model_infers_with_its_task(tmp_path: Path) -> None:
    """A model trained on own data (2 channels, 2 labels: models/task.json beside model.pt) is packaged with its task
    (and plans.json), its metadata describes that task, and the package segments the data's nnU-Net-named test images
    with the task's channels and label values, no override needed."""
    from custom_nets.data import read_dataset
    from custom_nets.data.dataset import prepare_task
    from custom_nets.data.synthetic import make_synthetic_dataset
    from custom_nets.inference.cli import main
    from custom_nets.planning import PLANS_FILE, plan_dataset

    data = make_synthetic_dataset(tmp_path / "own", num_channels=2, num_labels=2, num_cases=2, num_test=1,
                                  shape=(24, 20, 12))
    bundle = copy_bundle("arunet3d", tmp_path)
    dataset = read_dataset(data)
    task = prepare_task(dataset.task, bundle / "models")
    plan = plan_dataset(dataset, bundle / "models" / PLANS_FILE, progress=False)  # as the first training run does
    save_random_weights(bundle, {"network_def#channels": [4, 8, 16, 32]})
    package = package_bundle(bundle, tmp_path / "dist", name="own", make_zip=False).folder

    assert json.loads((package / "models" / "task.json").read_text()) == task.to_dict()
    assert json.loads((package / "models" / PLANS_FILE).read_text()) == plan
    metadata = json.loads((package / "configs" / "metadata.json").read_text())
    image = metadata["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 2 and image["channel_def"] == {"0": "MR0", "1": "MR1"}
    assert metadata["label_values"] == {"1": task.label_names[0], "2": task.label_names[1]}
    assert "input_channel_suffixes" not in metadata  # BraTS file names do not name these channels

    output = tmp_path / "out"
    assert main(["--bundle", str(package), "-i", str(data / "imagesTs"), "-o", str(output), "--trust", "--no-progress",
                 "--override", "network_def#channels=[4,8,16,32]", "--override", "inference_roi_size=[32,32,32]"]) == 0
    (case,) = [p.name[: -len("_0000.nii.gz")] for p in (data / "imagesTs").glob("*_0000.nii.gz")]
    pred, image = nib.load(output / f"{case}.nii.gz"), nib.load(data / "imagesTs" / f"{case}_0000.nii.gz")
    assert pred.shape == image.shape and np.allclose(pred.affine, image.affine, atol=1e-5)
    assert set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("name", bundle_names())
def test_every_packaged_bundle_verifies_without_custom_nets(name: str, tmp_path: Path, elsewhere: Path) -> None:
    package = package_bundle(REPO / "bundles" / name, tmp_path / "dist", make_zip=False).folder
    configs = package / "configs"
    result = run_without_custom_nets(
        ["-m", "monai.bundle", "verify_net_in_out", "network_def", "--config_file", str(configs / "inference.json"),
         "--meta_file", str(configs / "metadata.json")], cwd=elsewhere,
    )  # fmt: skip
    assert "verified with no error" in result.stdout + result.stderr
    # every config that names custom_nets uses the vendored copy only through the rewritten items
    for config_path in configs.glob("*.json"):
        text = config_path.read_text()
        assert '"$import custom_nets"' not in text, f"{config_path.name} still imports custom_nets directly"
