"""Spectral truncation at every layer at once, inside the forward pass.

Each chosen tap's output a (flattened to (B, D_l)) is replaced, as the network runs, by its
projection onto the top-d_l principal directions of that tap's training features:

    a  ->  mu_l + V_l V_l^T (a - mu_l),     V_l = the top d_l eigenvectors (D_l x d_l)

so every later layer, and the original head, see the projected activations (forward hooks;
for a wrapped model's ``features`` tap a pre-hook on the head). :class:`ProjectedModel` is the
repaired network as an ordinary ``nn.Module``: the backbone plus one :class:`TapProjection`
(buffers ``mean`` and ``basis``) per projected tap; the hooks exist only during its forward
pass, so the backbone is left untouched for any other use.

:func:`fit_layerwise` chooses the d_l on noisy validation (observed labels) with the
one-standard-error rule, in one of two ways:

* ``"greedy"`` (default): taps in order, shallow to deep. The spectrum of tap l is computed
  with the projections already chosen for the taps before it in place (one training pass per
  tap), every d of tap l's grid is scored with the taps after it untouched, and tap l keeps the
  smallest d (no projection = the tap's full width is always a candidate) whose correct count is
  within one binomial standard error of the best count seen in any evaluation so far (the
  running best, as ``weights.choose_ranks(strategy="greedy")``), so the chosen network stays
  within one SE of the best one scored and per-layer losses cannot add up.
* ``"shared"``: one pass computes every tap's spectrum on the unprojected network; one
  fraction f is shared, d_l = max(1, ceil(f D_l)), and the smallest f within one SE of the
  best is kept. Cheaper, but a deeper tap's directions are those of the unprojected network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from noisescope.data.base import NoisyDataset
from noisescope.evaluate import correct
from noisescope.evidence.rules import within_one_se
from noisescope.models.base import TappedModel, _HeadInput
from noisescope.spectral.export import read_export, save_module_files
from noisescope.spectral.stats import FeatureStats, Spectrum
from noisescope.taps import capture, iter_taps

FORMAT = "noisescope.projected/1"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "projected.json"
STRATEGIES = ("greedy", "shared")
DEFAULT_FRACTIONS = (0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)


class TapProjection(nn.Module):
    """a -> mean + (a - mean) V V^T on the flattened output of one tap, reshaped back.

    Buffers: ``mean`` (D,), ``basis`` (D, d) orthonormal columns (float32)."""

    def __init__(self, dim: int, d: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("basis", torch.zeros(dim, d))

    @classmethod
    def from_spectrum(cls, spectrum: Spectrum, d: int) -> TapProjection:
        if not 1 <= d <= spectrum.dim:
            raise ValueError(f"d must lie in [1, {spectrum.dim}], got {d}")
        p = cls(spectrum.dim, d)
        with torch.no_grad():
            p.mean.copy_(spectrum.mean.float().cpu())
            p.basis.copy_(spectrum.eigvecs[:, :d].float().cpu())
        return p

    @property
    def d(self) -> int:
        return int(self.basis.shape[1])

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        flat = a.flatten(1).to(self.mean.dtype) - self.mean
        out = (flat @ self.basis) @ self.basis.T + self.mean
        return out.to(a.dtype).reshape(a.shape)


def _key(tap: str) -> str:
    return tap.replace(".", "__")


class ProjectedModel(nn.Module):
    """A trained network whose chosen taps' outputs are projected inside the forward pass.

    Args:
        backbone: the trained TappedModel (shared, not copied; no hook stays on it).
        projections: tap name -> :class:`TapProjection`.
    """

    def __init__(self, backbone: TappedModel, projections: dict[str, TapProjection]) -> None:
        super().__init__()
        taps = dict(backbone.taps())
        unknown = [t for t in projections if t not in taps]
        if unknown:
            raise ValueError(f"not taps of the model: {unknown}; taps are {list(taps)}")
        self.backbone = backbone
        self.tap_names = [t for t in taps if t in projections]  # forward order
        self.projections = nn.ModuleDict({_key(t): projections[t] for t in self.tap_names})

    def dims(self) -> dict[str, int]:
        """Tap -> kept d."""
        return {t: self.projections[_key(t)].d for t in self.tap_names}

    @contextmanager
    def hooks(self) -> Iterator[None]:
        """The projection hooks on the backbone, for the duration of the block."""
        modules = dict(self.backbone.taps())
        handles = []
        try:
            for t in self.tap_names:
                proj, module = self.projections[_key(t)], modules[t]
                if isinstance(module, _HeadInput):
                    def pre(_m: nn.Module, inp: tuple, proj: TapProjection = proj) -> tuple:
                        return (proj(inp[0].flatten(1)), *inp[1:])
                    handles.append(module.target.register_forward_pre_hook(pre))
                else:
                    def post(_m: nn.Module, _inp: object, out: torch.Tensor,
                             proj: TapProjection = proj) -> torch.Tensor:
                        return proj(out)
                    handles.append(module.register_forward_hook(post))
            yield
        finally:
            for h in handles:
                h.remove()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.hooks():
            return self.backbone(x)


@dataclass
class LayerwiseChoice:
    """What :func:`fit_layerwise` chose and every evaluation it made.

    Attributes:
        dims: tap -> chosen d (the tap's full width where it is not projected).
        widths: tap -> full width D_l.
        module: the repaired network (:class:`ProjectedModel`).
        strategy, fraction (shared only), correct (noisy-validation count of the choice),
        best_correct (the 1se reference), n_val, trials (``{"tap", "d" or "fraction", "correct"}``).
    """

    dims: dict[str, int]
    widths: dict[str, int]
    module: ProjectedModel
    strategy: str
    fraction: float | None
    correct: int
    best_correct: int
    n_val: int
    trials: list[dict] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n_val

    def describe(self) -> str:
        """``"layer1 12/512, layer2 -, layer3 8/512"`` (- = not projected)."""
        return ", ".join(f"{t} {d}/{self.widths[t]}" if d < self.widths[t] else f"{t} -"
                         for t, d in self.dims.items())


def d_candidates(width: int, per_octave: int = 4) -> list[int]:
    """1, 2, 3, ... geometrically spaced (``per_octave`` values per doubling once the steps
    exceed 1) below ``width``, and ``width`` itself."""
    if width < 1 or per_octave < 1:
        raise ValueError(f"need width >= 1 and per_octave >= 1, got {width}, {per_octave}")
    grid = {int(width)}
    v = 1.0
    while v < width:
        grid.add(int(round(v)))
        v = max(v + 1, v * 2 ** (1 / per_octave))
    return sorted(g for g in grid if 1 <= g <= width)


def _spectra(model: nn.Module, x: torch.Tensor, taps: list[str], batch_size: int,
             device: torch.device | str) -> dict[str, Spectrum]:
    """Training-feature spectra of ``taps`` of the TappedModel under ``model`` (which may be a
    ProjectedModel: its upstream projections act, the captured tap output is the unprojected one)."""
    base = model.backbone if isinstance(model, ProjectedModel) else model
    stats: dict[str, FeatureStats] = {}
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), capture(base, taps) as acts:
            for s in range(0, len(x), batch_size):
                model(x[s:s + batch_size].to(device))
                for t in taps:
                    if t not in stats:
                        stats[t] = FeatureStats(acts[t].shape[1])
                    stats[t].update(acts[t])
    finally:
        model.train(was)
    return {t: s.spectrum() for t, s in stats.items()}


def tap_widths(model: TappedModel, x: torch.Tensor, device: torch.device | str | None = None) -> dict[str, int]:
    """Tap -> flattened output width, from one forward pass of two samples."""
    _, _, acts = next(iter_taps(model, x[:2], list(model.taps()), 2, device))
    return {t: int(a.shape[1]) for t, a in acts.items()}


@torch.no_grad()
def fit_layerwise(
    model: TappedModel,
    data: NoisyDataset,
    taps: Sequence[str] | None = None,
    strategy: str = "greedy",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    max_dim: int = 4096,
    batch_size: int = 2048,
    device: torch.device | str | None = None,
    progress: Callable[[str], None] | None = None,
) -> LayerwiseChoice:
    """Choose d_l for every tap on noisy validation (module docstring) and build the network.

    Args:
        model: the trained network (not modified).
        data: training inputs (spectra, no labels used) and the noisy validation split (choice).
        taps: taps to project (default every tap at most ``max_dim`` wide).
        strategy: ``"greedy"`` or ``"shared"``.
        fractions: the shared strategy's grid of kept fractions (1.0 always added).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if len(data.y_val) == 0:
        raise ValueError("the layer-wise truncation chooses d on noisy validation: data has no validation split")
    device = device or next(model.parameters()).device
    widths = tap_widths(model, data.x_train, device)
    names = list(taps) if taps is not None else [t for t, w in widths.items() if w <= max_dim]
    unknown = [t for t in names if t not in widths]
    if unknown:
        raise ValueError(f"not taps of the model: {unknown}; taps are {list(widths)}")
    if not names:
        raise ValueError(f"no tap is at most max_dim={max_dim} wide")
    n_val = len(data.y_val)
    trials: list[dict] = []

    def score(projs: dict[str, TapProjection], **info: object) -> int:
        m = ProjectedModel(model, projs).to(device) if projs else model
        k = int(correct(m, data.x_val, data.y_val, batch_size, device).sum())
        trials.append({**info, "correct": k})
        return k

    say = progress or (lambda _m: None)
    if strategy == "shared":
        spectra = _spectra(model, data.x_train, names, batch_size, device)
        grid = sorted({float(f) for f in fractions} | {1.0})
        counts, options = [], []
        for f in grid:
            dims = {t: max(1, math.ceil(f * widths[t] - 1e-9)) for t in names}
            projs = {t: TapProjection.from_spectrum(spectra[t], d) for t, d in dims.items() if d < widths[t]}
            counts.append(score(projs, fraction=f, dims=dims))
            options.append((f, dims, projs))
        best = max(counts)
        i = next(i for i, c in enumerate(counts) if within_one_se(c, best, n_val))
        f, dims, projs = options[i]
        say(f"layer-wise (shared): fraction {f}")
        return LayerwiseChoice(dims, {t: widths[t] for t in names}, ProjectedModel(model, projs).to(device).eval(),
                               strategy, f, counts[i], best, n_val, trials)

    projs: dict[str, TapProjection] = {}
    current = best = score({}, tap=None, d=None)
    dims = {t: widths[t] for t in names}
    for t in names:
        upstream = ProjectedModel(model, projs).to(device) if projs else model
        spec = _spectra(upstream, data.x_train, [t], batch_size, device)[t]
        results = {widths[t]: (current, None)}
        for d in d_candidates(widths[t]):
            if d < widths[t]:
                p = TapProjection.from_spectrum(spec, d)
                results[d] = (score({**projs, t: p}, tap=t, d=d), p)
        best = max(best, *(c for c, _ in results.values()))
        d_pick = min(d for d, (c, _) in results.items() if within_one_se(c, best, n_val))
        current, p = results[d_pick]
        dims[t] = d_pick
        if p is not None:
            projs[t] = p
        say(f"layer-wise (greedy): {t} d={d_pick}/{widths[t]}")
    return LayerwiseChoice(dims, {t: widths[t] for t in names}, ProjectedModel(model, projs).to(device).eval(),
                           strategy, None, current, best, n_val, trials)


def save_projected(module: ProjectedModel, path: str | Path, meta: dict | None = None) -> Path:
    """Write ``path/model.safetensors`` (the full state_dict: backbone and projections) and
    ``path/projected.json`` (format, the projected taps with their widths and d, and ``meta``;
    ``meta["model"] = {"arch", "input_shape", "num_classes", "options", "input_norm"}`` lets
    :func:`load_projected` rebuild the backbone by itself)."""
    path = Path(path)
    info = {"format": FORMAT,
            "taps": {t: {"dim": int(module.projections[_key(t)].basis.shape[0]), "d": module.projections[_key(t)].d}
                     for t in module.tap_names},
            **(meta or {})}
    return save_module_files(module, Path(path), info, META_FILE)


def load_projected(path: str | Path, model: nn.Module | None = None) -> ProjectedModel:
    """Load a :class:`ProjectedModel` written by :func:`save_projected` (no training state).

    Args:
        model: an instance of the original architecture (a TappedModel) to load into; None
            rebuilds it with ``noisescope.models.build_model`` from the JSON's ``"model"`` entry.
    """
    from safetensors.torch import load_file

    info, weights_path, model = read_export(path, META_FILE, FORMAT, model)
    projs = {t: TapProjection(int(v["dim"]), int(v["d"])) for t, v in info["taps"].items()}
    out = ProjectedModel(model, projs)
    out.load_state_dict(load_file(str(weights_path)), strict=True)
    return out.eval()
