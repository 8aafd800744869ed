"""The truncated network as an ordinary module, and its files.

:class:`TruncatedModel` is a trained network whose tap output goes through a
:class:`SpectralHead` (centre, project onto the top-d principal directions, linear map).
:func:`save_truncated` writes ``model.safetensors`` + ``truncation.json``; :func:`load_truncated`
reads them back without any training state (no optimizer, no run store, no pickles).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from noisescope.io import atomic_write, jsonable
from noisescope.models.base import TappedModel
from noisescope.spectral.linear_probe import Readout
from noisescope.spectral.stats import Spectrum
from noisescope.taps import capture

FORMAT = "noisescope.truncated/1"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "truncation.json"


class SpectralHead(nn.Module):
    """Centre, project onto the top-d principal directions, apply a linear map.

    (B, D) features -> (B, C) scores: ``linear((f - mean) @ basis)``.

    Buffers: ``mean`` (D,), ``basis`` (D, d) orthonormal columns; ``linear``: nn.Linear(d, C).
    """

    def __init__(self, dim: int, d: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("basis", torch.zeros(dim, d))
        self.linear = nn.Linear(d, num_classes)

    @classmethod
    def from_readout(cls, spectrum: Spectrum, readout: Readout, d: int) -> SpectralHead:
        dim, c = spectrum.dim, readout.weights.shape[1]
        head = cls(dim, d, c)
        with torch.no_grad():
            head.mean.copy_(spectrum.mean.float().cpu())
            head.basis.copy_(spectrum.eigvecs[:, :d].float().cpu())
            head.linear.weight.copy_(readout.weights[:d].T.float().cpu())
            head.linear.bias.copy_(readout.intercept.float().cpu())
        return head

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.linear((feats.flatten(1).to(self.mean.dtype) - self.mean) @ self.basis)


class TruncatedModel(nn.Module):
    """A trained network whose tap output goes through a :class:`SpectralHead`.

    Args:
        backbone: the original network as a TappedModel (``wrap_model`` a user module first).
        tap: the tap whose output is projected (the penultimate tap for ``head="original"``).
        head: the spectral head.
    """

    def __init__(self, backbone: TappedModel, tap: str, head: SpectralHead) -> None:
        super().__init__()
        if tap not in backbone.taps():
            raise ValueError(f"tap {tap!r} not in the model's taps {list(backbone.taps())}")
        self.backbone = backbone
        self.tap = tap
        self.spectral_head = head

    def tap_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) inputs -> (B, D) output of the tap."""
        if self.tap == self.backbone.feature_tap:
            return self.backbone.features(x).flatten(1)
        with capture(self.backbone, [self.tap]) as acts:
            self.backbone(x)
        return acts[self.tap]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spectral_head(self.tap_features(x))


def save_truncated(module: TruncatedModel, path: str | Path, meta: dict | None = None) -> Path:
    """Write ``path/model.safetensors`` (the full state_dict) and ``path/truncation.json``.

    ``meta`` may hold ``{"model": {"arch", "input_shape", "num_classes", "options"}}`` so that
    :func:`load_truncated` can rebuild a noisescope model by itself, plus anything informative.
    """
    path = Path(path)
    head = module.spectral_head
    info = {
        "format": FORMAT,
        "tap": module.tap,
        "feature_dim": int(head.basis.shape[0]),
        "d": int(head.basis.shape[1]),
        "num_classes": int(head.linear.out_features),
        **(meta or {}),
    }
    return save_module_files(module, path, info, META_FILE)


def save_module_files(module: nn.Module, path: Path, info: dict, meta_file: str) -> Path:
    """Write ``path/model.safetensors`` (the module's state_dict) and ``path/<meta_file>`` (JSON),
    each atomically; the shared last step of every exported repair."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path / WEIGHTS_FILE, lambda p: save_file(state, str(p)))
    atomic_write(path / meta_file, lambda p: p.write_text(json.dumps(jsonable(info), indent=2) + "\n"))
    return path


def load_truncated(path: str | Path, model: nn.Module | None = None) -> TruncatedModel:
    """Load a truncated model written by :func:`save_truncated`.

    Args:
        path: the directory holding ``model.safetensors`` and ``truncation.json``.
        model: an instance of the original architecture (a TappedModel, e.g. your wrapped
            module) to load the weights into; None rebuilds it with
            ``noisescope.models.build_model`` from the ``"model"`` entry of the JSON.
    """
    info, weights_path, model = read_export(path, META_FILE, FORMAT, model)
    head = SpectralHead(int(info["feature_dim"]), int(info["d"]), int(info["num_classes"]))
    out = TruncatedModel(model, info["tap"], head)
    out.load_state_dict(load_file(str(weights_path)), strict=True)
    return out.eval()


def read_export(path: str | Path, meta_file: str, fmt: str, model: nn.Module | None
                ) -> tuple[dict, Path, TappedModel]:
    """The shared first step of loading an exported module: check that ``path`` holds
    ``model.safetensors`` and ``meta_file`` of format ``fmt``; return (the JSON, the weights
    path, ``model`` or the backbone rebuilt from the JSON's ``"model"`` entry)."""
    path = Path(path)
    meta_path, weights_path = path / meta_file, path / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{path} must contain {meta_file} and {WEIGHTS_FILE}")
    info = json.loads(meta_path.read_text())
    if info.get("format") != fmt:
        raise ValueError(f"{meta_path} has format {info.get('format')!r}, expected {fmt!r}")
    if model is None:
        if not info.get("model"):
            raise ValueError(f"{meta_path} does not say how to build the network (no 'model' entry): "
                             "pass model=<an instance of the original architecture>")
        from noisescope.models import build_from_spec

        model = build_from_spec(info["model"])
    if not isinstance(model, TappedModel):
        raise TypeError("model must be a TappedModel: wrap your module with noisescope.wrap_model")
    return info, weights_path, model
