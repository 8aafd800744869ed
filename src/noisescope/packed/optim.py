"""The packed optimizer (SGD, Adam, AdamW with per-member lr and weight decay) and which
[train] configs can share a pack."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from noisescope.config import TrainConfig
from noisescope.packed.model import PackedModels
from noisescope.schedule import lr_at

#: TrainConfig fields that may differ between the members of one pack (the rest must agree).
PACKABLE_FIELDS = ("lr", "weight_decay", "seed", "schedule", "warmup_epochs")


def _per_member(value: float | Sequence[float] | torch.Tensor, k: int, what: str) -> torch.Tensor:
    """A float or K floats -> (K,) float64 CPU tensor, checked >= 0 and finite."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu().flatten().clone()
    if t.numel() == 1:
        t = t.expand(k).clone()
    if t.numel() != k:
        raise ValueError(f"{what}: expected 1 or {k} values (one per member), got {t.numel()}")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"{what} must be finite and >= 0, got {t.tolist()}")
    return t



class PackedOptimizer:
    """SGD / Adam / AdamW over a :class:`PackedModels`, one step for every member at once.

    Per member i the update is ``torch.optim``'s (single-tensor implementation, defaults
    ``dampening=0``, ``nesterov=False``, ``amsgrad=False``, ``maximize=False``) with
    ``lr[i]`` and ``weight_decay[i]``:

    * ``sgd``:   g += wd p;  buf = momentum buf + g (buf = g at the first step);  p -= lr buf
    * ``adam``:  g += wd p (coupled);  m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2;
      p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    * ``adamw``: p *= 1 - lr wd (decoupled), then Adam without the coupled term.

    Scalars are formed in float64 and rounded to the parameters' dtype, as ``torch.optim``
    does with its Python floats; the bias corrections use the pack's step count (all live
    members have taken every step). Failed members (``packed.alive`` False) get learning rate
    0 and their state rows are zeroed: their parameters stay put (and their exported state,
    :meth:`member_optimizer`, is meaningless).

    Args:
        packed: the models.
        kind: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        lr: one value or K values.
        weight_decay: one value or K values (default as torch: 0, or 1e-2 for AdamW).
        momentum: SGD momentum (shared by all members).
        betas, eps: Adam/AdamW (shared).
    """

    KINDS = ("sgd", "adam", "adamw")
    _CODES = {"sgd": 0.0, "adam": 1.0, "adamw": 2.0}

    def __init__(
        self,
        packed: PackedModels,
        kind: str,
        lr: float | Sequence[float] | torch.Tensor = 1e-3,
        weight_decay: float | Sequence[float] | torch.Tensor | None = None,
        *,
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        kind = kind.lower()
        if kind not in self.KINDS:
            raise ValueError(f"unknown optimizer {kind!r}; choose from {', '.join(self.KINDS)}")
        if weight_decay is None:
            weight_decay = 1e-2 if kind == "adamw" else 0.0
        if not 0.0 <= momentum < 1.0 or not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0) or eps < 0:
            raise ValueError(f"invalid momentum {momentum}, betas {betas} or eps {eps}")
        self.packed = packed
        self.kind = kind
        self.momentum = float(momentum)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = _per_member(weight_decay, packed.k, "weight_decay")
        self.lr = _per_member(lr, packed.k, "lr")
        self.steps = 0  # packed steps taken (every live member took all of them)
        self.member_steps = torch.zeros(packed.k, dtype=torch.int64, device=packed.device)
        self.state: dict[str, torch.Tensor] = {}
        if kind == "sgd":
            if self.momentum != 0.0:
                self.state["momentum_buffer"] = torch.zeros_like(packed.flat)
        else:
            self.state["exp_avg"] = torch.zeros_like(packed.flat)
            self.state["exp_avg_sq"] = torch.zeros_like(packed.flat)
        self._tmp = torch.empty_like(packed.flat)
        self._tmp2 = torch.empty_like(packed.flat) if kind != "sgd" else self._tmp
        # per-member scalars are formed in float64 (float32 where the device has none)
        self._sdtype = torch.float32 if packed.device.type == "mps" else torch.float64
        self._wd_dev = self.weight_decay.to(packed.device, self._sdtype)
        self._lr_dev = self.lr.to(packed.device, self._sdtype)

    @classmethod
    def from_configs(cls, packed: PackedModels, cfgs: Sequence[TrainConfig]) -> PackedOptimizer:
        """One member per [train] config (as ``make_optimizer`` would build for each)."""
        reason = pack_incompatibility(cfgs)
        if reason:
            raise ValueError(f"these configs cannot be packed: {reason}")
        if len(cfgs) != packed.k:
            raise ValueError(f"{len(cfgs)} configs for {packed.k} members")
        c = cfgs[0]
        return cls(packed, c.optimizer, [x.lr for x in cfgs], [x.weight_decay for x in cfgs], momentum=c.momentum)

    def set_lr(self, lr: float | Sequence[float] | torch.Tensor) -> None:
        """Per-member learning rates from now on (e.g. :func:`member_lrs` each epoch)."""
        self.lr = _per_member(lr, self.packed.k, "lr")
        self._lr_dev = self.lr.to(self.packed.device, self._sdtype)

    def zero_grad(self) -> None:
        self.packed.zero_grad()

    def _col(self, values: torch.Tensor, frozen: float) -> torch.Tensor:
        """(K,) scalars -> (K, 1) in the parameter dtype, ``frozen`` for failed members."""
        v = values.to(self.packed.dtype)
        return torch.where(self.packed.alive, v, torch.full_like(v, frozen)).unsqueeze(1)

    @torch.no_grad()
    def step(self) -> None:
        pk = self.packed
        p, g, tmp = pk.flat, pk.grad, self._tmp
        self.steps += 1
        self.member_steps += pk.alive
        # failed members: state rows to zero, so that their (zero-lr) update is exactly 0 even
        # if their state had overflowed; on a CPU the check is free, elsewhere always masked
        if pk.device.type != "cpu" or not bool(pk.alive.all()):
            dead = ~pk.alive.unsqueeze(1)
            for buf in self.state.values():
                buf.masked_fill_(dead, 0.0)
        coupled = self.kind in ("sgd", "adam") and bool((self.weight_decay != 0).any())
        if coupled:  # g + wd p (torch: grad.add(param, alpha=weight_decay)), into the scratch
            torch.addcmul(g, p, self._wd_dev.to(pk.dtype).unsqueeze(1), out=tmp)
            g = tmp
        if self.kind == "sgd":
            if self.momentum != 0.0:
                buf = self.state["momentum_buffer"]
                # buf starts at 0, so the first step gives buf = g as torch's clone does
                buf.mul_(self.momentum).add_(g)
                g = buf
            p.addcmul_(g, self._col(-self._lr_dev, 0.0))
            return
        beta1, beta2 = self.betas
        if self.kind == "adamw" and bool((self.weight_decay != 0).any()):
            p.mul_(self._col(1 - self._lr_dev * self._wd_dev, 1.0))
        exp_avg, exp_avg_sq = self.state["exp_avg"], self.state["exp_avg_sq"]
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        bias_correction1 = 1 - beta1**self.steps
        bias_correction2_sqrt = (1 - beta2**self.steps) ** 0.5
        neg_step = self._col(-(self._lr_dev / bias_correction1), 0.0)
        denom = torch.sqrt(exp_avg_sq, out=tmp).div_(bias_correction2_sqrt).add_(self.eps)
        # torch: p.addcdiv_(exp_avg, denom, value=-step_size) = p + (-step_size * exp_avg) / denom
        upd = torch.mul(exp_avg, neg_step, out=self._tmp2)
        p.add_(upd.div_(denom))

    # ------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat tensors: per-member ``lr``/``weight_decay`` (K,), ``steps`` (), ``member_steps``
        (K,), ``hparams`` [kind code, momentum, beta1, beta2, eps] and the state buffers split
        per parameter, ``<buffer>.<param name>`` (K, ...)."""
        out = {
            "lr": self.lr.clone(),
            "weight_decay": self.weight_decay.clone(),
            "steps": torch.tensor(self.steps, dtype=torch.int64),
            "member_steps": self.member_steps.cpu().clone(),
            "hparams": torch.tensor([self._CODES[self.kind], self.momentum, *self.betas, self.eps],
                                    dtype=torch.float64),
        }
        for key, buf in self.state.items():
            for n, t in self.packed.split(buf).items():
                out[f"{key}.{n}"] = t.contiguous().clone()
        return out

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        want = torch.tensor([self._CODES[self.kind], self.momentum, *self.betas, self.eps], dtype=torch.float64)
        if not torch.equal(tensors["hparams"].to(torch.float64).cpu(), want):
            raise ValueError(f"optimizer state is for hparams {tensors['hparams'].tolist()}, this optimizer has "
                             f"{want.tolist()} ([kind code (sgd 0, adam 1, adamw 2), momentum, beta1, beta2, eps])")
        self.set_lr(tensors["lr"])
        self.weight_decay = _per_member(tensors["weight_decay"], self.packed.k, "weight_decay")
        self._wd_dev = self.weight_decay.to(self.packed.device, self._sdtype)
        self.steps = int(tensors["steps"])
        self.member_steps.copy_(tensors["member_steps"])
        with torch.no_grad():
            for key, buf in self.state.items():
                for n, t in self.packed.split(buf).items():
                    t.copy_(tensors[f"{key}.{n}"])

    def member_optimizer(self, i: int, model: nn.Module) -> torch.optim.Optimizer:
        """Member ``i``'s optimizer as a ``torch.optim`` optimizer over ``model``'s parameters
        (e.g. ``packed.member(i)``) with its lr, weight decay and state: continuing the member
        unpacked from here equals continuing it in the pack (to float rounding). For per-member
        resume files in the unpacked format."""
        lr, wd = float(self.lr[i]), float(self.weight_decay[i])
        params = list(model.named_parameters())
        if [n for n, _ in params] != list(self.packed.shapes):
            raise ValueError("model's parameters do not match the packed architecture")
        plist = [q for _, q in params]
        if self.kind == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(plist, lr=lr, momentum=self.momentum, weight_decay=wd)
        elif self.kind == "adam":
            opt = torch.optim.Adam(plist, lr=lr, betas=self.betas, eps=self.eps, weight_decay=wd)
        else:
            opt = torch.optim.AdamW(plist, lr=lr, betas=self.betas, eps=self.eps, weight_decay=wd)
        steps = int(self.member_steps[i])
        if steps == 0:
            return opt
        split = {key: self.packed.split(buf) for key, buf in self.state.items()}
        for n, q in params:
            if self.kind == "sgd":
                if self.momentum != 0.0:
                    opt.state[q] = {"momentum_buffer": split["momentum_buffer"][n][i].clone().to(q.device)}
            else:
                opt.state[q] = {
                    "step": torch.tensor(float(steps), dtype=torch.get_default_dtype()),
                    "exp_avg": split["exp_avg"][n][i].clone().to(q.device),
                    "exp_avg_sq": split["exp_avg_sq"][n][i].clone().to(q.device),
                }
        return opt

    # ------------------------------------------------------------------ one member
    def _kind_of(self, optimizer: torch.optim.Optimizer) -> str:
        if isinstance(optimizer, torch.optim.SGD):
            return "sgd"
        if isinstance(optimizer, torch.optim.Adam):  # AdamW is an Adam with decoupled weight decay
            return "adamw" if optimizer.param_groups[0].get("decoupled_weight_decay", False) else "adam"
        return type(optimizer).__name__

    def load_member_optimizer(self, i: int, optimizer: torch.optim.Optimizer, steps: int | None = None) -> None:
        """The inverse of :meth:`member_optimizer`: member ``i``'s learning rate, weight decay
        and state from a ``torch.optim`` optimizer over one model of this architecture (one
        param group, parameters in ``named_parameters`` order), e.g. one restored from an
        unpacked run's resume state. The member's step count is Adam's ``step``; SGD keeps
        none, so give ``steps`` (default: 0 without a momentum buffer). The pack's shared
        ``steps`` (Adam's bias correction) is left to the caller: every live member must
        have taken that many steps."""
        kind = self._kind_of(optimizer)
        if kind != self.kind:
            raise ValueError(f"member {i}: a {kind} optimizer can't be loaded into a packed {self.kind}")
        if len(optimizer.param_groups) != 1:
            raise ValueError(f"member {i}: expected one param group, got {len(optimizer.param_groups)}")
        group = optimizer.param_groups[0]
        params = list(group["params"])
        shapes = [tuple(s) for s in self.packed.shapes.values()]
        if [tuple(p.shape) for p in params] != shapes:
            raise ValueError(f"member {i}: the optimizer's parameters do not match the packed architecture")
        if kind == "sgd":
            same = (float(group["momentum"]) == self.momentum and not group.get("nesterov")
                    and not group.get("dampening"))
        else:
            same = (tuple(float(b) for b in group["betas"]) == self.betas and float(group["eps"]) == self.eps
                    and not group.get("amsgrad"))
        if not same or group.get("maximize"):
            raise ValueError(f"member {i}: the optimizer's hyperparameters differ from the pack's")
        lr, wd = self.lr.clone(), self.weight_decay.clone()
        lr[i], wd[i] = float(group["lr"]), float(group["weight_decay"])
        self.set_lr(lr)
        self.weight_decay = _per_member(wd, self.packed.k, "weight_decay")
        self._wd_dev = self.weight_decay.to(self.packed.device, self._sdtype)
        split = {key: self.packed.split(buf) for key, buf in self.state.items()}
        found: set[int] = set()
        with torch.no_grad():
            for n, p in zip(self.packed.shapes, params, strict=True):
                st = optimizer.state.get(p, {})
                for key, rows in split.items():
                    value = st.get(key)
                    if value is None:
                        rows[n][i].zero_()
                    else:
                        rows[n][i].copy_(value)
                if "step" in st:
                    found.add(int(float(st["step"])))
        if len(found) > 1:
            raise ValueError(f"member {i}: parameters have taken different numbers of steps: {sorted(found)}")
        if found:
            n_steps = found.pop()
            if steps is not None and steps != n_steps:
                raise ValueError(f"member {i}: the optimizer took {n_steps} steps, not {steps}")
        else:
            n_steps = int(steps or 0)
        self.member_steps[i] = n_steps

    def member_rows(self, i: int) -> dict[str, torch.Tensor]:
        """Copies of member ``i``'s optimizer state rows, step count, lr and weight decay
        (restore with :meth:`load_member_rows`)."""
        out = {key: buf[i].clone() for key, buf in self.state.items()}
        out["member_steps"] = self.member_steps[i].clone()
        out["lr"], out["weight_decay"] = self.lr[i].clone(), self.weight_decay[i].clone()
        return out

    def load_member_rows(self, i: int, rows: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for key, buf in self.state.items():
                buf[i].copy_(rows[key])
            self.member_steps[i] = rows["member_steps"]
        lr, wd = self.lr.clone(), self.weight_decay.clone()
        lr[i], wd[i] = rows["lr"], rows["weight_decay"]
        self.set_lr(lr)
        self.weight_decay = _per_member(wd, self.packed.k, "weight_decay")
        self._wd_dev = self.weight_decay.to(self.packed.device, self._sdtype)


def member_lrs(epoch: int, cfgs: Sequence[TrainConfig]) -> list[float]:
    """Each member's learning rate for training epoch ``epoch`` (1-based: the pass that
    produces epoch ``epoch``), by its own schedule, as the unpacked loop sets it."""
    return [lr_at(epoch - 1, c.lr, c.epochs, c.schedule, c.warmup_epochs) for c in cfgs]


def pack_incompatibility(cfgs: Sequence[TrainConfig]) -> str | None:
    """None if these [train] configs can share a pack, else why not. Only the fields in
    :data:`PACKABLE_FIELDS` may differ; the optimizer name is compared case-insensitively."""
    if not cfgs:
        return "no configs"
    first = dataclasses.asdict(cfgs[0])
    first["optimizer"] = str(first["optimizer"]).lower()
    for i, c in enumerate(cfgs[1:], start=1):
        d = dataclasses.asdict(c)
        d["optimizer"] = str(d["optimizer"]).lower()
        diff = [f for f in d if f not in PACKABLE_FIELDS and d[f] != first[f]]
        if diff:
            return f"member {i} differs from member 0 in train.{', train.'.join(diff)}"
    return None
