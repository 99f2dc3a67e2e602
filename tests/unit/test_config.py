import pytest

from components.config import RetrainConfig
from components.core.config_text import apply_overrides
from components.core.errors import ConfigError
from components.presets import load_config, preset_names


def test_presets_load():
    assert {"digits", "smoke"} <= set(preset_names())
    for name in preset_names():
        assert isinstance(load_config(name), RetrainConfig)


def test_default_is_digits_and_matches_model_defaults():
    # The digits preset and the pydantic defaults must not drift apart: one source of truth.
    assert load_config(None) == RetrainConfig()


def test_overrides_apply_and_validate():
    cfg = load_config("smoke", ["train.steps=7", "gate.rules.ceiling.value=3.5"])
    assert cfg.train.steps == 7 and cfg.gate.rules["ceiling"] == {"rule": "ceiling", "metric": "fid_domain", "value": 3.5}


@pytest.mark.parametrize(
    "override,key",
    [
        ("train.steps=0", "train.steps"),
        ("train.lr=-1", "train.lr"),
        ("train.real_label=0.2", "train.real_label"),
        ("validation.channels=2", "validation.channels"),
        ("train.bogus=1", "train.bogus"),
        ("registry.model_name=has space", "registry.model_name"),
        ("validation.image_size=12", "image_size"),
        ("validation.min_images=10000000000", "min_images"),
        ("seed=-1", "seed: Input should be greater than or equal to 0"),  # numpy refuses it only at evaluation
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config("smoke", [override])
    assert key in str(err.value) and f"with --set {override}:" in str(err.value)  # the override, not just the preset


def test_unknown_preset_and_missing_file():
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("missing.yaml")


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["train.steps"])


def test_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 5\n")
    assert load_config(str(path)).train.steps == 5
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(path))


@pytest.mark.parametrize(
    "override,key,rule",
    [
        ("train.steps=true", "train.steps", "valid integer"),  # not silently 1
        ('train.steps="50"', "train.steps", "valid integer"),  # not silently 50
        ("train.feature_matching=1", "train.feature_matching", "valid boolean"),
        ("registry.model_name=..", "registry.model_name", "one folder name"),
        ("registry.model_name=a/b", "registry.model_name", "one folder name"),
        ("registry.model_name=.hidden", "registry.model_name", "one folder name"),
        ("name=../x", "name", "one folder name"),
        ("name=" + "a" * 101, "name", "101 characters long"),  # names become run names, folders and model names
        ("registry.model_name=" + "m" * 100_000, "registry.model_name", "at most 100"),
        ("train.loss=wasserstein", "train.loss", "nonsaturating"),
        ("gate.metric=fid_other", "gate.metric", "fid_domain"),
        ('data.revision="--output=FILE"', "data.revision", "not a git revision"),
    ],
)
def test_strict_types_and_path_names(override, key, rule):
    with pytest.raises(ConfigError) as err:
        load_config("smoke", [override])
    assert key in str(err.value) and rule in str(err.value)


def test_numbers_still_widen_and_lists_still_read_as_tuples():
    cfg = load_config("smoke", ["gate.rules.ceiling.value=20", "validation.pixel_mean_range=[10, 200]"])
    assert cfg.gate.rules["ceiling"]["value"] == 20 and cfg.validation.pixel_mean_range == (10.0, 200.0)
    # The resolved config round-trips through JSON (result files, Prefect parameters, checkpoints).
    from components.config import config_to_dict
    from components.presets import config_from_dict

    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_allowed_values_come_from_the_registries():
    from components.config import TrainConfig
    from components.training.losses import LOSSES
    from components.training.networks import ARCHS
    from components.training.optimizers import OPTIMIZERS

    for field, registry in (("arch", ARCHS), ("loss", LOSSES), ("optimizer", OPTIMIZERS)):
        assert set(TrainConfig.model_json_schema()["properties"][field]["enum"]) == set(registry.names())


# YAML 1.2 values: a string-typed key takes off/on/yes/no as the strings they look like (YAML 1.1 read them as
# booleans, so `drift: off` was refused with "Input should be 'warn', 'fail' or 'off'"); the field's type decides.
@pytest.mark.parametrize(
    "key,text,expected",
    [
        ("validation.drift", "off", "off"),
        ("validation.drift", "fail", "fail"),
        ("train.feature_matching", "true", True),
        ("train.feature_matching", "false", False),
        ("train.feature_matching", "True", True),
        ("train.compile", "FALSE", False),
        ("validation.labels", "[yes, no, on, off, y, n]", ["yes", "no", "on", "off", "y", "n"]),
        ("validation.image_size", "null", None),
        ("train.lr", "1e-3", 1e-3),
    ],
)
@pytest.mark.parametrize("via", ["--set", "yaml file"])
def test_values_are_read_as_yaml_1_2(tmp_path, key, text, expected, via):
    section, name = key.split(".")
    if via == "--set":
        cfg = load_config("smoke", [f"{key}={text}"])
    else:
        path = tmp_path / "c.yaml"
        path.write_text(f"{section}:\n  {name}: {text}\n")
        cfg = load_config(str(path))
    assert getattr(getattr(cfg, section), name) == expected


# A bool key takes only true/false: `yes`, `on`, `no`, `off` are now strings, refused (strict) with the key named,
# rather than read as booleans behind the user's back.
@pytest.mark.parametrize("text", ["yes", "no", "on", "off", "y"])
@pytest.mark.parametrize("via", ["--set", "yaml file"])
def test_a_bool_key_refuses_yes_no_on_off_naming_the_key(tmp_path, text, via):
    if via == "--set":
        source, overrides = "smoke", [f"train.compile={text}"]
    else:
        (tmp_path / "c.yaml").write_text(f"train:\n  compile: {text}\n")
        source, overrides = str(tmp_path / "c.yaml"), []
    with pytest.raises(ConfigError, match=r"train\.compile: Input should be a valid boolean"):
        load_config(source, overrides)


def test_a_string_key_still_names_itself_on_a_bad_value():
    with pytest.raises(ConfigError, match=r"validation\.drift: Input should be 'warn', 'fail' or 'off'"):
        load_config("smoke", ["validation.drift=true"])


def test_an_override_that_is_not_yaml_names_itself():
    with pytest.raises(ConfigError, match=r"override 'train.steps=\[1': the value is not valid YAML"):
        load_config("smoke", ["train.steps=[1"])


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p.mkdir(), "is a folder: pass a preset name"),
        (lambda p: p.write_text(""), "is empty: it must hold a mapping"),
        (lambda p: p.write_bytes(bytes(range(256)) * 4), "is not valid YAML text"),
        (lambda p: p.write_text("- a\n- b\n"), "must hold a mapping at the top level"),
    ],
)
def test_a_config_that_is_not_a_yaml_mapping_is_one_clear_error(tmp_path, make, words):
    """A folder, an empty file, a binary file and a list: each refused naming the file and why (no traceback)."""
    path = tmp_path / "cfg.yaml"
    make(path)
    with pytest.raises(ConfigError, match=words) as e:
        load_config(str(path))
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "export_dir, words",
    [
        ("/proc/ganops-x", "export.dir /proc/ganops-x cannot be written: making a folder in /proc fails"),
        ("{tmp}/file/below", "export.dir {tmp}/file/below: {tmp}/file is not a folder"),
    ],
)
def test_an_export_folder_that_cannot_be_written_is_refused_when_the_config_loads(tmp_path, export_dir, words):
    from components.presets import check_output_paths

    (tmp_path / "file").write_text("a file, not a folder")
    cfg = load_config("smoke", [f"export.dir={export_dir.format(tmp=tmp_path)}"])
    with pytest.raises(ConfigError) as err:
        check_output_paths(cfg, tmp_path)
    assert words.format(tmp=tmp_path) in str(err.value)
    ok = load_config("smoke", [f"export.dir={tmp_path}/new/exports"])
    assert check_output_paths(ok, tmp_path) is ok and not (tmp_path / "new").exists()  # checked, nothing created
