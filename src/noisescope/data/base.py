"""Containers for datasets: plain tensors, no per-sample Python objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Dataset:
    """A labelled train/test dataset as tensors.

    Attributes:
        x_train: (N, ...) inputs: float32 features, or uint8 images (N, C, H, W).
        y_train: (N,) int64 true labels in [0, num_classes).
        x_test: (M, ...) inputs, same layout as ``x_train``.
        y_test: (M,) int64 labels.
        num_classes: C.
        name: short identifier, e.g. ``"fashion_mnist"``.
        classes: optional class names, length C.
        meta: free-form, JSON-serializable provenance (source path, licence, planted k*, ...).
        train_index: optional (N,) int64: row of each training sample in the source's full
            training set (set by subsetting; ``None`` = identity). Label files (CIFAR-10N)
            are indexed by it.
        source: one human-readable line saying where the data came from (e.g. "Fashion-MNIST,
            full (60000 train / 10000 test) from /usr/share/datasets/fashion-mnist", or the
            embedded subset and why it was used); the command line prints it.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str
    classes: list[str] | None = None
    meta: dict = field(default_factory=dict)
    train_index: torch.Tensor | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.x_train) != len(self.y_train):
            raise ValueError(
                f"x_train has {len(self.x_train)} rows but y_train has {len(self.y_train)}"
            )
        if len(self.x_test) != len(self.y_test):
            raise ValueError(
                f"x_test has {len(self.x_test)} rows but y_test has {len(self.y_test)}"
            )
        for nm in ("y_train", "y_test"):
            y = getattr(self, nm)
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(
                    f"{nm} must lie in [0, {self.num_classes}); "
                    f"got [{int(y.min())}, {int(y.max())}]"
                )
        if self.train_index is not None and len(self.train_index) != len(self.y_train):
            raise ValueError(
                f"train_index has {len(self.train_index)} rows but y_train has {len(self.y_train)}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


@dataclass
class NoisyDataset:
    """A dataset after label noise and the noisy-validation split.

    Train and validation carry observed labels (possibly noisy) and, for analysis only,
    the true labels. The noise mask is ``y_obs != y_true``.

    Attributes:
        x_train: (N, ...) training inputs.
        y_train: (N,) observed (noisy) labels used for training.
        y_train_true: (N,) true labels.
        x_val: (V, ...) held-out inputs with observed labels ``y_val`` (noisy validation).
        y_val: (V,) observed labels.
        y_val_true: (V,) true labels (never used for model selection).
        x_test: (M, ...) clean test inputs.
        y_test: (M,) clean test labels.
        num_classes: C.
        name: dataset name.
        noise: description of the noise model and its realized statistics.
        classes: optional class names, length C.
        source: the originating :attr:`Dataset.source` line (where the data came from).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    y_train_true: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    y_val_true: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str
    noise: dict = field(default_factory=dict)
    classes: list[str] | None = None
    source: str = ""

    @property
    def noise_mask(self) -> torch.Tensor:
        """(N,) bool: training samples whose observed label differs from the true one."""
        return self.y_train != self.y_train_true

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])
