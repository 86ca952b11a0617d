"""Encoders: shapes, unit norm, torchvision-compatible names and `--init-weights` loading."""
from __future__ import annotations

import argparse
import re

import pytest
import torch

from radsim.data_contracts import UsageError
from radsim.model.encoders import BACKBONES, build_backbone, build_encoder, load_init_weights


@pytest.mark.parametrize("backbone,size", [("small", 128), ("resnet18", 64), ("resnet50", 64), ("densenet121", 64)])
def test_shapes_and_unit_norm(backbone, size):
    torch.manual_seed(0)
    model = build_encoder(backbone, embedding_dim=16).eval()
    with torch.no_grad():
        z = model(torch.randn(3, 1, size, size))
    assert z.shape == (3, 16) and z.dtype == torch.float32
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    assert model.config() == {"backbone": backbone, "embedding_dim": 16, "in_channels": 1}


# torchvision's published parameter counts minus the 1000-class head (fc / classifier).
@pytest.mark.parametrize("backbone,count", [("resnet18", 11_689_512 - 513_000), ("resnet50", 25_557_032 - 2_049_000),
                                            ("densenet121", 7_978_856 - 1_025_000)])
def test_rgb_backbones_have_torchvision_parameter_counts(backbone, count):
    assert sum(p.numel() for p in build_backbone(backbone, in_channels=3).parameters()) == count


def test_torchvision_key_names():
    assert {"conv1.weight", "layer1.0.bn1.running_mean", "layer2.0.downsample.0.weight",
            "layer4.1.bn2.num_batches_tracked"} <= set(build_backbone("resnet18").state_dict())
    assert {"layer3.5.conv3.weight", "layer4.0.downsample.1.running_var"} <= set(
        build_backbone("resnet50").state_dict()
    )
    assert {
        "features.conv0.weight",
        "features.denseblock3.denselayer24.conv2.weight",
        "features.transition3.conv.weight",
        "features.norm5.bias",
    } <= set(build_backbone("densenet121").state_dict())


def test_unknown_backbone_is_a_usage_error():
    with pytest.raises(UsageError, match="resnet18"):
        build_encoder("vgg16")
    assert BACKBONES == ("small", "resnet18", "resnet50", "densenet121")


def _torchvision_style_file(tmp_path, backbone="resnet18"):
    """A state dict as torchvision saves it: RGB first conv plus the classifier head."""
    torch.manual_seed(1)
    rgb = build_backbone(backbone, in_channels=3)
    for m in rgb.modules():  # non-trivial BN statistics so that loading them is observable
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = dict(rgb.state_dict())
    head = "fc" if backbone.startswith("resnet") else "classifier"
    state[f"{head}.weight"] = torch.randn(1000, rgb.out_channels)
    state[f"{head}.bias"] = torch.zeros(1000)
    path = tmp_path / f"{backbone}.pth"
    torch.save(state, path)
    return rgb, state, path


def test_torchvision_state_dict_loads_with_first_conv_summed(tmp_path):
    rgb, state, path = _torchvision_style_file(tmp_path)
    model = build_encoder("resnet18")
    report = load_init_weights(model, path)
    assert report.ok, report.summary()
    assert report.adapted and report.adapted[0].startswith("conv1.weight")
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.backbone.layer3[1].conv2.weight,
                       state["layer3.1.conv2.weight"])
    # A gray image through the summed conv equals the same image replicated to RGB.
    model.eval(), rgb.eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.backbone(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-4)


def test_mismatched_and_missing_keys_are_reported(tmp_path):
    _, state, path = _torchvision_style_file(tmp_path)
    del state["layer2.0.bn1.weight"]
    state["layer4.1.conv2.weight"] = torch.randn(512, 512, 1, 1)
    state["extra.weight"] = torch.randn(3)
    torch.save(state, path)
    report = load_init_weights(build_encoder("resnet18"), path)
    assert not report.ok
    assert report.missing == ["layer2.0.bn1.weight"]
    assert report.unexpected == ["extra.weight"]
    assert report.mismatched == [("layer4.1.conv2.weight", (512, 512, 1, 1), (512, 512, 3, 3))]
    text = report.summary()
    assert "layer2.0.bn1.weight" in text and "layer4.1.conv2.weight" in text and "extra.weight" in text
    with pytest.raises(UsageError, match="layer4.1.conv2.weight"):
        load_init_weights(build_encoder("resnet18"), path, strict=True)


def test_old_densenet_key_style_and_wrapped_ddp_checkpoint_load(tmp_path):
    _, state, _ = _torchvision_style_file(tmp_path, "densenet121")
    old = {"module." + re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()}
    assert any(".norm.1." in k for k in old)
    path = tmp_path / "old.pth"
    torch.save({"state_dict": old}, path)
    report = load_init_weights(build_encoder("densenet121"), path)
    assert report.ok, report.summary()
    assert report.adapted[0].startswith("features.conv0.weight")


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_init_weights(build_encoder("resnet18"), tmp_path / "nope.pth")
    _, _, resnet_file = _torchvision_style_file(tmp_path)
    with pytest.raises(UsageError, match="no tensor .* matches"):
        load_init_weights(build_encoder("densenet121"), resnet_file)
    pickled = tmp_path / "object.pth"
    torch.save({"args": argparse.Namespace(a=1)}, pickled)
    with pytest.raises(UsageError, match="weights_only"):
        load_init_weights(build_encoder("resnet18"), pickled)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="cannot read|weights_only"):
        load_init_weights(build_encoder("resnet18"), garbage)
