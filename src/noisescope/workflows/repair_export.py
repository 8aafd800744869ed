"""Repairs as plain modules: save a repaired network as safetensors + JSON and load it back
without any training state (no optimizer, run store or pickle)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from noisescope.io import atomic_write, write_json
from noisescope.runs.run import Run
from noisescope.spectral.export import TruncatedModel, load_truncated, read_export, save_truncated
from noisescope.spectral.layerwise import ProjectedModel, load_projected, save_projected

COLUMNS = ["method", "kind", "posthoc", "repairs", "epoch", "tap", "choice", "d",
           "val_acc", "val_low", "val_high", "n_val", "test_acc", "test_low", "test_high", "n_test",
           "val_gain", "val_gain_se", "verdict", "val_p", "es_b", "es_c", "es_diff", "es_p", "gap_closed",
           "seconds", "note"]
KINDS = ("baseline", "repair", "reference", "oracle")
# rows of these kinds are not candidates of the recommendation (evidence.rules.recommend): the
# raw-input reference is no repair of the network, the oracle saw the clean labels
NOT_CANDIDATES = ("reference", "oracle")
DEFAULT = "early_stop"  # the safe default every recommendation keeps unless a candidate beats every other
JSON_FILE, TABLE_FILE, EXPORT_DIR, ORACLE_DIR = "repair.json", "repair.parquet", "repaired", "oracle"
NETWORK_FORMAT, NETWORK_META = "noisescope.network/1", "network.json"
WEIGHTS_FILE = "model.safetensors"
CLEANING_MISSING = "not measured: run `noisescope label-issues RUN` first"
ORACLE_MISSING = "not measured: pass --oracle (retrains the config on clean labels as RUN/oracle)"
SEED_KEYS = (("train", "seed"), ("noise", "seed"), ("data", "seed"))



# --------------------------------------------------------------------------- plain modules
def model_spec(run: Run) -> dict:
    """How to rebuild the run's network without noisescope's training state."""
    cfg, data = run.config, run.data
    return {"arch": cfg.model.arch, "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "options": cfg.model.options, "input_norm": data.noise.get("normalizer")}


def save_network(model: nn.Module, path: str | Path, meta: dict) -> Path:
    """``path/model.safetensors`` (the state_dict) + ``path/network.json`` (``meta`` with the
    build spec under ``"model"``): a plain network, e.g. with rank-truncated weights."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path / WEIGHTS_FILE, lambda p: save_file(state, str(p)))
    write_json(path / NETWORK_META, {"format": NETWORK_FORMAT, **meta})
    return path


def load_repair(path: str | Path) -> nn.Module:
    """Load any module :func:`export_repair` wrote (eval mode), from its files alone."""
    from safetensors.torch import load_file

    from noisescope.spectral.export import META_FILE as TRUNC_META
    from noisescope.spectral.layerwise import META_FILE as PROJ_META

    path = Path(path)
    if (path / TRUNC_META).is_file():
        return load_truncated(path)
    if (path / PROJ_META).is_file():
        return load_projected(path)
    if not (path / NETWORK_META).is_file():
        raise FileNotFoundError(f"{path} holds no exported repair ({TRUNC_META}, {PROJ_META} or {NETWORK_META})")
    _info, weights_path, model = read_export(path, NETWORK_META, NETWORK_FORMAT, None)
    model.load_state_dict(load_file(str(weights_path)), strict=True)
    return model.eval()


def export_module(module: nn.Module, path: str | Path, meta: dict) -> Path:
    """Write a repaired module in the plain format of its kind (see :func:`load_repair`)."""
    from noisescope.spectral.export import META_FILE as TRUNC_META
    from noisescope.spectral.layerwise import META_FILE as PROJ_META

    path = Path(path)
    for name in (TRUNC_META, PROJ_META, NETWORK_META):  # a previous export of another kind (never rmtree)
        (path / name).unlink(missing_ok=True)
    if isinstance(module, TruncatedModel):
        return save_truncated(module, path, meta)
    if isinstance(module, ProjectedModel):
        return save_projected(module, path, meta)
    return save_network(module, path, meta)


# --------------------------------------------------------------------------- the oracle
