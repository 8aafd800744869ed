"""Training-time methods (noisescope.methods): each reduces to cross-entropy where its paper
says it does, and Co-teaching without forgetting is two independent runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from noisescope.config import ConfigError, config_hash, load_config
from noisescope.methods import DEFAULTS, build_method, nominal_noise_rate, resolve_options
from noisescope.methods.coteaching import forget_rate, reinit, small_loss_index
from noisescope.methods.losses import bootstrap_loss, gce_loss, sce_loss
from noisescope.methods.rank import tail_share
from noisescope.runs.build import prepare_data, prepare_model
from noisescope.training.loop import Trainer


def _batch(seed: int = 0, b: int = 64, c: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, generator=g, dtype=torch.float64) * 3, torch.randint(0, c, (b,), generator=g)


def _cfg(method: str = "ce", epochs: int = 2, **options: float) -> object:
    sets = ["data.options={n = 300, dim = 20, k_star = 4, num_classes = 5}", "model.options={widths = [32, 32]}",
            f"train.epochs={epochs}", "train.batch_size=64", "train.device=\"cpu\"", f'train.method="{method}"']
    if options:
        sets.append("train.method_options={" + ", ".join(f"{k} = {v}" for k, v in options.items()) + "}")
    return load_config("synthetic_demo", sets)


def test_gce_tends_to_cross_entropy_as_q_goes_to_zero() -> None:
    z, y = _batch()
    ce = F.cross_entropy(z, y)
    assert torch.allclose(gce_loss(z, y, 1e-8), ce, rtol=1e-6)
    # q = 1: mean (1 - p_y)
    assert torch.allclose(gce_loss(z, y, 1.0), (1 - F.softmax(z, 1)[torch.arange(len(y)), y]).mean())


def test_sce_with_beta_zero_is_alpha_cross_entropy_and_rce_is_minus_a_times_one_minus_p() -> None:
    z, y = _batch(1)
    assert torch.allclose(sce_loss(z, y, 0.1, 0.0), 0.1 * F.cross_entropy(z, y))
    p_y = F.softmax(z, 1)[torch.arange(len(y)), y]
    assert torch.allclose(sce_loss(z, y, 0.0, 1.0, -4.0), (4 * (1 - p_y)).mean())


@pytest.mark.parametrize("hard", [False, True])
def test_bootstrap_with_beta_one_is_cross_entropy(hard: bool) -> None:
    z, y = _batch(2)
    assert torch.allclose(bootstrap_loss(z, y, 1.0, hard), F.cross_entropy(z, y))
    # beta = 0, hard: cross-entropy against the model's own argmax
    assert torch.allclose(bootstrap_loss(z, y, 0.0, True), F.cross_entropy(z, z.argmax(1)))


def test_elr_with_lambda_zero_is_cross_entropy_and_its_targets_average_predictions() -> None:
    cfg = _cfg("elr", lam=0.0)
    data = prepare_data(cfg)
    model = prepare_model(cfg, data)
    m = build_method(cfg.train, model, len(data.y_train), data.num_classes)
    x, y, idx = data.x_train[:32], data.y_train[:32], torch.arange(32)
    assert torch.allclose(m.loss(model, x, y, idx), F.cross_entropy(model(x), y))
    m.options["lam"] = 3.0
    m.loss(model, x, y, idx)
    p = F.softmax(model(x), 1).clamp(1e-4, 1 - 1e-4).detach()
    assert torch.allclose(m.targets[:32], 0.3 * p / p.sum(1, keepdim=True), atol=1e-6)
    assert m.targets[32:].abs().sum() == 0


def test_mixup_with_alpha_to_zero_is_cross_entropy() -> None:
    cfg = _cfg("mixup", alpha=1e-4)
    data = prepare_data(cfg)
    model = prepare_model(cfg, data)
    m = build_method(cfg.train, model, len(data.y_train), data.num_classes)
    x, y = data.x_train[:64], data.y_train[:64]
    for _ in range(5):
        assert torch.allclose(m.loss(model, x, y, torch.arange(64)), F.cross_entropy(model(x), y), atol=1e-4)


def test_tail_fraction_is_zero_at_rank_k_and_the_penalty_with_lambda_zero_is_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.randn(50, 3, generator=g) @ torch.randn(3, 40, generator=g)
    assert float(tail_share(f, 3)) < 1e-10
    assert 0.5 < float(tail_share(torch.randn(200, 40, generator=g), 3)) < 1
    cfg = _cfg("rank_tail", lam=0.0)
    data = prepare_data(cfg)
    model = prepare_model(cfg, data)
    m = build_method(cfg.train, model, len(data.y_train), data.num_classes)
    x, y = data.x_train[:32], data.y_train[:32]
    assert torch.allclose(m.loss(model, x, y, torch.arange(32)), F.cross_entropy(model(x), y))


def test_coteaching_forget_schedule_and_small_loss_selection() -> None:
    assert forget_rate(1, 0.4, 10) == 0.0
    assert forget_rate(6, 0.4, 10) == pytest.approx(0.2)
    assert forget_rate(11, 0.4, 10) == pytest.approx(0.4) and forget_rate(50, 0.4, 10) == pytest.approx(0.4)
    losses = torch.tensor([0.5, 0.1, 0.9, 0.3])
    assert small_loss_index(losses, 2).tolist() == [1, 3]
    assert small_loss_index(losses, 4).tolist() == [0, 1, 2, 3]


def test_coteaching_with_forget_rate_zero_is_two_independent_runs() -> None:
    cfg = _cfg("coteaching", forget_rate=0.0, seed=7)
    data = prepare_data(cfg)
    model = prepare_model(cfg, data)
    peer_init = reinit(model, 7)
    ce_cfg = _cfg("ce")
    net1 = Trainer(prepare_model(ce_cfg, data), data, ce_cfg.train, [], []).fit()
    net2 = Trainer(peer_init, data, ce_cfg.train, [], []).fit()
    trainer = Trainer(model, data, cfg.train, [], [])
    trainer.fit()
    for a, b in zip(trainer.model.parameters(), net1.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(trainer.method.peer.parameters(), net2.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # and the peer did start elsewhere: the two networks differ
    assert not torch.allclose(next(trainer.model.parameters()), next(trainer.method.peer.parameters()))


def test_method_options_default_to_the_papers_and_the_run() -> None:
    cfg = _cfg("coteaching")
    data = prepare_data(cfg)
    opts = resolve_options(cfg.train, data.num_classes, data.noise)
    assert opts == {"forget_rate": 0.4, "ramp_epochs": 10, "seed": 1}
    assert DEFAULTS["gce"] == {"q": 0.7} and DEFAULTS["elr"] == {"lam": 3.0, "beta": 0.7}
    transition = {"params": {"matrix": [[0.5, 0.5], [0.0, 1.0]]}}
    assert nominal_noise_rate(transition) == pytest.approx(0.25)


def test_bad_method_config_is_one_line_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="train.method must be one of") as e:
        _cfg("gcee")
    assert e.value.field == "train.method" and "did you mean gce" in str(e.value)
    with pytest.raises(ConfigError, match=r"train.method_options.qq: gce takes no option qq"):
        _cfg("gce", qq=0.5)
    with pytest.raises(ConfigError, match=r"train.method_options.q must be a number in"):
        _cfg("gce", q=2.0)


def test_cross_entropy_configs_keep_their_hash() -> None:
    """Runs from before train.method existed keep their identity (and resume)."""
    assert config_hash(load_config("synthetic_demo")) == "f7f72ce9f8"
    assert config_hash(_cfg("gce")) != config_hash(_cfg("ce"))


def test_board_summary_checks_the_goal_on_every_seed() -> None:
    import pandas as pd

    from noisescope.workflows.methods_board import COLUMNS, summarize

    def row(method: str, seed: int, acc: float, gap: float, p: float, b: int, c: int, comp: float) -> dict:
        r = dict.fromkeys(COLUMNS, 0.0)
        r.update(noise="sym40", seed=seed, method=method, test_acc=acc, gap_closed=gap, es_p=p, es_b=b, es_c=c,
                 compute=1.0, compute_nominal=comp)
        return r

    rows = [row("elr", s, 0.84, 0.7, 0.001, 300, 100, 1.1) for s in range(3)]
    rows += [row("gce", s, 0.84, 0.7, 0.001 if s else 0.2, 300, 100, 1.1) for s in range(3)]
    rows += [row("coteaching", s, 0.84, 0.7, 0.001, 300, 100, 3.5) for s in range(3)]
    s = summarize(pd.DataFrame(rows, columns=COLUMNS)).set_index("method")
    assert s.loc["elr", "goal"] and s.loc["elr", "seeds_sig"] == 3 and s.loc["elr", "gap_closed"] == pytest.approx(0.7)
    assert not s.loc["gce", "goal"] and s.loc["gce", "seeds_sig"] == 2  # one seed not significant
    assert not s.loc["coteaching", "goal"]  # over 3x the compute
    assert s.loc["elr", "low"] == pytest.approx(0.84) and s.loc["elr", "high"] == pytest.approx(0.84)
