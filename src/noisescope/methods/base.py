"""The protocol of a training-time method: a loss per batch chosen by ``train.method``.

The training loop (:func:`noisescope.training.loop.train_epoch`) calls, per epoch,
:meth:`Method.start_epoch`, then per batch :meth:`Method.loss` (a scalar to back-propagate
through the run's model and any network the method owns) and, after the run's optimizer
step, :meth:`Method.after_step`. Cross-entropy (``train.method = "ce"``) uses no method
object: the loop's plain path runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from noisescope.models.base import TappedModel

Forward = Callable[[torch.Tensor], torch.Tensor]


class Method:
    """A training-time method.

    Attributes:
        name: the ``train.method`` value.
        compute: the training compute as a multiple of one cross-entropy run (forward and
            backward passes per sample; e.g. 2 for Co-teaching's two networks).
        options: the resolved hyperparameters (the paper's defaults overridden by
            ``train.method_options``).
    """

    name = "ce"
    compute = 1.0

    def __init__(self, model: TappedModel, n_train: int, num_classes: int, options: dict) -> None:
        self.model = model
        self.n_train = n_train
        self.num_classes = num_classes
        self.options = options
        self.epoch = 0

    def start_epoch(self, epoch: int, lr: float | None = None) -> None:
        """Called before epoch ``epoch`` (1-based: the epoch being trained) with its learning
        rate."""
        self.epoch = epoch

    def loss(self, forward: Forward, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The scalar loss of batch ``xb`` (B, ...) with observed labels ``yb`` (B,) at
        training rows ``idx`` (B,)."""
        return F.cross_entropy(forward(xb), yb)

    def after_step(self) -> None:
        """Called after the run's optimizer step (a method's own networks step here)."""
