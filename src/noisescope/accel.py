"""GPU speed features for the training loop, each a guarded no-op where it does not apply.

* bf16 autocast: matmuls and convolutions in bfloat16 with float32 weights and optimizer
  state (no loss scaling needed, unlike fp16). On CUDA devices with bf16 support only.
* channels_last: NHWC memory format for convolutional models, which tensor-core
  convolution kernels prefer. On CUDA only, and only for models with 2-D convolutions.
* ``torch.compile``: fuses the training forward/backward. On CUDA only (on a CPU it needs
  a C++ toolchain and gains little for these models). The compiled callable shares the
  parameters of the original model; hooks (taps, probes) must use the *original* model.
* backend flags: cuDNN autotuning and TF32 float32 matmuls on CUDA.

Usage in a training loop::

    plan = accel.plan(device, precision=cfg.precision, compile=cfg.compile)
    accel.configure_backends(plan)
    model = accel.prepare_model(model, plan)      # channels_last if planned
    step_fn = accel.compiled(model, plan)         # use for training forward passes only
    meter = accel.DeviceMean(device)
    # pipeline = TensorPipeline(..., channels_last=plan.channels_last)
    for xb, yb, idx in pipeline:
        with accel.autocast(plan):
            loss = F.cross_entropy(step_fn(xb), yb)
        ...
        meter.add(loss.detach(), len(yb))         # no host sync
    epoch_loss = meter.value()                    # one sync per epoch
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class AccelPlan:
    """Which speed features are on for a device, and why others are off.

    Attributes:
        device: the training device.
        bf16: autocast to bfloat16.
        channels_last: NHWC model weights and batches.
        compile: wrap the training forward in ``torch.compile``.
        skipped: human-readable reasons for requested features that were turned off.
    """

    device: torch.device
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    skipped: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "device": str(self.device),
            "bf16": self.bf16,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "skipped": list(self.skipped),
        }


def has_conv(model: nn.Module) -> bool:
    """True if the model contains a 2-D convolution (channels_last only helps those)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def plan(
    device: torch.device | str,
    precision: str = "fp32",
    compile: bool = False,
    channels_last: bool | None = None,
    model: nn.Module | None = None,
) -> AccelPlan:
    """Decide the speed features for ``device``.

    Args:
        device: training device.
        precision: ``"fp32"`` or ``"bf16"`` (bf16 is honoured on CUDA with bf16 support).
        compile: request ``torch.compile`` (honoured on CUDA).
        channels_last: request NHWC; None = on for CUDA when ``model`` has convolutions
            (or when no model is given).
        model: used to decide the channels_last default.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    device = torch.device(device)
    cuda = device.type == "cuda" and torch.cuda.is_available()
    skipped: list[str] = []
    bf16 = False
    if precision == "bf16":
        if cuda and torch.cuda.is_bf16_supported():
            bf16 = True
        else:
            skipped.append(f"bf16 autocast: off on {device} (needs a CUDA GPU with bf16)")
    if channels_last is None:
        channels_last = cuda and (model is None or has_conv(model))
    elif channels_last and not cuda:
        skipped.append(f"channels_last: off on {device} (helps CUDA convolutions only)")
        channels_last = False
    do_compile = False
    if compile:
        if cuda:
            do_compile = True
        else:
            skipped.append(f"torch.compile: off on {device} (enabled on CUDA only)")
    return AccelPlan(device, bf16, bool(channels_last), do_compile, tuple(skipped))


def configure_backends(p: AccelPlan) -> None:
    """cuDNN autotuning and TF32 float32 matmuls on CUDA; nothing elsewhere."""
    if p.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(p: AccelPlan) -> contextlib.AbstractContextManager:
    """bf16 autocast context when planned, else a no-op context."""
    if p.bf16:
        return torch.autocast(device_type=p.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, p: AccelPlan) -> nn.Module:
    """Move ``model`` to the plan's device (and NHWC format when planned); same object."""
    model = model.to(p.device)
    if p.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def compiled(
    model: nn.Module, p: AccelPlan, mode: str | None = None
) -> Callable[..., torch.Tensor]:
    """The callable to use for *training* forward passes: ``torch.compile(model)`` when
    planned, else ``model``. Both share parameters; keep using ``model`` for probes."""
    if not p.compile:
        return model
    return torch.compile(model, mode=mode)


class DeviceMean:
    """Running weighted mean kept on the device: ``add`` never syncs, ``value`` syncs once."""

    def __init__(self, device: torch.device | str) -> None:
        device = torch.device(device)
        self.dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS: no float64
        self.total = torch.zeros((), dtype=self.dtype, device=device)
        self.count = 0

    def add(self, value: torch.Tensor, weight: int = 1) -> None:
        """Add a scalar tensor ``value`` (e.g. a batch-mean loss) with ``weight`` samples."""
        self.total += value.detach().to(self.dtype) * weight
        self.count += int(weight)

    def value(self) -> float:
        """The weighted mean (nan when nothing was added)."""
        return float(self.total) / self.count if self.count else float("nan")
