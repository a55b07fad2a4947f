"""UNet3D: shapes, config round trip, input checks, save/load, instance norm and memory format equivalence."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from AorticRootLandmarksLib.network import UNet3D, _norm, count_parameters  # noqa: E402


def small(**kwargs):
    torch.manual_seed(0)
    return UNet3D(**{"features": (4, 8, 16), **kwargs}).eval()


@pytest.mark.parametrize(
    "kwargs, size",
    [
        ({}, (16, 24, 8)),  # stem_stride 2, 3 levels: multiple of 2 * 4 = 8
        (dict(stem_stride=1), (12, 8, 4)),  # full resolution: multiple of 4
        (dict(down="conv", up="trilinear"), (8, 8, 16)),
        (dict(norm="batch", out_channels=2), (8, 16, 8)),
        (dict(norm="none", restore_channels=3), (8, 8, 8)),
    ],
)
def test_output_shape(kwargs, size):
    net = small(**kwargs)
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, net.config()["out_channels"], *size)
    assert net.size_multiple == {1: 4, 2: 8}[net.config()["stem_stride"]]


def test_default_network_on_a_default_grid_shape():
    net = UNet3D().eval()
    assert net.size_multiple == 16  # 128 x 128 x 80 fits
    assert net.config()["features"] == [16, 32, 64, 128]
    with torch.no_grad():
        assert net(torch.rand(1, 1, 16, 32, 16)).shape == (1, 3, 16, 32, 16)


def test_config_round_trip_through_json():
    net = small(out_channels=5, stem_stride=1, down="conv", negative_slope=0.2)
    config = json.loads(json.dumps(net.config()))
    clone = UNet3D(**config)
    assert clone.config() == net.config()
    assert {k: v.shape for k, v in clone.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    assert count_parameters(clone) == count_parameters(net) > 0


@pytest.mark.parametrize("size", [(12, 16, 16), (16, 16, 20), (4, 8, 8)])
def test_bad_size_raises(size):
    net = small()  # needs multiples of 8
    with pytest.raises(ValueError, match="multiple of 8"):
        net(torch.rand(1, 1, *size))


def test_bad_input_channels_raise():
    with pytest.raises(ValueError, match=r"\(B, 1, X, Y, Z\)"):
        small()(torch.rand(1, 2, 8, 8, 8))


@pytest.mark.parametrize(
    "kwargs",
    [dict(features=(8,)), dict(norm="layer"), dict(down="avg"), dict(up="nearest"), dict(stem_stride=4)],
)
def test_bad_constructor_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        UNet3D(**kwargs)


def test_state_dict_round_trip_weights_only(tmp_path):
    net = small()
    x = torch.rand(1, 1, 8, 16, 8)
    with torch.no_grad():
        expected = net(x)
    torch.save(net.state_dict(), tmp_path / "fold0.pt")
    clone = UNet3D(**net.config()).eval()
    clone.load_state_dict(torch.load(tmp_path / "fold0.pt", weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(clone(x), expected, rtol=0, atol=0)
    # and a fresh network differs, so the comparison above can fail
    torch.manual_seed(1)
    with torch.no_grad():
        assert not torch.allclose(UNet3D(**net.config()).eval()(x), expected)


def test_instance_norm_is_instance_norm():
    norm = _norm("instance", 3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    x = torch.randn(2, 3, 4, 5, 6) * 3 + 1
    expected = torch.nn.functional.instance_norm(x, weight=norm.weight, bias=norm.bias, eps=1e-5)
    torch.testing.assert_close(norm(x), expected, rtol=1e-5, atol=1e-5)


def test_channels_last_gives_the_same_output():
    net = small()
    x = torch.rand(1, 1, 16, 8, 8)
    with torch.no_grad():
        expected = net(x)
        net_cl = net.to(memory_format=torch.channels_last_3d)
        got = net_cl(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_every_parameter_gets_a_gradient():
    net = small().train()
    # 16^3: the deepest level is 2x2x2 (at 1x1x1 instance norm would output its bias, with no weight gradient)
    net(torch.rand(2, 1, 16, 16, 16)).square().mean().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_output_can_peak_on_any_full_resolution_voxel():
    # the restore transposed conv gives each of the 8 children of a coarse voxel its own weights, so a full-grid
    # map peaking on an odd voxel is reachable: the network fits a one-voxel spike in 60 steps (10/10 seeds
    # tried, margin > 70 of 100; with 4 base channels 1 seed in 10 got stuck, hence 8)
    torch.manual_seed(0)
    net = UNet3D(features=(8, 16, 32)).train()
    x = torch.rand(1, 1, 16, 16, 16)
    target = torch.zeros(1, 3, 16, 16, 16)
    target[0, :, 3, 5, 1] = 100.0
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        (net(x) - target).square().mean().backward()
        optimizer.step()
    with torch.no_grad():
        y = net(x)[0, 0]
    assert int(y.argmax()) == (3 * 16 + 5) * 16 + 1


def test_per_landmark_networks_are_independent():
    """One U-Net per landmark: output k depends only on network k's weights, and build_network rebuilds it."""
    from AorticRootLandmarksLib.network import PerLandmarkUNets, build_network

    torch.manual_seed(0)
    net = PerLandmarkUNets(in_channels=1, out_channels=3, features=(4, 8))
    x = torch.rand(1, 1, 8, 8, 8)
    out = net(x)
    assert out.shape == (1, 3, 8, 8, 8)
    out[:, 1].sum().backward()
    grads = [sum(float(p.grad.abs().sum()) for p in sub.parameters() if p.grad is not None) for sub in net.nets]
    assert grads[0] == 0 and grads[2] == 0 and grads[1] > 0  # no shared weights: no competition
    clone = build_network(net.config())
    clone.load_state_dict(net.state_dict())
    torch.testing.assert_close(clone(x), out.detach())
    assert isinstance(build_network({"in_channels": 1, "out_channels": 2, "features": [4, 8]}), UNet3D)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network({"architecture": "transformer"})
