"""The training key names one training result; a finished result is reused only when its weights are intact."""

import json

import pytest
import torch

from components.data.importers import write_digits
from components.presets import load_config
from components.training.identity import code_digest, training_key
from components.training.job import finished_outcome, read_outcome, run_training

MD5 = "72e131e0cd93ceeb743a1f9fa75849e9"


def key(overrides=(), md5=MD5, code="c0de"):
    return training_key(md5, load_config("smoke", list(overrides)), code)


def test_the_key_follows_data_settings_and_code_but_not_how_training_is_run_or_reported():
    same = key()
    for overrides in (
        ["train.launcher=subprocess"],
        ["train.work_pool=ganops-gpu"],
        ["train.log_every=7"],
        ["train.sample_every=3"],
        ["train.checkpoint_every=9"],
        ["gate.rules.beats_champion.min_improvement=3"],
        ["evaluate.num_samples=64"],
    ):
        assert key(overrides) == same, overrides
    changed = [
        key(["seed=1"]),
        key(["train.steps=41"]),
        key(["train.lr=0.001"]),
        key(["validation.labels=[a, b]"]),
        key(["train.nproc=2"]),
        key(md5="0" * 32),
        key(code="other"),
    ]
    assert same not in changed and len(set(changed)) == len(changed)


def test_the_code_digest_reads_the_trainers_source_files():
    digest = code_digest()
    assert len(digest) == 64 and digest == code_digest()
    assert key(code=None) == training_key(MD5, load_config("smoke"))  # None: the digest of this source tree


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("identity")
    write_digits(root / "data")
    config = load_config("smoke", ["train.steps=4", "train.batch_size=8", "train.sample_every=2"])
    out = root / "train"
    first = run_training(root / "data", config, out, root)
    return config, root, out, first


def test_a_finished_result_is_reused_and_its_folder_can_move(finished, tmp_path):
    config, root, out, first = finished
    assert not first.reused and first.weights_sha256
    again = run_training(root / "data", config, out, root)
    assert again.reused and again.weights == first.weights and again.weights_sha256 == first.weights_sha256
    raw = json.loads((out / "result.json").read_text())
    assert raw["weights"] == "generator.safetensors" and "reused" not in raw  # relative paths: the folder can move
    moved = tmp_path / "moved"
    out.rename(moved)
    try:
        assert read_outcome(moved).weights == moved / "generator.safetensors"
    finally:
        moved.rename(out)


def test_tampered_weights_are_not_reused_but_rebuilt_from_the_checkpoints(finished):
    config, root, out, first = finished
    data = bytearray(first.weights.read_bytes())
    data[-1] ^= 0xFF
    first.weights.write_bytes(bytes(data))
    assert finished_outcome(out) is None
    rebuilt = run_training(root / "data", config, out, root)
    assert not rebuilt.reused and rebuilt.resumed_from == 4  # from the last checkpoint: nothing retrained
    assert rebuilt.weights_sha256 == first.weights_sha256


def test_the_same_weights_are_the_same_bytes_every_time(tmp_path):
    # safetensors writes its metadata from a hash map in random order: the file is canonicalized after saving.
    from components.core.atomic import file_digest
    from components.training.networks import GeneratorSpec, build_generator
    from components.training.weights import load_generator, save_generator

    spec = GeneratorSpec(arch="dcgan", z_dim=8, channels=1, image_size=8, base_channels=8, extra_layers=0, num_classes=0)
    generator = build_generator(spec)
    config = {f"key{i}": i for i in range(20)}
    digests = {file_digest(save_generator(tmp_path / f"g{i}.safetensors", generator, spec, config)) for i in range(8)}
    assert len(digests) == 1
    loaded, loaded_spec, loaded_config = load_generator(tmp_path / "g0.safetensors")
    assert loaded_spec == spec and loaded_config == config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), generator.state_dict().values(), strict=True))
