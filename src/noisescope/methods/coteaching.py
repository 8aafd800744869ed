"""Co-teaching (Han et al. 2018): two networks, each trained on the other's small-loss samples."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from noisescope.methods.base import Forward, Method
from noisescope.models.base import TappedModel


def forget_rate(epoch: int, rate: float, ramp_epochs: int) -> float:
    """R(T) = rate * min(T / T_k, 1) at training epoch T (1-based), T_k = ``ramp_epochs``
    (the paper's linear ramp; R = ``rate`` at once when ``ramp_epochs = 0``)."""
    if ramp_epochs <= 0:
        return rate
    return rate * min((epoch - 1) / ramp_epochs, 1.0)


def small_loss_index(losses: torch.Tensor, keep: int) -> torch.Tensor:
    """(keep,) rows of the ``keep`` smallest per-sample losses (B,); all rows, in order, when
    ``keep >= B``."""
    if keep >= len(losses):
        return torch.arange(len(losses), device=losses.device)
    return torch.argsort(losses.detach())[:keep]


def reinit(model: TappedModel, seed: int) -> TappedModel:
    """A copy of ``model`` with every ``reset_parameters`` module re-drawn from ``seed``
    (the global RNG is left as it was)."""
    peer = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in peer.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return peer


class CoTeaching(Method):
    """``train.method = "coteaching"``; options: ``forget_rate`` (tau: the estimated noise rate,
    as in the paper, which assumes it known; default ``noise.rate``), ``ramp_epochs`` (T_k = 10),
    ``seed`` (the peer's initialization; default ``train.seed + 1``).

    The run's model is network 1 (probed, checkpointed, exported); network 2 (``self.peer``)
    is a copy of its architecture, initialized from ``seed``, trained in the same process on
    the same batches with its own optimizer of the run's kind (built by the loop's
    ``make_optimizer``, so the same learning rate each epoch). Per batch, each network ranks the
    batch by its own cross-entropy and the other network is trained on the ``(1 - R(T)) B``
    smallest. With ``forget_rate = 0`` the two are two independent cross-entropy runs.
    Compute: 2 runs. The peer lives in memory only (a resumed run restarts it).
    """

    name = "coteaching"
    compute = 2.0

    def __init__(self, model: TappedModel, n_train: int, num_classes: int, options: dict,
                 make_optimizer: object = None) -> None:
        super().__init__(model, n_train, num_classes, options)
        device = next(model.parameters()).device
        self.peer = reinit(model, int(options["seed"])).to(device)
        self.peer_opt = make_optimizer(self.peer.parameters()) if make_optimizer else \
            torch.optim.Adam(self.peer.parameters())
        self.rate = 0.0  # R(T), set by start_epoch

    def start_epoch(self, epoch: int, lr: float | None = None) -> None:
        super().start_epoch(epoch, lr)
        self.peer.train()
        self.rate = forget_rate(epoch, float(self.options["forget_rate"]), int(self.options["ramp_epochs"]))
        if lr is not None:
            for group in self.peer_opt.param_groups:
                group["lr"] = lr

    def loss(self, forward: Forward, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        keep = int(round((1 - self.rate) * len(yb)))
        z1, z2 = forward(xb), self.peer(xb)
        self.peer_opt.zero_grad(set_to_none=True)
        # network 1 learns from network 2's small-loss rows and vice versa; the two losses
        # touch disjoint parameters, so one backward gives each network its own gradient
        if keep >= len(yb):
            return F.cross_entropy(z1, yb) + F.cross_entropy(z2, yb)
        l1 = F.cross_entropy(z1, yb, reduction="none")
        l2 = F.cross_entropy(z2, yb, reduction="none")
        return l1[small_loss_index(l2, keep)].mean() + l2[small_loss_index(l1, keep)].mean()

    def after_step(self) -> None:
        self.peer_opt.step()
