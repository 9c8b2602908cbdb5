"""ForegroundSlidingWindowInferer: the sliding window on the nonzero box, pasted back exactly (issue #18)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from custom_nets.inferers import ForegroundSlidingWindowInferer, foreground_box

SHAPE = (40, 36, 28)
BOX = ((9, 31), (5, 22), (7, 19))  # the nonzero region of the test volume, [start, end) per axis


def _volume(batch: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(batch, 2, *SHAPE)
    region = (slice(None), slice(None), *[slice(s, e) for s, e in BOX])
    x[region] = torch.randn(x[region].shape, generator=gen)
    return x


def _conv_net(kernel: int) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Conv3d(2, 3, kernel, padding=kernel // 2)
    with torch.no_grad():
        net.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    return net.eval()


def test_foreground_box() -> None:
    x = _volume(batch=2)
    assert foreground_box(x) == ([s for s, _ in BOX], [e for _, e in BOX])
    assert foreground_box(x, margin=4) == ([5, 1, 3], [35, 26, 23])
    assert foreground_box(x, margin=20) == ([0, 0, 0], list(SHAPE))  # clipped to the volume
    x[1, 0, 39, 0, 0] = -3.0  # negative values count (a normalised image), any item of the batch
    assert foreground_box(x) == ([9, 0, 0], [40, 22, 19])
    assert foreground_box(torch.zeros(1, 2, *SHAPE)) is None


def test_paste_back_is_exact() -> None:
    """Inside the box: the sliding window on the cropped input; outside: the per-channel background value; geometry and
    metadata as the input's."""
    net = _conv_net(3)
    x = _volume()
    affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0]))
    image = MetaTensor(x, affine=affine)
    fast = ForegroundSlidingWindowInferer(roi_size=(16, 16, 16), sw_batch_size=2, overlap=0.25, mode="gaussian",
                                          margin=4)
    with torch.no_grad():
        out = fast(image, net)
        start, end = foreground_box(x, 4)
        region = (slice(None), slice(None), *[slice(s, e) for s, e in zip(start, end)])
        expected_inside = SlidingWindowInferer(roi_size=(16, 16, 16), sw_batch_size=2, overlap=0.25,
                                               mode="gaussian")(x[region], net)
    assert isinstance(out, MetaTensor) and out.shape == (1, 3, *SHAPE)
    torch.testing.assert_close(out.affine, image.affine)
    torch.testing.assert_close(out[region].as_tensor(), expected_inside, atol=0, rtol=0)
    outside = torch.ones(SHAPE, dtype=torch.bool)
    outside[tuple(slice(s, e) for s, e in zip(start, end))] = False
    for c, bias in enumerate((0.5, -1.0, 2.0)):  # far from the foreground a conv of zeros gives its bias
        values = out[0, c][outside]
        assert torch.all(values == values[0])
        assert float(values[0]) == pytest.approx(bias, abs=1e-6)
    labels = out.argmax(dim=1)
    assert torch.all(labels[0][outside] == 2)


@pytest.mark.parametrize("kernel", [1, 3])
def test_fast_path_agrees_with_the_whole_volume(kernel: int) -> None:
    """A network whose receptive field fits in the margin gives the same output through the foreground crop as through
    the whole-volume sliding window (one window covering the volume, so no window seams differ)."""
    net = _conv_net(kernel)
    x = _volume(batch=2)
    roi = SHAPE
    with torch.no_grad():
        reference = SlidingWindowInferer(roi_size=roi, sw_batch_size=1, overlap=0.5, mode="gaussian")(x, net)
        fast = ForegroundSlidingWindowInferer(roi_size=roi, sw_batch_size=1, overlap=0.5, mode="gaussian",
                                              margin=4)(x, net)
        off = ForegroundSlidingWindowInferer(roi_size=roi, overlap=0.5, mode="gaussian", crop_foreground=False)(x, net)
    assert fast.shape == reference.shape == (2, 3, *SHAPE)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(off, reference, atol=0, rtol=0)
    assert torch.equal(fast.argmax(dim=1), reference.argmax(dim=1))


def test_empty_input_is_background_and_the_network_runs_once_per_window() -> None:
    calls = []
    net = _conv_net(3)

    def counted(t: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(t.shape))
        return net(t)

    with torch.no_grad():
        out = ForegroundSlidingWindowInferer(roi_size=(16, 16, 16), overlap=0.0)(torch.zeros(1, 2, *SHAPE), counted)
    assert out.shape == (1, 3, *SHAPE)
    for c, bias in enumerate((0.5, -1.0, 2.0)):
        assert torch.allclose(out[0, c], torch.full(SHAPE, bias), atol=1e-6)
    assert calls == [(1, 2, 16, 16, 16)]  # one all-zero window, not the whole volume


def test_usable_from_a_config() -> None:
    parser = ConfigParser({"inferer": {"_target_": "custom_nets.inferers.ForegroundSlidingWindowInferer",
                                       "roi_size": [16, 16, 16], "sw_batch_size": 2, "overlap": 0.25,
                                       "mode": "gaussian", "margin": 2}})
    inferer = parser.get_parsed_content("inferer")
    assert isinstance(inferer, SlidingWindowInferer) and inferer.margin == 2 and inferer.crop_foreground
