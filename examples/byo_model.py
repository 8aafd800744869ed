"""Bring your own model: the spectral probe and spectral truncation on any ``nn.Module``.

This example defines its own network (nothing noisescope-specific in it), trains it on
scikit-learn's bundled digits with 40% symmetric label noise until it memorizes the noisy
labels, then

1. measures the spectrum and the all-d linear probe on two taps *you* choose;
2. repairs the trained network by spectral truncation, with d picked on the noisy validation
   split only (no clean labels);
3. exports the repaired network as a plain ``nn.Module``, saves it (safetensors + JSON) and
   loads it back into a fresh instance of the same class.

Run it with ``python examples/byo_model.py`` (under a minute on 2 CPU cores). What it needs
from you is only: the dotted name of your final ``nn.Linear`` (``head="classifier"``) and the
dotted names of the submodules whose outputs you want analysed (``taps=[...]``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from noisescope.data import load_dataset
from noisescope.data.noisy import make_noisy_dataset
from noisescope.models import wrap_model
from noisescope.spectral import SpectralTruncation, analyse, effective_rank, load_truncated, save_truncated


class SmallNet(nn.Module):
    """A user's network: body -> embedding -> linear classifier. Inputs: uint8 images (B, 1, 8, 8)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU()
        )
        self.embed = nn.Sequential(nn.Linear(256, 128), nn.ReLU())
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(self.body(x.float() / 255.0)))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    """Plain Adam training on the observed (noisy) labels."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def main(epochs: int = 100, seed: int = 0, out_dir: str | None = None, verbose: bool = True) -> dict:
    say = print if verbose else (lambda *a, **k: None)
    data = make_noisy_dataset(load_dataset("digits", seed=seed), "symmetric", rate=0.4,
                              val_fraction=0.2, seed=seed)
    say(f"digits: {len(data.x_train)} train (40% symmetric noise), {len(data.x_val)} noisy val, "
        f"{len(data.x_test)} clean test")

    torch.manual_seed(seed)
    net = SmallNet()
    train(net, data.x_train, data.y_train, epochs, seed)
    noisy = data.noise_mask
    memorized = accuracy(net, data.x_train[noisy], data.y_train[noisy])
    say(f"trained {epochs} epochs: noisy labels memorized {memorized:.3f}, "
        f"clean test acc {accuracy(net, data.x_test, data.y_test):.3f}")

    # 1. your module through the noisescope interface: head + the taps you choose
    model = wrap_model(net, head="classifier", taps=["body", "embed"])
    results = analyse(model, data, taps=["body", "embed"])
    out: dict = {"memorized": memorized, "final_test": accuracy(net, data.x_test, data.y_test)}
    for tap, res in results.items():
        j = res.at(res.d_star)
        say(f"tap {tap:>6}: D={res.spectrum.dim}, effective rank {effective_rank(res.spectrum.eigvals):6.1f}, "
            f"probe d*={res.d_star:3d}  val {res.probe_acc('val')[j]:.3f}  clean test {res.probe_acc('test')[j]:.3f}"
            f"  (all D: {res.probe_acc('test')[-1]:.3f}); segregation "
            f"{res.tail_noisy[j] - res.tail_clean[j]:+.3f}")
        out[f"probe_test_{tap}"] = float(res.probe_acc("test")[j])

    # 2. repair: the original head on the top-d directions of phi (the classifier's input)
    trunc = SpectralTruncation(head="original").fit_model(model, data)
    repaired = trunc.to_module(model)
    out["truncated_test"] = accuracy(repaired, data.x_test, data.y_test)
    out["d"] = trunc.d_
    say(f"spectral truncation of phi: d={trunc.d_} of {trunc.spectrum_.dim}, clean test acc "
        f"{out['final_test']:.3f} -> {out['truncated_test']:.3f}")

    # ... or a refit linear head on an inner tap you chose
    inner = SpectralTruncation(head="refit").fit_model(model, data, tap="body")
    inner_module = inner.to_module(model)
    out["inner_test"] = accuracy(inner_module, data.x_test, data.y_test)
    say(f"refit head on tap 'body' (d={inner.d_}): clean test acc {out['inner_test']:.3f}")

    # 3. export, and load into a fresh instance of your class (no training state needed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(out_dir or tmp) / "repaired"
        save_truncated(repaired, path, meta={"note": "SmallNet from examples/byo_model.py"})
        fresh = wrap_model(SmallNet(), head="classifier", taps=["body", "embed"])
        loaded = load_truncated(path, model=fresh)
        with torch.no_grad():
            same = torch.equal(loaded(data.x_test), repaired(data.x_test))
        say(f"saved to {path} and reloaded: identical logits = {same}")
    out["reload_identical"] = same
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="keep the exported model in this directory")
    a = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    main(a.epochs, a.seed, a.out)
