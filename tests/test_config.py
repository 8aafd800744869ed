"""Config validation: every bad field is one ConfigError line naming the field, what is wrong,
and the file or ``--set`` override it came from; nothing is loaded or written to find out."""

from __future__ import annotations

import math

import pytest
import torch

from noisescope.config import (
    MAX_SEED,
    Config,
    ConfigError,
    check_device,
    config_hash,
    config_identity,
    from_dict,
    load_config,
    locate,
    parse_override,
    validate,
)


def _error(*overrides: str, path=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("override", "field", "says"),
    [
        ("train.lr=nan", "train.lr", "finite"),
        ("train.lr=inf", "train.lr", "finite"),
        ("train.lr=0", "train.lr", "> 0"),
        ("train.weight_decay=-inf", "train.weight_decay", "finite"),
        ("train.weight_decay=-1e-4", "train.weight_decay", ">= 0"),
        ("train.momentum=1.0", "train.momentum", "[0, 1)"),
        ("train.momentum=-0.1", "train.momentum", "[0, 1)"),
        ("train.warmup_epochs=-1", "train.warmup_epochs", ">= 0"),
        ("train.warmup_epochs=51", "train.warmup_epochs", "train.epochs = 50"),
        ("train.epochs=-1", "train.epochs", "[0, 1000000]"),
        ("train.epochs=1000001", "train.epochs", "[0, 1000000]"),
        ("train.epochs=1e300", "train.epochs", "out of range"),
        ("train.epochs=2.5", "train.epochs", "integer"),
        ("train.batch_size=0", "train.batch_size", ">= 1"),
        ("train.seed=-1", "train.seed", "[0, 4294967295]"),
        ("train.seed=4294967296", "train.seed", "[0, 4294967295]"),
        ("train.seed=99999999999999999999", "train.seed", "out of range"),
        ("train.device='tpu'", "train.device", "auto, cpu, cuda, cuda:N, mps"),
        ("train.device='cuda:x'", "train.device", "cuda:N"),
        ("train.optimizer='adma'", "train.optimizer", "did you mean adam?"),
        ("train.augment=1", "train.augment", "true or false"),
        ("data.seed=-5", "data.seed", "[0, 4294967295]"),
        ("data.subset=-1", "data.subset", ">= 0"),
        ("data.val_fraction=nan", "data.val_fraction", "finite"),
        ("data.val_fraction=1", "data.val_fraction", "[0, 1)"),
        ("data.name='mnits'", "data.name", "did you mean mnist?"),
        ("data.options={n=nan}", "data.options.n", "finite"),
        ("data.options={dim=inf}", "data.options.dim", "finite"),
        ("data.options={bogus=1}", "data.options.bogus", "its options: n, n_test"),
        ("data.options={seed=1}", "data.options.seed", "data.seed"),
        ("data.options={test_subset=-1}", "data.options.test_subset", ">= 0"),
        ("noise.rate=nan", "noise.rate", "finite"),
        ("noise.rate=1", "noise.rate", "[0, 1)"),
        ("noise.seed=-1", "noise.seed", "[0, 4294967295]"),
        ("noise.model='simetric'", "noise.model", "did you mean symmetric?"),
        ("noise.options={bogus=1}", "noise.options.bogus", "include_true, exact"),
        ("noise.options={exact=true, temperature=nan}", "noise.options.temperature", "no option"),
        ("model.arch='mpl'", "model.arch", "did you mean mlp?"),
        ("model.options={bogus=1}", "model.options.bogus", "widths, depth, width"),
        ("model.options={widths=[32, nan]}", "model.options.widths[1]", "finite"),
        ("model.options={width=0}", "model.options.width", "positive integer"),
        ("probe.probes=['dynamics', 'dynamics']", "probe.probes", "twice"),
        ("probe.probes=[{}]", "probe.probes", "unknown probe"),
        ("probe.every=0", "probe.every", ">= 1"),
        ("probe.points=0", "probe.points", ">= 1"),
        ("probe.batch_size=0", "probe.batch_size", ">= 1"),
        ("probe.options={foo={}}", "probe.options.foo", "keyed by probe name"),
        ("probe.options={spectral=3}", "probe.options.spectral", "must be a table"),
        ("probe.options={spectral={bogus=1}}", "probe.options.spectral.bogus", "d_max"),
        ("probe.options={signals={treshold=3.0}}", "probe.options.signals.treshold", "did you mean threshold?"),
        ("probe.options={signals={threshold=nan}}", "probe.options.signals.threshold", "finite"),
        ("run.checkpoint_epochs=[1, true]", "run.checkpoint_epochs", "non-negative integers"),
        ("run.checkpoint_every=-1", "run.checkpoint_every", ">= 0"),
        ("train.lrr=0.1", "train.lrr", "did you mean train.lr?"),
        ("bogus.key=1", "bogus", "valid sections are data, noise"),
        ("train.lr.x=3", "train.lr", "not a table"),
    ],
)
def test_a_bad_override_is_one_line_naming_the_field_and_the_override(override, field, says):
    message = _error(override)
    assert message.startswith(f"--set {override!r}: "), message
    assert field in message and says in message, message


@pytest.mark.parametrize(
    ("name", "says"),
    [("..", "not a directory name"), (".", "not a directory name"), ("a/b", "path separator"),
     ("/abs", "path separator"), ("a\\\\b", "path separator"), ("x" * 256, "255 bytes"),
     ("' x'", "whitespace"), ('"a\\u0000b"', "NUL"), ('"a\\nb"', "control character"), ("''", "empty")],
)
def test_run_name_must_be_a_single_directory_name(name, says):
    value = name if name[0] in "'\"" else repr(name)
    message = _error(f"run.name={value}")
    assert "run.name" in message and says in message, message


def test_an_error_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("[train]\nmomentum = 2.0\n")
    message = _error(path=path)
    assert message.startswith(f"{path}: train.momentum must lie in [0, 1)"), message


def test_the_override_is_blamed_when_it_set_the_bad_value_not_the_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("[train]\nlr = 0.1\n")
    assert _error("train.lr=nan", path=path).startswith("--set 'train.lr=nan': train.lr")
    # the last override touching a field is the one blamed
    assert _error("train.lr=nan", "train.lr=-1", path=path).startswith("--set 'train.lr=-1': ")


def test_a_section_that_is_not_a_table_is_named_with_its_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("train = 3\n")
    assert _error(path=path) == f"{path}: train must be a table ([train] followed by its keys), got 3"


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"[train]\nlr = 0.1 # caf\xe9\n", "not UTF-8 text (byte 0xe9 on line 2)"),
     (b"[train\nlr = 1\n", "not valid TOML"),
     (b"[train]\nlr = 1\nlr = 2\n", "not valid TOML"),
     (b"[train]\nlr = \x00\n", "not valid TOML")],
)
def test_an_unreadable_file_is_one_line_naming_it(tmp_path, content, says):
    path = tmp_path / "exp.toml"
    path.write_bytes(content)
    message = _error(path=path)
    assert message.startswith(str(path)) and says in message, message


def test_a_directory_or_a_missing_file_is_named(tmp_path):
    assert "is a directory" in _error(path=tmp_path) and str(tmp_path) in _error(path=tmp_path)
    missing = tmp_path / "nope.toml"
    assert str(missing) in _error(path=missing) and "neither a file nor a preset" in _error(path=missing)


def test_a_utf8_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_bytes("\ufeff[train]\nlr = 0.25\n".encode())
    assert load_config(path).train.lr == 0.25


@pytest.mark.parametrize(
    ("override", "says"),
    [("train.lr", "section.key=value"), ("=3", "section.key"), ("train=3", "section.key"),
     ("train..lr=1", "section.key"), ("train.lr=", "no value after '='"),
     ("data.options={n=1", "not valid TOML"), ("run.name='abc", "not valid TOML"),
     ("probe.probes=[1,", "not valid TOML")],
)
def test_malformed_overrides_say_how_to_write_them(override, says):
    message = _error(override)
    assert message.startswith(f"--set {override!r}") and says in message, message


def test_bare_words_are_strings_and_toml_literals_are_parsed():
    assert parse_override("run.name=abc") == (["run", "name"], "abc")
    assert parse_override(" train.lr = 3e-4 ") == (["train", "lr"], 3e-4)
    assert parse_override("model.options={widths=[8, 8]}") == (["model", "options"], {"widths": [8, 8]})
    cfg = load_config("synthetic_demo", ["probe.options.spectral.d_max=16", "train.lr=3e-4"])
    assert cfg.probe.options["spectral"]["d_max"] == 16 and cfg.train.lr == 3e-4


def test_an_unavailable_device_is_named_with_what_this_machine_has():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    message = _error(f"train.device='cuda:{count + 2}'")
    assert f"train.device: cuda:{count + 2} is not available here (found {count} CUDA device" in message
    assert message.endswith("use auto or cpu")
    check_device("cpu")
    check_device("auto")
    if count == 0:
        assert "found 0 CUDA devices" in _error("train.device='cuda'")


def test_recorded_configs_are_read_without_the_device_being_present():
    """A run recorded on a GPU machine can still be loaded (and reported) on a CPU one."""
    cfg = from_dict({"train": {"device": "cuda:7"}})
    assert cfg.train.device == "cuda:7"
    assert load_config(None, ["train.device='cuda:7'"], device_check=False).train.device == "cuda:7"


def test_values_set_by_hand_are_validated_too():
    cfg = Config()
    cfg.train.lr = math.nan
    with pytest.raises(ConfigError, match=r"train\.lr must be a finite number"):
        validate(cfg)
    cfg = Config()
    cfg.noise.options = {"path": "x.npy"}
    with pytest.raises(ConfigError, match=r"noise\.options\.path: noise model 'symmetric' has no option"):
        validate(cfg)


def test_required_options_are_named():
    message = _error("noise.model='file'")
    assert message.startswith("noise.options.path is required by noise model 'file'"), message
    assert "rate" in _error("noise.model='file'", "noise.rate=0.2", "noise.options={path='x.npy'}")


def test_the_largest_seeds_are_accepted():
    cfg = load_config(None, [f"train.seed={MAX_SEED}", f"data.seed={MAX_SEED}", f"noise.seed={MAX_SEED}"])
    assert cfg.train.seed == cfg.data.seed == cfg.noise.seed == MAX_SEED
    torch.manual_seed(cfg.train.seed * 1_000_003 + 1_000_000)  # the training loop's per-epoch seed


def test_probe_options_may_configure_a_known_probe_that_is_not_run():
    cfg = load_config(None, ["probe.options={spectral={d_max=8}}", "probe.probes=['dynamics']"])
    assert cfg.probe.options == {"spectral": {"d_max": 8}}


def test_locate_blames_by_the_field_a_later_message_starts_with():
    exc = ConfigError("data.subset: 5000 is more than the 1000 training samples")
    assert str(locate(exc, "exp.toml", ["train.lr=1"])).startswith("exp.toml: data.subset")
    assert str(locate(exc, "exp.toml", ["data.subset=5000"])).startswith("--set 'data.subset=5000': ")
    assert locate(exc, None, []) is exc


def test_config_identity_leaves_out_where_the_run_lives():
    a = load_config(None, ["run.root='/tmp/a'", "run.name='x'"])
    b = load_config(None, ["run.root='elsewhere'"])
    assert config_identity(a) == config_identity(b) and config_hash(a) == config_hash(b)
    assert "root" not in config_identity(a)["run"] and "name" not in config_identity(a)["run"]
    assert config_hash(load_config(None, ["train.lr=0.5"])) != config_hash(a)
    # the hash that names existing runs and sweep points is unchanged
    assert config_hash(Config()) == "11f06b0e59"
    assert config_hash(load_config("synthetic_demo")) == "f7f72ce9f8"
    assert config_hash(Config().to_dict()) == config_hash(Config())


def test_a_preset_shortened_with_train_epochs_keeps_only_the_checkpoints_that_can_exist():
    base = load_config("kubo_mlp5")
    assert max(base.run.checkpoint_epochs) > 3
    short = load_config("kubo_mlp5", ["train.epochs=3"])
    assert short.run.checkpoint_epochs == [e for e in base.run.checkpoint_epochs if e <= 3]
    with pytest.raises(ConfigError, match="run.checkpoint_epochs lists epoch 100"):
        load_config("kubo_mlp5", ["train.epochs=3", "run.checkpoint_epochs=[100]"])
