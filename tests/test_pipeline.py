"""Device-resident pipeline: order, augmentation against a per-sample reference, alignment,
determinism, normalization; and the accel helpers' CPU behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noisescope import accel
from noisescope.augment import Augment, draw_params, hflip, random_crop
from noisescope.data.transforms import Normalizer
from noisescope.pipeline import TensorPipeline

pytestmark = pytest.mark.usefixtures("one_thread")


def images(n: int = 50, c: int = 3, h: int = 8, w: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def reference(x: np.ndarray, pad: int, oy: int, ox: int, flip: bool) -> np.ndarray:
    """Per-sample numpy crop-with-zero-padding then mirror: (C, H, W) -> (C, H, W)."""
    c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    out = padded[:, oy : oy + h, ox : ox + w]
    return out[:, :, ::-1] if flip else out


def collect(pipe: TensorPipeline) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, idxs = zip(*pipe, strict=True)
    return torch.cat(xs), torch.cat(ys), torch.cat(idxs)


def test_plain_batches_keep_the_original_contract() -> None:
    x, y = images(), torch.arange(50) % 7
    pipe = TensorPipeline(x, y, 16, True, 3, "cpu")
    assert len(pipe) == 4
    pipe.set_epoch(1)
    xb, yb, idx = collect(pipe)
    assert sorted(idx.tolist()) == list(range(50))  # every sample once per epoch
    assert xb.dtype == torch.float32
    torch.testing.assert_close(xb, x[idx].float())  # unscaled without mean/std
    assert torch.equal(yb, y[idx])
    pipe.set_epoch(2)
    assert not torch.equal(collect(pipe)[2], idx)  # a new order each epoch
    pipe.set_epoch(1)
    assert torch.equal(collect(pipe)[2], idx)  # ... and the same one when replayed


@pytest.mark.parametrize(("pad", "flips"), [(3, True), (3, False), (0, True)])
def test_augmented_batches_match_a_per_sample_reference(pad: int, flips: bool) -> None:
    x, y = images(), torch.arange(50) % 7
    pipe = TensorPipeline(x, y, 16, seed=5, augment=Augment(crop_padding=pad, hflip=flips))
    pipe.set_epoch(4)
    oy, ox, flip = pipe.augment_params()
    xb, yb, idx = collect(pipe)
    assert torch.equal(yb, y[idx])  # labels travel with their samples
    assert torch.equal(pipe.x, x)  # the plain view of the (padded, mirrored) store
    xn = x.numpy()
    for b, i in enumerate(idx.tolist()):
        want = reference(xn[i], pad, int(oy[i]), int(ox[i]), bool(flip[i]))
        np.testing.assert_array_equal(xb[b].numpy(), want.astype(np.float32))
    # the draws really vary: several corners, and both flipped and unflipped samples
    assert (len(set(zip(oy.tolist(), ox.tolist(), strict=True))) > 10) == (pad > 0)
    assert (0 < int(flip.sum()) < 50) == flips


def test_augmentation_is_deterministic_and_independent_of_batching() -> None:
    x, y = images(n=40), torch.arange(40)
    def per_sample(batch_size: int, seed: int, epoch: int) -> torch.Tensor:
        pipe = TensorPipeline(x, y, batch_size, seed=seed, augment=True)
        pipe.set_epoch(epoch)
        xb, yb, idx = collect(pipe)
        assert torch.equal(yb, idx)  # y == index here: alignment is exact
        out = torch.empty_like(xb)
        out[idx] = xb
        return out
    a = per_sample(8, seed=1, epoch=2)
    assert torch.equal(a, per_sample(8, seed=1, epoch=2))  # same seed, same epoch
    assert torch.equal(a, per_sample(13, seed=1, epoch=2))  # batch size does not matter
    assert not torch.equal(a, per_sample(8, seed=1, epoch=3))
    assert not torch.equal(a, per_sample(8, seed=2, epoch=2))


def test_augment_true_scales_the_padding_with_the_image() -> None:
    for h, pad in ((32, 4), (28, 4), (16, 2), (8, 1)):
        pipe = TensorPipeline(images(n=2, h=h, w=h), torch.zeros(2), 2, augment=True)
        assert pipe.augment == Augment(crop_padding=pad, hflip=True)


def test_augment_params_cover_the_range() -> None:
    g = torch.Generator().manual_seed(0)
    oy, ox, flip = draw_params(4000, Augment(crop_padding=4), g, torch.device("cpu"))
    assert set(oy.tolist()) == set(range(9)) and set(ox.tolist()) == set(range(9))
    assert 0.45 < flip.float().mean().item() < 0.55
    none = draw_params(10, Augment(crop_padding=0, hflip=False), g, torch.device("cpu"))
    assert not none[2].any()


def test_pure_functions() -> None:
    x = images(n=4)
    centre = torch.full((4,), 2)
    assert torch.equal(random_crop(x, 2, centre, centre), x)  # corner (pad, pad) = identity
    shifted = random_crop(x, 2, torch.zeros(4, dtype=torch.long), torch.full((4,), 4))
    # corner (0, 2 pad): the image moves down by 2 and left by 2, zeros fill in
    assert torch.equal(shifted[:, :, 2:, :-2], x[:, :, :-2, 2:])
    assert not shifted[:, :, :2].any() and not shifted[:, :, :, -2:].any()
    flip = torch.tensor([True, False, True, False])
    flipped = hflip(x, flip)
    assert torch.equal(flipped[0], x[0].flip(-1)) and torch.equal(flipped[1], x[1])


def test_normalization_agrees_with_the_dataset_normalizer() -> None:
    x, y = images(n=30, c=3), torch.zeros(30, dtype=torch.long)
    norm = Normalizer.fit(x)
    pipe = TensorPipeline(x, y, 7, seed=0, mean=norm.mean, std=norm.std, channels_last=True)
    xb, _, idx = collect(pipe)
    torch.testing.assert_close(xb, norm(x[idx]), rtol=1e-5, atol=1e-5)
    first = next(iter(pipe))[0]
    assert first.is_contiguous(memory_format=torch.channels_last)
    # feature vectors: one global mean/std
    f = torch.randn(20, 5) * 3 + 1
    fnorm = Normalizer.fit(f)
    fb, _, fidx = collect(TensorPipeline(f, torch.zeros(20), 6, mean=fnorm.mean, std=fnorm.std))
    torch.testing.assert_close(fb, fnorm(f[fidx]), rtol=1e-5, atol=1e-5)
    # transform() leaves its input alone
    raw = torch.rand(4, 3, 8, 6)
    before = raw.clone()
    TensorPipeline(raw, torch.zeros(4), 2, mean=0.5, std=0.2).transform(raw)
    assert torch.equal(raw, before)


def test_bad_pipeline_options_are_explained() -> None:
    with pytest.raises(ValueError, match="needs images"):
        TensorPipeline(torch.randn(10, 4), torch.zeros(10), 2, augment=True)
    with pytest.raises(ValueError, match="both mean and std"):
        TensorPipeline(images(), torch.zeros(50), 2, mean=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="1 or 3 values"):
        TensorPipeline(images(), torch.zeros(50), 2, mean=[0.5, 0.5], std=[1.0, 1.0])
    with pytest.raises(ValueError, match="crop_padding"):
        Augment(crop_padding=-1)


def test_accel_plan_is_a_no_op_on_cpu() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    plan = accel.plan("cpu", precision="bf16", compile=True, channels_last=True, model=model)
    assert not (plan.bf16 or plan.channels_last or plan.compile)
    assert len(plan.skipped) == 3  # each requested feature says why it is off
    assert accel.compiled(model, plan) is model
    assert accel.prepare_model(model, plan) is model
    x = torch.randn(2, 3, 5, 5)
    with accel.autocast(plan):
        assert model(x).dtype == torch.float32
    default = accel.plan("cpu")
    assert not default.channels_last and not default.skipped


def test_device_mean_weights_batches() -> None:
    meter = accel.DeviceMean("cpu")
    assert np.isnan(meter.value())
    meter.add(torch.tensor(1.0), 3)
    meter.add(torch.tensor(3.0), 1)
    assert meter.value() == pytest.approx(1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_accel_plan_on_cuda() -> None:  # pragma: no cover - runs where a GPU is lent
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    plan = accel.plan("cuda", precision="bf16", model=model)
    assert plan.channels_last and plan.bf16 == torch.cuda.is_bf16_supported()
    x = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    pipe = TensorPipeline(x, torch.arange(20), 8, device="cuda", augment=True,
                          mean=0.5, std=0.25, channels_last=True)
    xb, yb, idx = next(iter(pipe))
    assert xb.is_cuda and xb.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(yb, idx)
