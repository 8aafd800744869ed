"""Packed multi-model training (noisescope.packed) against unpacked torch.optim runs.

Tolerance: after 3 epochs of a small MLP, every member's weights and per-epoch losses equal
those of the same member trained alone with torch.optim to rtol 1e-5, atol 1e-6 (observed on
the CPU reference machine: max |diff| ~3e-8 in the weights, ~1e-7 in the losses; batched and
single matmuls round differently, nothing else differs).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from noisescope.config import TrainConfig
from noisescope.models import build_model, wrap_model
from noisescope.packed import (
    PackedModels,
    PackedOptimizer,
    load_packed,
    member_batches,
    member_lrs,
    member_pipelines,
    pack_incompatibility,
    packed_nbytes,
    save_packed,
    train_packed_epoch,
)
from noisescope.pipeline import TensorPipeline

pytestmark = pytest.mark.usefixtures("one_thread")

RTOL, ATOL = 1e-5, 1e-6
N, SHAPE, C, BATCH = 300, (1, 8, 8), 5, 64  # 300 = 4 full batches + a short one of 44
SEEDS = [11, 12, 13]
MEAN, STD = 0.45, 0.28
HPARAMS = {  # optimizer -> (lrs, weight decays, kwargs): a different lr and wd per member
    "sgd": ([0.05, 0.1, 0.02], [0.0, 1e-2, 5e-2], {"momentum": 0.9}),
    "adam": ([1e-3, 3e-3, 2e-3], [0.0, 1e-2, 5e-2], {}),
    "adamw": ([1e-3, 3e-3, 2e-3], [0.0, 1e-2, 5e-2], {}),
}


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, list[torch.Tensor]]:
    """uint8 images shared by all members, and one label vector per member (noise draws)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (N, *SHAPE), dtype=torch.uint8, generator=g)
    ys = [torch.randint(0, C, (N,), generator=g) for _ in SEEDS]
    return x, ys


def make_member(seed: int, width: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", SHAPE, C, widths=[width, width, width])


def torch_optimizer(kind: str, params, lr: float, wd: float, momentum: float = 0.0) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def unpacked_run(kind: str, i: int, x, y, epochs, lr: float, wd: float, model=None, opt=None, first_epoch=1):
    """Member i alone: the unpacked loop (TensorPipeline, zero_grad, CE, backward, torch.optim step)."""
    model = model if model is not None else make_member(SEEDS[i])
    if opt is None:
        opt = torch_optimizer(kind, model.parameters(), lr, wd, HPARAMS[kind][2].get("momentum", 0.0))
    pipe = TensorPipeline(x, y, BATCH, seed=SEEDS[i], mean=MEAN, std=STD)
    losses = []
    model.train()
    for epoch in range(first_epoch, first_epoch + epochs):
        pipe.set_epoch(epoch)
        total, count = 0.0, 0
        for xb, yb, _ in pipe:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(yb)
            count += len(yb)
        losses.append(total / count)
    return model, opt, losses


def packed_run(kind: str, x, ys, epochs: int, lrs=None, engine: str = "auto"):
    lr, wd, kw = HPARAMS[kind]
    packed = PackedModels([make_member(s) for s in SEEDS], engine=engine)
    opt = PackedOptimizer(packed, kind, lrs if lrs is not None else lr, wd, **kw)
    pipes = member_pipelines(x, ys, SEEDS, BATCH, mean=MEAN, std=STD)
    losses = [train_packed_epoch(packed, pipes, opt, epoch=e) for e in range(1, epochs + 1)]
    return packed, opt, pipes, torch.stack(losses, 1) if losses else None


def assert_same_weights(a: nn.Module, b: nn.Module, rtol=RTOL, atol=ATOL) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=rtol, atol=atol, msg=k)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_members_equal_unpacked_torch_optim_runs(data, kind):
    x, ys = data
    lr, wd, _ = HPARAMS[kind]
    packed, _opt, _pipes, losses = packed_run(kind, x, ys, epochs=3)
    assert packed.engine == "direct"
    assert not packed.failed.any()
    for i in range(len(SEEDS)):
        ref, _, ref_losses = unpacked_run(kind, i, x, ys[i], 3, lr[i], wd[i])
        assert_same_weights(packed.member(i), ref)
        torch.testing.assert_close(losses[i], torch.tensor(ref_losses, dtype=torch.float64), rtol=RTOL, atol=ATOL)


def test_vmap_engine_equals_unpacked(data):
    """The general engine (vmap over functional_call) on the same task, to the same tolerance."""
    x, ys = data
    lr, wd, _ = HPARAMS["adamw"]
    packed, _opt, _pipes, losses = packed_run("adamw", x, ys, epochs=2, engine="vmap")
    assert packed.engine == "vmap"
    for i in range(len(SEEDS)):
        ref, _, ref_losses = unpacked_run("adamw", i, x, ys[i], 2, lr[i], wd[i])
        assert_same_weights(packed.member(i), ref)
        torch.testing.assert_close(losses[i], torch.tensor(ref_losses, dtype=torch.float64), rtol=RTOL, atol=ATOL)


def test_batchnorm_model_under_vmap(data):
    """Any TappedModel packs through vmap; BatchNorm running statistics stay per member."""
    x, ys = data

    def net(seed):
        torch.manual_seed(seed)
        body = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, C))
        return wrap_model(body, head="4", taps=["3"])

    packed = PackedModels([net(s) for s in SEEDS[:2]])
    assert packed.engine == "vmap" and "model.2.running_mean" in packed.buffers
    opt = PackedOptimizer(packed, "sgd", [0.1, 0.05], momentum=0.9)
    pipes = member_pipelines(x, ys[:2], SEEDS[:2], BATCH, mean=MEAN, std=STD)
    for e in (1, 2):
        train_packed_epoch(packed, pipes, opt, epoch=e)
    for i, lr in enumerate([0.1, 0.05]):
        ref = net(SEEDS[i])
        o = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9)
        pipe = TensorPipeline(x, ys[i], BATCH, seed=SEEDS[i], mean=MEAN, std=STD)
        for e in (1, 2):
            pipe.set_epoch(e)
            for xb, yb, _ in pipe:
                loss = F.cross_entropy(ref(xb), yb)
                o.zero_grad()
                loss.backward()
                o.step()
        assert_same_weights(packed.member(i), ref, rtol=1e-4, atol=1e-5)
    xs = pipes[0].transform(x[:50])
    logits, taps = packed.forward_with_taps(xs, shared=True)  # train mode: batch statistics
    assert logits.shape == (2, 50, C) and taps["3"].shape == taps["features"].shape == (2, 50, 24)


def test_member_round_trip_and_load_member(data):
    x, ys = data
    packed, _opt, _pipes, _ = packed_run("adam", x, ys, epochs=1)
    m1 = packed.member(1)
    assert isinstance(m1, type(make_member(0))) and m1.training == packed.training
    for k, v in m1.state_dict().items():
        assert torch.equal(v, packed.member_state_dict(1)[k])
    # the member is an independent copy
    w = packed.member_state_dict(1)["blocks.layer1.0.weight"]
    with torch.no_grad():
        m1.blocks.layer1[0].weight.add_(1.0)
    assert torch.equal(packed.member_state_dict(1)["blocks.layer1.0.weight"], w)
    # load_member: member 2 := member 0's weights; the others untouched
    before1 = packed.member_state_dict(1)
    packed.load_member(2, packed.member(0).state_dict())
    assert_same_weights(packed.member(2), packed.member(0), rtol=0, atol=0)
    for k, v in packed.member_state_dict(1).items():
        assert torch.equal(v, before1[k])
    with pytest.raises(KeyError):
        packed.load_member(0, {"nope": torch.zeros(1)})
    with pytest.raises(IndexError):
        packed.member(3)


@pytest.mark.parametrize("engine", ["direct", "vmap"])
def test_packed_logits_and_taps_equal_each_members_own(data, engine):
    x, ys = data
    packed, _opt, pipes, _ = packed_run("adam", x, ys, epochs=1, engine=engine)
    xs = pipes[0].transform(x)  # the split as the model sees it
    logits = packed.packed_logits(xs, batch_size=128)  # 300 = 2 batches + 44
    assert logits.shape == (len(SEEDS), N, C)
    assert packed.training  # mode restored
    seen = {}
    for sl, lg, acts in packed.iter_taps(xs, batch_size=128):
        for i in range(len(SEEDS)):
            seen.setdefault(i, []).append((sl, lg[i], {k: v[i] for k, v in acts.items()}))
    for i in range(len(SEEDS)):
        m = packed.member(i).eval()
        with torch.no_grad():
            own = m(xs)
        torch.testing.assert_close(logits[i], own, rtol=1e-5, atol=1e-6)
        captured = {}
        hooks = [mod.register_forward_hook(lambda _m, _i, out, n=n, c=captured: c.__setitem__(n, out.flatten(1)))
                 for n, mod in m.taps().items()]
        try:
            for sl, lg, acts in seen[i]:
                with torch.no_grad():
                    m(xs[sl])
                torch.testing.assert_close(lg, own[sl], rtol=1e-5, atol=1e-6)
                assert acts.keys() == captured.keys() == {"layer1", "layer2", "layer3"}
                for k in acts:
                    torch.testing.assert_close(acts[k], captured[k], rtol=1e-5, atol=1e-6)
        finally:
            for h in hooks:
                h.remove()


def test_forward_with_taps_per_member_batches(data):
    x, ys = data
    packed = PackedModels([make_member(s) for s in SEEDS])
    xb, _ = next(iter(member_batches(member_pipelines(x, ys, SEEDS, BATCH, mean=MEAN, std=STD))))
    logits, taps = packed.forward_with_taps(xb, ["layer2"])
    assert list(taps) == ["layer2"] and taps["layer2"].shape == (3, BATCH, 16)
    torch.testing.assert_close(logits, packed(xb))
    with pytest.raises(ValueError, match="unknown tap"):
        packed.forward_with_taps(xb, ["layer9"])


def test_diverging_member_fails_alone(data):
    x, ys = data
    lr = [0.05, 1e6, 0.02]
    wd = [0.0, 0.0, 5e-2]
    packed = PackedModels([make_member(s) for s in SEEDS])
    opt = PackedOptimizer(packed, "sgd", lr, wd, momentum=0.9)
    pipes = member_pipelines(x, ys, SEEDS, BATCH, mean=MEAN, std=STD)
    losses = [train_packed_epoch(packed, pipes, opt, epoch=1)]
    assert packed.failed.tolist() == [False, True, False]
    assert math.isnan(losses[0][1]) and torch.isfinite(losses[0][[0, 2]]).all()
    frozen = packed.member_state_dict(1)
    assert all(torch.isfinite(v).all() for v in frozen.values())  # stopped at its last finite state
    losses += [train_packed_epoch(packed, pipes, opt, epoch=e) for e in (2, 3)]
    for k, v in packed.member_state_dict(1).items():
        assert torch.equal(v, frozen[k])
    assert int(opt.member_steps[1]) < int(opt.member_steps[0]) == opt.steps
    for i in (0, 2):
        ref, _, ref_losses = unpacked_run("sgd", i, x, ys[i], 3, lr[i], wd[i])
        assert_same_weights(packed.member(i), ref)
        torch.testing.assert_close(torch.stack(losses)[:, i], torch.tensor(ref_losses, dtype=torch.float64),
                                   rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_resume_is_bit_identical(data, tmp_path, kind):
    x, ys = data
    lr, wd, kw = HPARAMS[kind]
    lrs = [[v * f for v in lr] for f in (1.0, 0.5, 0.25)]  # a per-epoch schedule
    full, full_opt, pipes, _ = packed_run(kind, x, ys, epochs=0)
    full_losses = [train_packed_epoch(full, pipes, full_opt, lrs[e - 1], epoch=e) for e in (1, 2, 3)]

    first, first_opt, pipes, _ = packed_run(kind, x, ys, epochs=0)
    train_packed_epoch(first, pipes, first_opt, lrs[0], epoch=1)
    path = tmp_path / "resume.safetensors"
    save_packed(path, first, first_opt, epoch=1)
    # a fresh process: different initial weights, state loaded from the file
    resumed = PackedModels([make_member(s + 100) for s in SEEDS])
    resumed_opt = PackedOptimizer(resumed, kind, 1.0, 0.0, **kw)
    assert load_packed(path, resumed, resumed_opt) == 1
    pipes = member_pipelines(x, ys, SEEDS, BATCH, mean=MEAN, std=STD)
    resumed_losses = [train_packed_epoch(resumed, pipes, resumed_opt, lrs[e - 1], epoch=e) for e in (2, 3)]
    assert torch.equal(torch.stack(resumed_losses), torch.stack(full_losses[1:]))
    assert torch.equal(resumed.flat, full.flat)
    for key, buf in full_opt.state.items():
        assert torch.equal(resumed_opt.state[key], buf)
    assert resumed_opt.steps == full_opt.steps
    wrong = PackedOptimizer(PackedModels([make_member(s) for s in SEEDS]), "adam" if kind == "sgd" else "sgd")
    with pytest.raises(ValueError, match="hparams"):
        load_packed(path, wrong.packed, wrong)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_member_optimizer_continues_unpacked(data, kind):
    """Export member i (weights + torch.optim state) after 2 packed epochs, continue it alone
    for one epoch: equal to the pack's third epoch."""
    x, ys = data
    lr, wd, _ = HPARAMS[kind]
    packed, opt, pipes, _ = packed_run(kind, x, ys, epochs=2)
    models = [packed.member(i) for i in range(len(SEEDS))]
    opts = [opt.member_optimizer(i, m) for i, m in enumerate(models)]
    last = train_packed_epoch(packed, pipes, opt, epoch=3)
    for i in range(len(SEEDS)):
        m, _, losses = unpacked_run(kind, i, x, ys[i], 1, lr[i], wd[i], model=models[i], opt=opts[i], first_epoch=3)
        assert_same_weights(packed.member(i), m)
        assert losses[0] == pytest.approx(float(last[i]), rel=RTOL)


def test_member_batches_fused_gather_equals_pipelines(data):
    x, ys = data
    for kw in ({"mean": MEAN, "std": STD}, {}, {"drop_last": True}):
        pipes = member_pipelines(x, ys, SEEDS, BATCH, **kw)
        for p in pipes:
            p.set_epoch(4)
        fused = list(member_batches(pipes))
        assert len(fused) == len(pipes[0])
        for b, (xb, yb) in enumerate(fused):
            for i, p in enumerate(pipes):
                px, py, _ = next(itertools.islice(iter(p), b, None))
                assert torch.equal(xb[i], px) and torch.equal(yb[i], py)
    # members over different x storages: iterated side by side, same result
    pipes = [TensorPipeline(x.clone(), y, BATCH, seed=s) for y, s in zip(ys, SEEDS, strict=True)]
    xb, yb = next(iter(member_batches(pipes)))
    assert torch.equal(xb[1], next(iter(pipes[1]))[0])


def test_configs_and_validation(data):
    x, ys = data
    a = TrainConfig(optimizer="adam", lr=1e-3, seed=1)
    b = TrainConfig(optimizer="Adam", lr=3e-3, weight_decay=0.1, seed=2, schedule="cosine", epochs=a.epochs)
    assert pack_incompatibility([a, b]) is None
    assert "train.batch_size" in pack_incompatibility([a, TrainConfig(batch_size=64)])
    assert "train.optimizer" in pack_incompatibility([a, TrainConfig(optimizer="sgd")])
    assert member_lrs(1, [a, b]) == [1e-3, 3e-3]
    assert member_lrs(a.epochs, [a, b])[1] < 3e-3  # cosine decays
    packed = PackedModels([make_member(1), make_member(2)])
    opt = PackedOptimizer.from_configs(packed, [a, b])
    assert opt.kind == "adam" and opt.lr.tolist() == [1e-3, 3e-3] and opt.weight_decay.tolist() == [0.0, 0.1]
    assert PackedOptimizer(packed, "adamw").weight_decay.tolist() == [1e-2, 1e-2]  # torch's AdamW default
    with pytest.raises(ValueError, match="1 or 2 values"):
        PackedOptimizer(packed, "sgd", lr=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="unknown optimizer"):
        PackedOptimizer(packed, "lamb")
    with pytest.raises(ValueError, match="differs from member 0"):
        PackedModels([make_member(1, width=16), make_member(2, width=8)])
    with pytest.raises(ValueError, match="MLPs only"):
        PackedModels([wrap_model(nn.Sequential(nn.Flatten(), nn.Linear(64, C)), head="1")], engine="direct")
    pipes = member_pipelines(x, ys[:2], SEEDS[:2], BATCH)
    with pytest.raises(ValueError, match="pipelines for"):
        train_packed_epoch(packed, pipes[:1], opt)
    short = [pipes[0], TensorPipeline(x[:100], ys[1][:100], BATCH)]
    with pytest.raises(ValueError, match="differ"):
        train_packed_epoch(packed, short, opt)
    with pytest.raises(ValueError, match="leading member dimension"):
        packed(torch.zeros(3, 4, *SHAPE))
    # memory accounting: params + grads + two Adam moments + two scratch buffers
    assert packed_nbytes(packed, opt) == 6 * packed.flat.nbytes


def normalized_member(seed: int) -> nn.Module:
    """An MLP as runs build it: the input standardization inside the model (uint8 in)."""
    return make_member(seed).set_input_normalization([MEAN], [STD], 255.0)


def test_direct_engine_runs_the_models_input_normalization(data):
    """Models with their own InputNorm (as prepare_model builds them) keep the direct engine;
    trained on raw uint8 batches, each member equals its unpacked run."""
    x, ys = data
    packed = PackedModels([normalized_member(s) for s in SEEDS])
    assert packed.engine == "direct" and set(packed.buffers) == {"input_norm.mean", "input_norm.std"}
    vm = PackedModels([normalized_member(s) for s in SEEDS], engine="vmap")
    xb = torch.stack([x[:32]] * len(SEEDS))
    torch.testing.assert_close(packed(xb), vm(xb), rtol=RTOL, atol=ATOL)
    lr, wd, _ = HPARAMS["adam"]
    opt = PackedOptimizer(packed, "adam", lr, wd)
    pipes = member_pipelines(x, ys, SEEDS, BATCH)
    for e in (1, 2):
        train_packed_epoch(packed, pipes, opt, epoch=e)
    for i in range(len(SEEDS)):
        ref = normalized_member(SEEDS[i])
        o = torch_optimizer("adam", ref.parameters(), lr[i], wd[i])
        pipe = TensorPipeline(x, ys[i], BATCH, seed=SEEDS[i])
        for e in (1, 2):
            pipe.set_epoch(e)
            for xb, yb, _ in pipe:
                loss = F.cross_entropy(ref(xb), yb)
                o.zero_grad(set_to_none=True)
                loss.backward()
                o.step()
        assert_same_weights(packed.member(i), ref)
        assert torch.equal(packed.member(i).input_norm.mean, ref.input_norm.mean)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_load_member_optimizer_inverts_member_optimizer(data, kind):
    """A member exported as a torch.optim optimizer loads back into a fresh pack exactly
    (a run's resume state in the unpacked format rebuilds its slot of the pack)."""
    x, ys = data
    lr, wd, kw = HPARAMS[kind]
    packed, opt, _pipes, _ = packed_run(kind, x, ys, epochs=1)
    fresh = PackedModels([make_member(s + 50) for s in SEEDS])
    other = PackedOptimizer(fresh, kind, 1.0, 0.0, **kw)
    for i in range(len(SEEDS)):
        m = packed.member(i)
        fresh.load_member(i, m.state_dict())
        other.load_member_optimizer(i, opt.member_optimizer(i, m), steps=int(opt.member_steps[i]))
    other.steps = opt.steps
    assert torch.equal(fresh.flat, packed.flat) and torch.equal(other.member_steps, opt.member_steps)
    assert other.lr.tolist() == lr and other.weight_decay.tolist() == wd
    for key, buf in opt.state.items():
        assert torch.equal(other.state[key], buf), key
    # slot rows out and back in (a member frozen while others catch up)
    rows, weights = other.member_rows(1), fresh.member_state_dict(1)
    fresh.mark_failed(1)
    other.step()  # a failed member's state rows are zeroed
    fresh.load_member(1, weights)
    other.load_member_rows(1, rows)
    fresh.mark_alive(1)
    assert not fresh.failed.any()
    for key, buf in opt.state.items():
        assert torch.equal(other.state[key][1], buf[1]), key
    wrong = "sgd" if kind != "sgd" else "adam"
    with pytest.raises(ValueError, match="can't be loaded"):
        other.load_member_optimizer(0, torch_optimizer(wrong, packed.member(0).parameters(), 0.1, 0.0))
    with pytest.raises(ValueError, match="do not match"):
        other.load_member_optimizer(0, torch_optimizer(kind, make_member(0, width=8).parameters(), 0.1, 0.0))
