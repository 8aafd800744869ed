"""Experiment configuration: typed sections, TOML files, ``--set key=value`` overrides.

Every run records the fully resolved config (``Config.to_dict()``), so a run directory is
enough to reproduce it. Validation errors are :class:`ConfigError` with a one-line message
naming the field (dotted, ``train.momentum``), what is wrong and how to fix it; errors of a
config read by :func:`load_config` also name where the bad value came from (the file, or the
``--set`` override). The CLI turns them into exit status 2 before anything is written.

Example (``noisescope run my.toml --set noise.rate=0.2``)::

    [data]
    name = "fashion_mnist"
    subset = 10000          # class-balanced training subset; 0 = all
    val_fraction = 0.1      # held-out noisy-validation split
    [noise]
    model = "symmetric"
    rate = 0.4
    [model]
    arch = "mlp"
    options = { widths = [512, 512, 512] }
    [train]
    optimizer = "adam"
    lr = 1e-3
    epochs = 50
    [probe]
    schedule = "every"
    probes = ["dynamics"]

What is checked before anything runs (:func:`validate`): every field's type; every number
finite (NaN and infinity are refused, in the option tables too); ranges (rates and fractions
in [0, 1), seeds in [0, 2**32 - 1], at most :data:`MAX_EPOCHS` epochs, warm-up no longer
than training, batch sizes >= 1); names (datasets, noise models, architectures, probes,
optimizers, schedules); unknown keys at every depth whose schema is known, including the
option tables, whose valid names are read from the signature of the loader / noise model /
model builder / probe they are passed to; ``run.name`` a single path component; the form of
``train.device``. Whether that device exists here is checked by :func:`check_device`, which
:func:`load_config` calls (not :func:`from_dict`, which also reads recorded runs).
"""


from noisescope.config.files import (
    apply_overrides,
    check_override,
    describe_source,
    load_config,
    locate,
    parse_override,
    read_toml,
    resolve_path,
)
from noisescope.config.sections import (
    _SECTION_TYPES as _SECTION_TYPES,
)
from noisescope.config.sections import (
    DEVICES,
    MAX_EPOCHS,
    MAX_NAME_BYTES,
    MAX_SEED,
    OPTIMIZERS,
    PRECISIONS,
    PRESET_DIR,
    PROBE_SCHEDULES,
    SCHEDULES,
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    NoiseConfig,
    ProbeConfig,
    RunConfig,
    TrainConfig,
    copy_dict,
)
from noisescope.config.sections import (
    _coerce as _coerce,
)
from noisescope.config.validate import check_device, config_hash, config_identity, from_dict, validate

__all__ = [
    "DEVICES", "MAX_EPOCHS", "MAX_NAME_BYTES", "MAX_SEED", "OPTIMIZERS", "PRECISIONS", "PRESET_DIR",
    "PROBE_SCHEDULES", "SCHEDULES", "Config", "ConfigError", "DataConfig", "ModelConfig", "NoiseConfig",
    "ProbeConfig", "RunConfig", "TrainConfig", "apply_overrides", "check_device", "check_override",
    "config_hash", "config_identity", "copy_dict", "describe_source", "from_dict", "load_config", "locate",
    "parse_override", "read_toml", "resolve_path", "validate",
]
