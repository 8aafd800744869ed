"""Per-sample assigned-label margins, and their compact record over the probed epochs.

The margin of sample i for its observed label y_i under logits h(x_i) is

    m_i = h_y(x_i) - max_{c != y_i} h_c(x_i),

positive when the model predicts the observed label (Pleiss et al. 2020, AUM). The training-
dynamics scores (:mod:`noisescope.detect.dynamics`) are functions of the (E, N) table of margins
recorded at E probed epochs, which :class:`MarginRecorder` keeps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from noisescope.detect._util import Array, as_labels

FP16_MAX = float(torch.finfo(torch.float16).max)


@torch.no_grad()
def assigned_margin(logits: Array, labels: Array) -> torch.Tensor:
    """(N, C) logits, (N,) labels -> (N,) margin h_y - max_{c != y} h_c (logit dtype, logit device).

    With one class the margin is +inf (there is no competitor).
    """
    z = torch.as_tensor(logits)
    if z.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {tuple(z.shape)}")
    y = as_labels(labels, len(z)).to(z.device)
    if len(y) and int(y.max()) >= z.shape[1]:
        raise ValueError(f"labels go up to {int(y.max())} but logits have {z.shape[1]} classes")
    if not z.is_floating_point():
        z = z.double()
    own = z.gather(1, y[:, None]).squeeze(1)
    rival = z.clone()
    rival.scatter_(1, y[:, None], -torch.inf)
    return own - rival.max(1).values


class MarginRecorder:
    """The assigned-label margins of N training samples at each probed epoch.

    ``update(epoch, logits, labels)`` adds one epoch's margins (all N samples at once, or a batch
    with ``index``); a repeated epoch overwrites its row (so a resumed run may re-probe its last
    epoch). Storage is one growing (E, N) block of ``dtype`` (float16: 2 bytes per sample and
    epoch, margins clamped to +-65504; float32 for full precision).

    Args:
        n: number of samples N.
        dtype: ``torch.float16`` (default) or ``torch.float32``.

    Read back with :attr:`margins` (E, N), :attr:`epochs` (E,), :meth:`to_frame`; persist with
    :meth:`state_dict` / :meth:`load_state_dict`.
    """

    def __init__(self, n: int, dtype: torch.dtype = torch.float16) -> None:
        if n <= 0:
            raise ValueError(f"n must be > 0, got {n}")
        if dtype not in (torch.float16, torch.float32):
            raise ValueError(f"dtype must be torch.float16 or torch.float32, got {dtype}")
        self.n = int(n)
        self.dtype = dtype
        self._block = torch.empty(0, self.n, dtype=dtype)
        self._epochs: list[int] = []
        self._filled: list[torch.Tensor] = []  # per row: (N,) bool, which samples are recorded

    # ------------------------------------------------------------------ writing
    def _row(self, epoch: int) -> int:
        epoch = int(epoch)
        if epoch in self._epochs:
            return self._epochs.index(epoch)
        if self._epochs and epoch < self._epochs[-1]:
            raise ValueError(f"epoch {epoch} comes before the last recorded epoch {self._epochs[-1]}")
        e = len(self._epochs)
        if e == len(self._block):  # grow geometrically
            grown = torch.full((max(4, 2 * e), self.n), float("nan"), dtype=self.dtype)
            grown[:e] = self._block[:e]
            self._block = grown
        self._block[e] = float("nan")
        self._epochs.append(epoch)
        self._filled.append(torch.zeros(self.n, dtype=torch.bool))
        return e

    @torch.no_grad()
    def update(self, epoch: int, logits: Array, labels: Array, index: Array | slice | None = None) -> None:
        """Record the margins of ``logits`` (B, C) for ``labels`` (B,) at ``epoch``.

        ``index`` says which samples the rows are (a slice or (B,) int indices into 0..N-1);
        None means all N samples in order.
        """
        m = assigned_margin(logits, labels).detach().to("cpu", torch.float32)
        if index is None:
            if len(m) != self.n:
                raise ValueError(f"got margins of {len(m)} samples without index for a recorder of {self.n}")
            index = slice(0, self.n)
        if not isinstance(index, slice):
            index = torch.as_tensor(index).long().cpu().reshape(-1)
            if len(index) != len(m):
                raise ValueError(f"index has {len(index)} entries for {len(m)} rows of logits")
            if len(index) and (int(index.min()) < 0 or int(index.max()) >= self.n):
                raise ValueError(f"index must lie in [0, {self.n})")
        elif len(range(*index.indices(self.n))) != len(m):
            raise ValueError(f"slice {index} does not cover {len(m)} rows")
        self._store(epoch, index, m)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._epochs)

    @property
    def epochs(self) -> torch.Tensor:
        """(E,) int64 recorded epochs, increasing."""
        return torch.tensor(self._epochs, dtype=torch.int64)

    @property
    def margins(self) -> torch.Tensor:
        """(E, N) recorded margins (``dtype``); NaN where a sample was not recorded at an epoch."""
        return self._block[: len(self._epochs)]

    def complete(self) -> bool:
        """True when every recorded epoch has every sample's margin."""
        return all(bool(f.all()) for f in self._filled)

    def to_frame(self) -> pd.DataFrame:
        """Long format for Parquet: columns ``epoch`` (int64), ``index`` (int64), ``margin``
        (float32), one row per recorded (epoch, sample), epoch-major."""
        parts = []
        for row, epoch in enumerate(self._epochs):
            idx = torch.nonzero(self._filled[row]).squeeze(1)
            parts.append(pd.DataFrame({
                "epoch": np.full(len(idx), epoch, dtype=np.int64),
                "index": idx.numpy().astype(np.int64),
                "margin": self._block[row, idx].float().numpy(),
            }))
        if not parts:
            return pd.DataFrame({"epoch": pd.Series(dtype="int64"), "index": pd.Series(dtype="int64"),
                                 "margin": pd.Series(dtype="float32")})
        return pd.concat(parts, ignore_index=True)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, n: int, dtype: torch.dtype = torch.float16) -> MarginRecorder:
        """Rebuild a recorder from :meth:`to_frame`'s long table (e.g. read from Parquet)."""
        missing = {"epoch", "index", "margin"} - set(frame.columns)
        if missing:
            raise ValueError(f"frame lacks column(s) {sorted(missing)}")
        rec = cls(n, dtype)
        for epoch, part in frame.sort_values(["epoch", "index"]).groupby("epoch", sort=True):
            rec._fill(int(epoch), torch.from_numpy(part["index"].to_numpy(np.int64, copy=True)),
                      torch.from_numpy(part["margin"].to_numpy(np.float32, copy=True)), "frame")
        return rec

    @classmethod
    def from_parquet(cls, paths: list, n: int, dtype: torch.dtype = torch.float16) -> MarginRecorder:
        """Rebuild a recorder from Parquet files of :meth:`to_frame`'s table (one file per
        epoch, in epoch order, as a run's ``records/margins``), read column by column with
        pyarrow: the same recorder as ``from_frame`` of their concatenation, without building
        the long frame."""
        import pyarrow.parquet as pq

        rec = cls(n, dtype)
        for path in paths:
            table = pq.read_table(path, columns=["epoch", "index", "margin"])
            ep = table.column("epoch").to_numpy().astype(np.int64)
            idx_all = table.column("index").to_numpy().astype(np.int64)
            val_all = table.column("margin").to_numpy().astype(np.float32)
            for epoch in np.unique(ep):
                sel = ep == epoch
                rec._fill(int(epoch), torch.from_numpy(idx_all[sel]), torch.from_numpy(val_all[sel]), str(path))
        return rec

    def _fill(self, epoch: int, idx: torch.Tensor, vals: torch.Tensor, where: str) -> None:
        """Store (k,) float32 margins ``vals`` of samples ``idx`` at ``epoch`` (read from ``where``)."""
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
            raise ValueError(f"{where} has index outside [0, {self.n}) at epoch {epoch}")
        self._store(epoch, idx, vals)

    def _store(self, epoch: int, index: torch.Tensor | slice, vals: torch.Tensor) -> None:
        """Write checked margins into ``epoch``'s row (clamped to float16's range when stored so)."""
        if self.dtype == torch.float16:
            vals = vals.clamp(-FP16_MAX, FP16_MAX)
        row = self._row(epoch)
        self._block[row, index] = vals.to(self.dtype)
        self._filled[row][index] = True

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (safetensors-friendly): ``margins`` (E, N), ``epochs`` (E,), ``filled`` (E, N) bool."""
        e = len(self._epochs)
        filled = torch.stack(self._filled) if e else torch.zeros(0, self.n, dtype=torch.bool)
        return {"margins": self.margins.clone(), "epochs": self.epochs, "filled": filled}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore from :meth:`state_dict`; the sample count must match."""
        margins, epochs = state["margins"], torch.as_tensor(state["epochs"]).long()
        filled = state.get("filled")
        if margins.ndim != 2 or margins.shape[1] != self.n:
            raise ValueError(f"state holds margins of shape {tuple(margins.shape)}; this recorder has n={self.n}")
        if len(epochs) != len(margins):
            raise ValueError(f"state holds {len(epochs)} epochs for {len(margins)} margin rows")
        if len(epochs) > 1 and not bool((epochs[1:] > epochs[:-1]).all()):
            raise ValueError("state epochs must be strictly increasing")
        if filled is None:
            filled = ~torch.isnan(margins.float())
        self._block = margins.to(self.dtype).clone()
        self._epochs = [int(e) for e in epochs]
        self._filled = [f.clone().bool() for f in filled]
