"""On/off options from a bundle's command line: ``--cgm false`` must switch the option off, not on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from custom_nets.flags import as_flag
from custom_nets.handlers import ResumableCheckpoint
from custom_nets.handlers_gi import RLESubmissionWriter
from custom_nets.losses.hybrid import UNet3PlusLoss
from custom_nets.nets import UNet3Plus

REPO = Path(__file__).resolve().parents[1]


def test_command_line_parser_keeps_lowercase_false_as_text() -> None:
    """The premise: MONAI's bundle CLI (python-fire) hands ``--cgm false`` over as the truthy string "false"."""
    from fire import parser

    assert parser.DefaultParseValue("false") == "false" and bool("false")
    assert parser.DefaultParseValue("False") is False


@pytest.mark.parametrize("value", [True, 1, "true", "True", " YES ", "on", "1"])
def test_as_flag_true(value) -> None:
    assert as_flag(value, "x") is True


@pytest.mark.parametrize("value", [False, 0, None, "false", "False", "no", "OFF", "0", "none", ""])
def test_as_flag_false(value) -> None:
    assert as_flag(value, "x") is False


@pytest.mark.parametrize("value", ["maybe", 2, -1, [True], 0.5])
def test_as_flag_rejects_other_values_naming_the_option(value) -> None:
    with pytest.raises(ValueError, match="cgm must be true or false"):
        as_flag(value, "cgm")


def test_bundle_override_cgm_false_builds_a_network_without_cgm(tmp_path: Path) -> None:
    """The unet3plus train config with the override a user types (``--cgm false``): no CGM in network or loss.

    The network's channels come from the task (the demo task's: 3 stacked slices), which training records in
    ``<bundle_root>/models``: a temporary bundle root keeps the repository's bundle untouched."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(REPO / "bundles" / "unet3plus" / "configs" / "train.json")
    parser.update({"bundle_root": str(tmp_path), "cgm": "false", "network_def#channels": [4, 8, 16],
                   "network_def#skip_channels": 4})
    net = parser.get_parsed_content("network_def")
    loss = parser.get_parsed_content("loss")
    assert net.use_cgm is False and len(net.cgm) == 0 and loss.cgm is False
    net.train()
    out = net(torch.randn(2, parser.get_parsed_content("task").in_channels, 32, 32))
    assert out.shape[1] == len(net.ds_heads) + 1  # deep-supervision heads and the output, no presence head
    parser.update({"cgm": "true"})
    parser.parse(reset=True)
    assert parser.get_parsed_content("network_def").use_cgm is True


def test_handlers_read_flags(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 2)
    assert ResumableCheckpoint(tmp_path, {"model": net}, resume="false").resume is False
    assert ResumableCheckpoint(tmp_path, {"model": net}, resume="True").resume is True
    with pytest.raises(ValueError, match="resume"):
        ResumableCheckpoint(tmp_path, {"model": net}, resume="sometimes")
    assert RLESubmissionWriter(tmp_path, enabled="false").enabled is False
    assert UNet3PlusLoss(cgm="no").cgm is False
    with pytest.raises(ValueError, match="UNet3Plus cgm"):
        UNet3Plus(cgm="perhaps")
