import warnings

import numpy as np
import pytest
import torch

from components.config import TrainConfig
from components.core.errors import GanopsError
from components.training import state as state_module
from components.training.batches import Batches, stream_from_host
from components.training.checkpoints import latest_valid, list_checkpoints, load_checkpoint
from components.training.engine import train_gan
from components.training.graphs import graphs_enabled
from components.training.step import speed_settings

TINY = dict(batch_size=16, z_dim=8, base_channels=8, log_every=3, sample_every=3, device="cpu")


def data(n=64):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8), rng.integers(0, 4, n)


def weights(result):
    return {k: v.clone() for k, v in result.generator.state_dict().items()}


def assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("arch", ["mlp", "dcgan", "cdcgan"])
@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "hinge"])
def test_every_arch_and_loss_trains_deterministically(arch, loss):
    cfg = TrainConfig(arch=arch, loss=loss, steps=4, **TINY)
    images, labels = data()
    a, b = train_gan(images, labels, cfg, seed=1), train_gan(images, labels, cfg, seed=1)
    assert_bitwise_equal(weights(a), weights(b))
    assert a.spec.num_classes == (4 if arch == "cdcgan" else 0)


def test_seed_changes_the_result_and_metrics_arrive_by_callback():
    cfg = TrainConfig(steps=6, **TINY)
    images, labels = data()
    seen, grids = [], []
    a = train_gan(
        images, labels, cfg, seed=1, on_metrics=lambda s, m: seen.append((s, sorted(m))), on_samples=lambda s, x: grids.append(x.shape)
    )
    c = train_gan(images, labels, cfg, seed=2)
    assert [s for s, _ in seen] == [3, 6] and "grad_norm_d" in seen[0][1] and "images_per_s" in seen[0][1]
    assert grids == [(64, 1, 8, 8)] * 2
    assert not torch.equal(next(iter(weights(a).values())), next(iter(weights(c).values())))


@pytest.mark.parametrize(
    "tricks",
    [
        dict(feature_matching=True),
        dict(minibatch_discrimination=True),
        dict(ema_decay=0.9),
        dict(optimizer="sgd", momentum=0.5),
        dict(d_steps=2),
        dict(arch="mlp", minibatch_discrimination=True, feature_matching=True),
        dict(arch="mlp", ema_decay=0.9),
        dict(augment="color,translation,cutout"),
        dict(regularizers={"r1": 1.0}),
        dict(regularizers={"lecam": 0.3}, loss="hinge"),
        dict(spectral_norm=True),
        dict(arch="cdcgan", d_conditioning="projection", augment="translation", regularizers={"r1": 0.1, "lecam": 0.3}),
        dict(arch="mlp", d_conditioning="concat", augment="cutout", spectral_norm=True),
    ],
)
def test_tricks_run(tricks):
    cfg = TrainConfig(**{**TINY, "steps": 3, **tricks})
    result = train_gan(*data(), cfg, seed=0)
    assert all(np.isfinite(v) for v in result.history["loss_g"])


def test_ema_generator_differs_from_the_raw_one_and_is_returned():
    images, labels = data()
    raw = train_gan(images, labels, TrainConfig(steps=5, **TINY), seed=0)
    ema = train_gan(images, labels, TrainConfig(steps=5, ema_decay=0.5, **TINY), seed=0)
    assert not torch.equal(weights(raw)["net.0.weight"], weights(ema)["net.0.weight"])


def test_divergence_stops_with_a_clear_error_and_keeps_good_checkpoints(tmp_path):
    cfg = TrainConfig(**{**TINY, "steps": 6, "log_every": 2, "checkpoint_every": 1, "lr": 1e30})
    with pytest.raises(GanopsError, match="diverged"):
        train_gan(*data(), cfg, seed=0, checkpoint_dir=tmp_path)
    for path in list_checkpoints(tmp_path):
        state = load_checkpoint(path)
        assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point()), path


LIMITED_DATA = {"augment": "color,translation,cutout", "regularizers": {"r1": 1.0, "lecam": 0.3}, "spectral_norm": True}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"arch": "cdcgan", "class_balanced": True},
        {**LIMITED_DATA, "feature_matching": True, "d_steps": 2},
        {**LIMITED_DATA, "arch": "cdcgan", "d_conditioning": "projection", "ema_decay": 0.9},
    ],
)
def test_resume_from_checkpoint_is_bitwise_identical(tmp_path, extra):
    images, labels = data()
    full = train_gan(images, labels, TrainConfig(steps=9, checkpoint_every=3, **TINY, **extra), seed=3)
    # Stop after 6 steps (as if killed), then resume to 9 from the step-6 checkpoint.
    train_gan(images, labels, TrainConfig(steps=6, checkpoint_every=3, **TINY, **extra), seed=3, checkpoint_dir=tmp_path)
    resumed = train_gan(
        images, labels, TrainConfig(steps=9, checkpoint_every=3, **TINY, **extra), seed=3, checkpoint_dir=tmp_path, resume=True
    )
    assert resumed.resumed_from == 6
    assert_bitwise_equal(weights(full), weights(resumed))
    assert resumed.history["step"] == full.history["step"]


@pytest.mark.parametrize("extra", [{}, {"arch": "cdcgan", "class_balanced": True}, {"augment": "translation,cutout"}])
def test_batches_staged_from_the_host_give_the_run_of_a_set_indexed_in_place(tmp_path, extra):
    """data_placement host (the path for a set larger than GPU memory: rows gathered into staging buffers) against
    device (indexed where training runs), over several epochs and through a resume: bitwise the same weights."""
    images, labels = data()
    in_place = train_gan(images, labels, TrainConfig(steps=9, checkpoint_every=3, data_placement="device", **TINY, **extra), seed=3)
    cfg = dict(checkpoint_every=3, data_placement="host", **TINY, **extra)
    train_gan(images, labels, TrainConfig(steps=6, **cfg), seed=3, checkpoint_dir=tmp_path)
    staged = train_gan(images, labels, TrainConfig(steps=9, **cfg), seed=3, checkpoint_dir=tmp_path, resume=True)
    assert staged.resumed_from == 6
    assert_bitwise_equal(weights(in_place), weights(staged))


def test_the_set_is_staged_from_the_host_when_it_does_not_fit_the_gpu():
    cpu, cuda, gib = torch.device("cpu"), torch.device("cuda", 0), 2**30
    assert not stream_from_host("auto", cpu, 100 * gib, 0)  # on CPU the data is indexed where it lies
    assert not stream_from_host("auto", cuda, 30 * gib, 70 * gib)
    assert stream_from_host("auto", cuda, 40 * gib, 70 * gib)  # over half the free memory
    assert stream_from_host("host", cuda, 1, 70 * gib) and stream_from_host("host", cpu, 1, 0)
    assert not stream_from_host("device", cuda, 100 * gib, 70 * gib)


@pytest.mark.parametrize("balanced, expected", [(False, 0.1), (True, 0.5)])
def test_class_balanced_batches_show_every_class_equally_often(balanced, expected):
    from types import SimpleNamespace

    targets = torch.tensor([0] * 90 + [1] * 10)
    draws = []
    for _ in range(2):  # a pure function of the seed
        state = SimpleNamespace(rng=torch.Generator().manual_seed(0), order=torch.arange(100), cursor=0)
        batches = Batches(state, torch.zeros(100, 1, 8, 8), targets, 20, 4, 2, slice(None), torch.contiguous_format, balanced)
        draws.append(torch.cat([batches.next()[1] for _ in range(300)]))
    assert torch.equal(draws[0], draws[1])
    assert abs(draws[0].float().mean().item() - expected) < 0.03


def test_corrupt_checkpoint_is_skipped_with_a_warning(tmp_path):
    images, labels = data()
    cfg = TrainConfig(steps=6, checkpoint_every=3, **TINY)
    train_gan(images, labels, cfg, seed=0, checkpoint_dir=tmp_path)
    newest = list_checkpoints(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    with pytest.warns(RuntimeWarning, match="skipping corrupt checkpoint"):
        path, state = latest_valid(tmp_path)
    assert state["step"] == 3 and path != newest


def test_checkpoints_refuse_pickled_objects(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "step_000000001.pt"
    torch.save({"step": 1, "payload": Evil()}, path, pickle_module=pickle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert latest_valid(tmp_path) is None


def test_speed_settings_turn_the_fast_paths_on_for_cuda_only_by_default():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert speed_settings(TrainConfig(), cpu) == (False, torch.contiguous_format)
    assert speed_settings(TrainConfig(), cuda) == (True, torch.channels_last)
    assert speed_settings(TrainConfig(precision="fp32", memory_format="contiguous"), cuda) == (False, torch.contiguous_format)
    assert speed_settings(TrainConfig(precision="bf16", memory_format="channels_last"), cpu) == (True, torch.channels_last)
    assert speed_settings(TrainConfig(arch="mlp"), cuda) == (True, torch.contiguous_format)  # no convolutions


def record_conv_outputs(monkeypatch):
    """Build D as usual, and record (dtype, channels_last?) of every convolution's output during training."""
    seen = []
    build_discriminator = state_module.build_discriminator
    monkeypatch.setattr(state_module, "build_discriminator", lambda *a, **k: _with_hooks(build_discriminator(*a, **k), seen))
    return seen


def _with_hooks(net, seen):
    for layer in net.modules():
        if isinstance(layer, torch.nn.Conv2d):
            layer.register_forward_hook(lambda m, i, out: seen.append((out.dtype, out.is_contiguous(memory_format=torch.channels_last))))
    return net


@pytest.mark.parametrize("precision, expected", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_setting_decides_the_dtype_of_convolutions(monkeypatch, precision, expected):
    seen = record_conv_outputs(monkeypatch)
    images, labels = data()
    result = train_gan(images, labels, TrainConfig(steps=3, precision=precision, **TINY), seed=1)
    assert seen and {dtype for dtype, _ in seen} == {expected}
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights(result).values() if v.is_floating_point())


def test_bf16_training_follows_fp32_training_closely():
    images, labels = data()
    fp32 = train_gan(images, labels, TrainConfig(steps=6, **TINY), seed=1)
    bf16 = train_gan(images, labels, TrainConfig(steps=6, precision="bf16", **TINY), seed=1)
    assert np.allclose(fp32.history["loss_g"], bf16.history["loss_g"], atol=2e-2)
    assert not torch.equal(weights(fp32)["net.0.weight"], weights(bf16)["net.0.weight"])  # autocast did change the math


def test_channels_last_gives_the_contiguous_result_and_returns_a_contiguous_generator(monkeypatch):
    seen = record_conv_outputs(monkeypatch)
    images, labels = data()
    plain = train_gan(images, labels, TrainConfig(steps=4, memory_format="contiguous", **TINY), seed=2)
    assert seen and not any(last for _, last in seen)
    seen.clear()
    fast = train_gan(images, labels, TrainConfig(steps=4, memory_format="channels_last", **TINY), seed=2)
    assert seen and all(last for _, last in seen)
    a, b = weights(plain), weights(fast)
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
        assert b[key].is_contiguous(), key


@pytest.mark.parametrize("arch", ["mlp", "dcgan", "cdcgan"])
def test_the_inner_loop_reads_nothing_back_from_the_device(monkeypatch, arch):
    """Every host read of a tensor (the calls that make a GPU synchronise) happens at logging steps only."""
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy"):
        method = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _m=method, _n=name, **k: reads.append(_n) or _m(self, *a, **k))
    cfg = TrainConfig(
        **{
            **TINY,
            "arch": arch,
            "steps": 8,
            "log_every": 4,
            "sample_every": 1000,
            "ema_decay": 0.9,
            "d_steps": 2,
            "feature_matching": True,
            "minibatch_discrimination": True,
        }
    )
    train_gan(*data(), cfg, seed=1)
    assert reads == ["tolist", "tolist"]  # the metric means read at steps 4 and 8


def test_the_step_is_a_cuda_graph_only_on_one_cuda_device_without_compile():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert graphs_enabled(TrainConfig(), cuda, 1)
    assert not graphs_enabled(TrainConfig(), cpu, 1)
    assert not graphs_enabled(TrainConfig(), cuda, 2)  # DDP: eager
    assert not graphs_enabled(TrainConfig(compile=True), cuda, 1)
    assert not graphs_enabled(TrainConfig(cuda_graphs=False), cuda, 1)


def test_torchrun_is_standalone_on_one_node_and_a_c10d_rendezvous_on_several():
    from components.core.errors import GanopsError
    from components.training.job import torchrun_args

    assert torchrun_args(2, 1, {}, "key") == ["--standalone", "--nproc-per-node=2"]
    args = torchrun_args(8, 4, {"GANOPS_RDZV_ENDPOINT": "ganops-train-0.ganops-rdzv:29400"}, "key")
    assert args == [
        "--nnodes=4",
        "--nproc-per-node=8",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=ganops-train-0.ganops-rdzv:29400",
        "--rdzv-id=key",
    ]
    k8s = {"GANOPS_RDZV_ENDPOINT": "ganops-rdzv:29400", "JOB_COMPLETION_INDEX": "0"}
    assert torchrun_args(1, 2, k8s, "key")[-1] == "--rdzv-conf=is_host=true"
    assert torchrun_args(1, 2, {**k8s, "JOB_COMPLETION_INDEX": "1"}, "key")[-1] == "--rdzv-conf=is_host=false"
    for bad in ({}, {"GANOPS_RDZV_ENDPOINT": "--evil"}, {"GANOPS_RDZV_ENDPOINT": "host"}):
        with pytest.raises(GanopsError, match="GANOPS_RDZV_ENDPOINT"):
            torchrun_args(1, 2, bad, "key")
    with pytest.raises(GanopsError, match="GANOPS_RDZV_ID"):
        torchrun_args(1, 2, {"GANOPS_RDZV_ENDPOINT": "h:1", "GANOPS_RDZV_ID": "../x"}, "key")


def test_the_training_process_gets_the_dataset_md5_only_when_it_is_one(tmp_path):
    from components.core.errors import GanopsError
    from components.training.job import launch_command

    def cmd(md5):
        return launch_command(tmp_path / "c.yaml", tmp_path / "data", tmp_path / "out", "subprocess", 1, tmp_path, 1, md5)

    md5 = "0123456789abcdef0123456789abcdef"
    assert cmd(md5)[-2:] == ["--dataset-md5", md5] and "--dataset-md5" not in cmd(None)
    with pytest.raises(GanopsError, match="not 32 lowercase hex digits"):
        cmd("--evil")


def test_class_balanced_batches_skip_a_class_without_images():
    from types import SimpleNamespace

    targets = torch.tensor([0] * 60 + [2] * 30 + [3] * 10)  # class 1 has none
    state = SimpleNamespace(rng=torch.Generator().manual_seed(0), order=torch.arange(100), cursor=0)
    batches = Batches(state, torch.zeros(100, 1, 8, 8), targets, 30, 4, 4, slice(None), torch.contiguous_format, True)
    seen = torch.bincount(torch.cat([batches.next()[1] for _ in range(200)]), minlength=4) / 6000
    assert seen[1] == 0 and all(abs(seen[c].item() - 1 / 3) < 0.03 for c in (0, 2, 3))


def test_images_and_labels_of_different_lengths_are_refused():
    images, labels = data()
    with pytest.raises(GanopsError, match="64 images but 63 labels"):
        train_gan(images, labels[:63], TrainConfig(steps=1, **TINY), seed=0)
