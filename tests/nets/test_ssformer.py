"""Tests of SSFormer: argument checks, the MiT-B2 encoder's parameter count and strict loading of reference-named
checkpoints. Shapes and gradients in 2D and 3D, size checks, the published parameter counts, TorchScript and ONNX
parity: ``tests/nets/test_network_contract.py``; its Mix Transformer blocks (encoder strides, the attention formula):
``tests/blocks/test_mix_transformer.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from custom_nets.nets import SSFormer
from network_registry import n_params

# one block per stage, narrow widths: sizes divisible by 32 still, a forward pass in milliseconds
TINY = {"depths": (1, 1, 1, 1), "embed_dims": (8, 16, 32, 64), "num_heads": (1, 1, 2, 2), "decoder_channels": 16}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="variant"):
        SSFormer(2, 3, 1, variant="M")
    with pytest.raises(ValueError, match="spatial_dims"):
        SSFormer(1, 3, 1)
    with pytest.raises(ValueError, match="depths must be four"):
        SSFormer(2, 3, 1, depths=(1, 1, 1))
    with pytest.raises(ValueError, match="multiple of its number of heads"):
        SSFormer(2, 3, 1, **{**TINY, "num_heads": (3, 1, 2, 2)})


def test_mit_b2_encoder_parameter_count() -> None:
    """SSFormer-S's encoder is MiT-B2 (the whole networks' published counts: the contract)."""
    with torch.device("meta"):
        assert n_params(SSFormer(2, 3, 1, variant="S").backbone) == 24_196_288


# ----------------------------------------------------------------------------------------------------------------------
# strict loading of reference-named checkpoints
# ----------------------------------------------------------------------------------------------------------------------


def _reference_names(variant: str) -> dict[str, tuple[int, ...]]:
    """Every parameter / buffer name and shape of the reference's ``mit_PLD_b2`` (S) / ``mit_PLD_b4`` (L), 1 class,
    written out from its source: MiT encoder ``backbone.*`` and decoder ``decode_head.*`` including ``linear_fuse``."""
    names: dict[str, tuple[int, ...]] = {}
    dims, srs = (64, 128, 320, 512), (8, 4, 2, 1)
    depths = {"S": (3, 4, 6, 3), "L": (3, 8, 27, 3)}[variant]
    inputs = (3, 64, 128, 320)
    for s in range(4):
        kernel = 7 if s == 0 else 3
        pe = f"backbone.patch_embed{s + 1}"
        names |= {f"{pe}.proj.weight": (dims[s], inputs[s], kernel, kernel), f"{pe}.proj.bias": (dims[s],)}
        names |= {f"{pe}.norm.weight": (dims[s],), f"{pe}.norm.bias": (dims[s],)}
        for j in range(depths[s]):
            b, d = f"backbone.block{s + 1}.{j}", dims[s]
            for norm in ("norm1", "norm2"):
                names |= {f"{b}.{norm}.weight": (d,), f"{b}.{norm}.bias": (d,)}
            names |= {f"{b}.attn.q.weight": (d, d), f"{b}.attn.q.bias": (d,)}
            names |= {f"{b}.attn.kv.weight": (2 * d, d), f"{b}.attn.kv.bias": (2 * d,)}
            names |= {f"{b}.attn.proj.weight": (d, d), f"{b}.attn.proj.bias": (d,)}
            if srs[s] > 1:
                names |= {f"{b}.attn.sr.weight": (d, d, srs[s], srs[s]), f"{b}.attn.sr.bias": (d,)}
                names |= {f"{b}.attn.norm.weight": (d,), f"{b}.attn.norm.bias": (d,)}
            names |= {f"{b}.mlp.fc1.weight": (4 * d, d), f"{b}.mlp.fc1.bias": (4 * d,)}
            names |= {f"{b}.mlp.dwconv.dwconv.weight": (4 * d, 1, 3, 3), f"{b}.mlp.dwconv.dwconv.bias": (4 * d,)}
            names |= {f"{b}.mlp.fc2.weight": (d, 4 * d), f"{b}.mlp.fc2.bias": (d,)}
        names |= {f"backbone.norm{s + 1}.weight": (dims[s],), f"backbone.norm{s + 1}.bias": (dims[s],)}
        le = f"decode_head.linear_c{s + 1}"
        names |= {f"{le}.proj.0.weight": (256, dims[s], 3, 3), f"{le}.proj.2.weight": (256, 256, 3, 3)}
    for fuse, width in (("linear_fuse", 1024), ("linear_fuse34", 512), ("linear_fuse2", 512), ("linear_fuse1", 512)):
        m = f"decode_head.{fuse}"
        names |= {f"{m}.conv.weight": (256, width, 1, 1), f"{m}.bn.num_batches_tracked": ()}
        names |= {f"{m}.bn.{p}": (256,) for p in ("weight", "bias", "running_mean", "running_var")}
    names |= {"decode_head.linear_pred.weight": (1, 256, 1, 1), "decode_head.linear_pred.bias": (1,)}
    return names


def _random_state(names: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        k: (torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(shape, generator=generator))
        for k, shape in names.items()
    }


def test_loads_a_reference_ssformer_checkpoint_strictly(tmp_path: Path) -> None:
    state = _random_state(_reference_names("S"))
    path = tmp_path / "ssformer_S.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # DataParallel-wrapped
    net = SSFormer(2, 3, 1, variant="S", pretrained_checkpoint=str(path))
    loaded = net.state_dict()
    unused = [k for k in state if k.startswith("decode_head.linear_fuse.")]
    assert len(unused) == 6 and not any(k in loaded for k in unused)
    assert set(loaded) == set(state) - set(unused)
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key


def test_loads_an_imagenet_mit_checkpoint_into_the_encoder_only(tmp_path: Path) -> None:
    names = {k[len("backbone."):]: s for k, s in _reference_names("L").items() if k.startswith("backbone.")}
    names |= {"head.weight": (1000, 512), "head.bias": (1000,)}  # SegFormer's ImageNet classifier
    state = _random_state(names)
    torch.manual_seed(0)
    net = SSFormer(2, 3, 1, variant="L")
    decoder_before = {k: v.clone() for k, v in net.decode_head.state_dict().items()}
    assert net.load_pretrained(state) is net
    for key, value in net.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    for key, value in net.decode_head.state_dict().items():
        assert torch.equal(value, decoder_before[key]), key


def test_mismatched_checkpoints_give_one_clear_line_and_load_nothing(tmp_path: Path) -> None:
    mit_b4 = {k[len("backbone."):]: s for k, s in _reference_names("L").items() if k.startswith("backbone.")}
    net = SSFormer(2, 3, 1, variant="S")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path = tmp_path / "mit_b4.pth"
    torch.save(_random_state(mit_b4), path)
    with pytest.raises(ValueError) as error:  # an L (MiT-B4) encoder into S: extra blocks
        net.load_pretrained(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "ImageNet MiT encoder" in message
    assert "unexpected (" in message and "block2.4.attn.q.weight" in message and "missing" not in message
    full = _random_state(_reference_names("S"))
    del full["backbone.block1.0.attn.q.weight"], full["decode_head.linear_pred.bias"]
    full["decode_head.extra.weight"] = torch.zeros(1)
    full["backbone.norm4.weight"] = torch.zeros(3)
    expected = (
        r"missing \(2\): backbone\.block1\.0\.attn\.q\.weight, decode_head\.linear_pred\.bias; "
        r"unexpected \(1\): decode_head\.extra\.weight; wrong shape \(1\): backbone\.norm4\.weight \[3\] vs \[512\]"
    )
    with pytest.raises(ValueError, match=expected):
        net.load_pretrained(full)
    with pytest.raises(ValueError, match="not found"):
        net.load_pretrained(tmp_path / "missing.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pth: cannot read"):
        net.load_pretrained(tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="wrong shape"):  # one input channel: the first patch embedding differs
        SSFormer(2, 1, 1, variant="S").load_pretrained(_random_state(_reference_names("S")))
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed by a failed load"
