"""CIFAR-style architectures: documented tap shapes, f = h o phi, training, known sizes."""

from __future__ import annotations

import math
from importlib import import_module

import pytest
import torch
import torch.nn.functional as F

from noisescope.models.resnet import build_preact_resnet18, build_resnet18, build_resnet34
from noisescope.models.vgg import build_vgg11, build_vgg16
from noisescope.models.vit import build_vit
from noisescope.models.wideresnet import build_wideresnet, build_wrn28
from noisescope.taps import capture

pytestmark = pytest.mark.usefixtures("one_thread")

def up(n: int, times: int) -> int:
    """Spatial size after ``times`` halvings that round up."""
    for _ in range(times):
        n = math.ceil(n / 2)
    return n


def resnet_shapes(c: int, h: int, w: int, k: int) -> dict[str, tuple[int, ...]]:
    del c
    return {
        "stem": (k, h, w),
        "stage1": (k, h, w),
        "stage2": (2 * k, up(h, 1), up(w, 1)),
        "stage3": (4 * k, up(h, 2), up(w, 2)),
        "stage4": (8 * k, up(h, 3), up(w, 3)),
        "pool": (8 * k,),
    }


def vgg_shapes(c: int, h: int, w: int, k: int) -> dict[str, tuple[int, ...]]:
    del c
    out = {f"block{i}": (k * m, up(h, i), up(w, i)) for i, m in enumerate((1, 2, 4, 8, 8), 1)}
    out["pool"] = (8 * k,)
    return out


def wrn_shapes(c: int, h: int, w: int, k: int) -> dict[str, tuple[int, ...]]:
    del c
    return {
        "stem": (16, h, w),
        "stage1": (16 * k, h, w),
        "stage2": (32 * k, up(h, 1), up(w, 1)),
        "stage3": (64 * k, up(h, 2), up(w, 2)),
        "pool": (64 * k,),
    }


def vit_shapes(c: int, h: int, w: int, k: int) -> dict[str, tuple[int, ...]]:
    del c
    t = 1 + (h // 4) * (w // 4)
    return {"embed": (t, k), "block1": (t, k), "block2": (t, k), "pool": (k,)}


# name -> (builder, tiny options, width in the shape formulas, documented tap shapes)
ARCHS = {
    "preact_resnet18": (build_preact_resnet18, {"width": 4}, 4, resnet_shapes),
    "resnet18": (build_resnet18, {"width": 4}, 4, resnet_shapes),
    "resnet34": (build_resnet34, {"width": 2}, 2, resnet_shapes),
    "vgg11": (build_vgg11, {"width": 4}, 4, vgg_shapes),
    "vgg16": (build_vgg16, {"width": 4}, 4, vgg_shapes),
    "wrn16": (build_wideresnet, {"depth": 10, "width": 1}, 1, wrn_shapes),
    "vit": (build_vit, {"width": 16, "depth": 2, "heads": 2}, 16, vit_shapes),
}
SHAPES = [(3, 32, 32), (1, 28, 28)]


@pytest.mark.parametrize("shape", SHAPES, ids=["cifar", "fmnist"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_taps_have_documented_shapes(arch: str, shape: tuple[int, int, int]) -> None:
    builder, opts, k, expected = ARCHS[arch]
    torch.manual_seed(0)
    model = builder(shape, 10, **opts).eval()
    seen: dict[str, tuple[int, ...]] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, o, n=n: seen.__setitem__(n, tuple(o.shape)))
        for n, m in model.taps().items()
    ]
    with torch.no_grad():
        logits = model(torch.randn(3, *shape))
    for h in handles:
        h.remove()
    want = {name: (3, *s) for name, s in expected(*shape, k).items()}
    assert seen == want
    assert list(model.taps()) == list(want)  # shallow to deep, as documented
    assert logits.shape == (3, 10)
    assert model.feature_tap == "pool"
    assert model.feature_dim == want["pool"][1]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_head_of_features_is_the_forward_pass(arch: str) -> None:
    builder, opts, _, _ = ARCHS[arch]
    torch.manual_seed(1)
    model = builder((3, 32, 32), 7, **opts)
    x = torch.randn(4, 3, 32, 32)
    # a few training steps so BatchNorm statistics and weights are not at their init values
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x), torch.arange(4)).backward()
        opt.step()
    model.eval()
    with torch.no_grad(), capture(model, [model.feature_tap]) as acts:
        logits = model(x)
        phi_tap = acts[model.feature_tap].clone()
        phi = model.features(x)
        h_phi = model.head(phi)
    torch.testing.assert_close(h_phi, logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(phi_tap, phi, rtol=1e-5, atol=1e-6)  # last tap = phi
    assert phi.shape == (4, model.feature_dim)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_architecture_learns_a_batch(arch: str) -> None:
    """A few Adam steps on one batch of random labels: the loss falls clearly."""
    builder, opts, _, _ = ARCHS[arch]
    torch.manual_seed(2)
    model = builder((3, 16, 16), 5, **opts)
    x, y = torch.randn(20, 3, 16, 16), torch.randint(0, 5, (20,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0], losses


def test_uint8_and_channelless_inputs_are_accepted() -> None:
    torch.manual_seed(3)
    model = build_preact_resnet18((28, 28), 10, width=2).eval()  # (H, W): one channel
    x = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        a = model(x)
        b = model(x.float().unsqueeze(1))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("builder", "kwargs"),
    [
        (build_preact_resnet18, {"width": 64}),
        (build_resnet18, {"width": 64}),
        (build_resnet34, {"width": 64}),
        (build_vgg16, {"width": 64}),
        (build_wrn28, {"width": 10}),
    ],
)
def test_standard_widths_have_the_published_parameter_counts(builder, kwargs) -> None:
    # Known CIFAR-10 sizes: PreActResNet18 11,171,146 (+1,024 for the final BatchNorm here),
    # ResNet18 11,173,962, ResNet34 21,282,122, VGG16-BN with one linear layer 14,728,266
    # (-4,224 conv biases, unused before BatchNorm here), WRN-28-10 36,479,194.
    known = {
        build_preact_resnet18: 11_171_146 + 1_024,
        build_resnet18: 11_173_962,
        build_resnet34: 21_282_122,
        build_vgg16: 14_728_266 - 4_224,
        build_wrn28: 36_479_194,
    }
    model = builder((3, 32, 32), 10, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == known[builder]


@pytest.mark.parametrize(
    ("builder", "kwargs", "match"),
    [
        (build_vit, {"width": 10, "heads": 3}, "multiple of heads"),
        (build_vit, {"patch": 5}, "multiple of patch"),
        (build_wideresnet, {"depth": 27}, "6n \\+ 4"),
        (build_resnet18, {"width": 0}, "positive integer"),
        (build_vgg16, {"width": 2.5}, "positive integer"),
    ],
)
def test_bad_options_are_explained(builder, kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        builder((3, 32, 32), 10, **kwargs)


def test_flat_inputs_are_refused_with_a_pointer_to_mlp() -> None:
    with pytest.raises(ValueError, match="mlp"):
        build_resnet18((784,), 10)


def test_registry_entries_resolve() -> None:
    from noisescope.models import REGISTRY

    for name in ("preact_resnet18", "resnet18", "resnet34", "vgg11", "vgg16", "wrn28", "vit"):
        module, attr = REGISTRY[name].split(":")
        assert callable(getattr(import_module(module), attr))


PRESETS = {  # preset -> number of runs (1: a plain run config)
    "nakkiran_noise0": 1,
    "nakkiran_noise10": 1,
    "nakkiran_noise20": 1,
    "nakkiran_width": 21,
    "malignant_resnet18_sym40": 1,
    "malignant_resnet18": 8,
    "malignant_vgg16": 8,
    "malignant_wrn28": 8,
    "malignant_vit": 8,
    "malignant_width": 15,
    "malignant_fmnist_cpu": 1,
}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_validate_and_build(preset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import noisescope.models as models
    from noisescope.config import load_config, read_toml
    from noisescope.sweep.grid import load_sweep_spec

    if "grid" in read_toml(preset):
        configs = [p.config for p in load_sweep_spec(preset).points]
    else:
        configs = [load_config(preset)]
    assert len(configs) == PRESETS[preset]
    from noisescope.probes import make_probe

    seen = set()
    for cfg in configs:
        for name in cfg.probe.probes:  # probe options are accepted
            make_probe(name, **cfg.probe.options.get(name, {}))
        key = (cfg.model.arch, tuple(sorted(cfg.model.options.items())))
        if key in seen:
            continue
        seen.add(key)
        shape = (1, 28, 28) if "mnist" in cfg.data.name else (3, 32, 32)
        with torch.device("meta"):  # shapes only: no memory, no initialization cost
            model = models.build_model(cfg.model.arch, shape, 10, **cfg.model.options)
        assert model.feature_tap == "pool"
