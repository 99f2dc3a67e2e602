"""The training engine as users run it: its own process, killed and resumed; DDP over 2 processes; conditional
samples checked by the dataset's classifier."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from components.data.images import load_images
from components.data.importers import write_digits
from components.training.checkpoints import list_checkpoints

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
LABELS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits") / "data"
    write_digits(root)
    return root


def train_cmd(data, out, *extra, launcher=(sys.executable,)):
    return [*launcher, "-m", "flows.cli", "train", "-c", "smoke", "--data", str(data), "--out", str(out), *extra]


def run(cmd, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, **kw)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_sigkill_then_resume_is_bitwise_identical(digits, tmp_path):
    args = ["--max-steps", "400", "--set", "train.checkpoint_every=25", "--set", "train.arch=mlp", "--set", "train.ema_decay=0.9"]
    run(train_cmd(digits, tmp_path / "straight", *args))
    reference = load_file(str(tmp_path / "straight" / "generator.safetensors"))

    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(train_cmd(digits, out, *args), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list_checkpoints(out / "checkpoints") and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(random.Random(0).uniform(0.0, 0.5))  # somewhere mid-run, possibly mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "generator.safetensors").exists(), "the run finished before it was killed; raise --max-steps"
    killed_at = max(int(p.stem.split("_")[1]) for p in list_checkpoints(out / "checkpoints"))

    done = run(train_cmd(digits, out, *args, "--resume"))
    assert f"resumed from {killed_at}" in done.stdout
    resumed = load_file(str(out / "generator.safetensors"))
    assert resumed.keys() == reference.keys()
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key


@pytest.mark.parametrize(
    "options",
    [[], ["--set", "train.augment=translation,cutout", "--set", "train.regularizers.r1=1.0", "--set", "train.spectral_norm=true"]],
    ids=["plain", "augment-r1-sn"],
)
def test_ddp_two_processes_match_one(digits, tmp_path, options):
    # mlp has no batch norm, so 2 ranks x 16 samples compute exactly the gradients of 1 x 32 (up to float sums); the
    # augmentation's numbers are drawn for the global batch and sliced like the latents, R1's mean is averaged by DDP
    # like the loss's, and spectral norm's power iteration runs on each rank's identical copy of D.
    args = ["--max-steps", "30", "--set", "train.arch=mlp", "--set", "train.batch_size=32", *options]
    run(train_cmd(digits, tmp_path / "single", *args))
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2")
    done = run(train_cmd(digits, tmp_path / "ddp", *args, launcher=torchrun))
    assert "x2" in done.stdout
    one = load_file(str(tmp_path / "single" / "generator.safetensors"))
    two = load_file(str(tmp_path / "ddp" / "generator.safetensors"))
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5), key


def test_two_nodes_meeting_at_a_c10d_rendezvous_match_one_process(digits, tmp_path):
    """Two torchrun launchers, one per "node", on loopback: the multi-node launch the Kubernetes template uses."""
    import socket

    from components.training.job import RDZV_ENDPOINT_ENV, RDZV_ID_ENV, torchrun_args

    args = ["--max-steps", "30", "--set", "train.arch=mlp", "--set", "train.batch_size=32"]
    run(train_cmd(digits, tmp_path / "single", *args))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", RDZV_ENDPOINT_ENV: f"127.0.0.1:{port}", RDZV_ID_ENV: "two-nodes"}
    nodes = []
    for index in ("0", "1"):  # as in the Kubernetes indexed job: pod 0 hosts the rendezvous store
        node_env = {**env, "JOB_COMPLETION_INDEX": index}
        torchrun = (sys.executable, "-m", "torch.distributed.run", *torchrun_args(1, 2, node_env, "unused"))
        assert "--rdzv-backend=c10d" in torchrun and "--standalone" not in torchrun
        nodes.append(
            subprocess.Popen(
                train_cmd(digits, tmp_path / "nodes", *args, launcher=torchrun),
                cwd=REPO,
                env=node_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert any("x2" in out for out in outputs)  # world size 2 across the two launchers
    one = load_file(str(tmp_path / "single" / "generator.safetensors"))
    two = load_file(str(tmp_path / "nodes" / "generator.safetensors"))
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5), key


def test_conditional_samples_have_the_requested_labels(digits, tmp_path):
    from components.evaluation.domain import load_or_train_extractor
    from components.training.weights import load_generator, sample

    run(
        train_cmd(
            digits,
            tmp_path / "cond",
            "--max-steps",
            "1500",
            "--set",
            "train.arch=cdcgan",
            "--set",
            "train.base_channels=64",
            "--set",
            "train.extra_layers=1",
            "--set",
            "train.batch_size=64",
        )
    )
    generator, spec, _ = load_generator(tmp_path / "cond" / "generator.safetensors")
    assert spec.num_classes == 10
    images, targets = load_images(digits, LABELS)
    extractor = load_or_train_extractor(tmp_path / "cache", "digits", torch.from_numpy(images), torch.from_numpy(targets), 10, epochs=8)
    wanted = torch.arange(500) % 10
    with torch.no_grad():
        predicted = extractor.model(sample(generator, 500, seed=1, labels=wanted)).argmax(1)
    accuracy = (predicted == wanted).float().mean().item()
    assert accuracy > 0.8, f"only {accuracy:.2%} of conditional samples were classified as the requested digit"


def test_the_cuda_recipe_compiles_and_trains_on_cpu():
    """compile + bf16 autocast + channels_last, the default GPU recipe, run here through Inductor's CPU backend:
    the graphs really compile, and the run tracks the eager one."""
    import numpy as np
    from torch._dynamo.utils import counters

    from components.config import TrainConfig
    from components.training.engine import train_gan

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 1, 8, 8), dtype=np.uint8), rng.integers(0, 4, 64)
    tiny = dict(
        batch_size=16,
        z_dim=8,
        base_channels=8,
        extra_layers=1,
        steps=4,
        log_every=2,
        device="cpu",
        precision="bf16",
        memory_format="channels_last",
    )
    torch._dynamo.reset()
    counters.clear()
    eager = train_gan(images, labels, TrainConfig(**tiny), seed=1)
    assert not counters["stats"]["unique_graphs"]
    compiled = train_gan(images, labels, TrainConfig(**tiny, compile=True), seed=1)
    assert counters["stats"]["unique_graphs"] >= 2  # G and D at least
    assert np.allclose(eager.history["loss_d"], compiled.history["loss_d"], atol=2e-2)
    for key, value in eager.generator.state_dict().items():
        assert torch.allclose(value.float(), compiled.generator.state_dict()[key].float(), atol=1e-2), key


ALLOCATOR_ENV = ("LD_PRELOAD", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
FAULTS_SCRIPT = """
import resource, sys
import numpy as np
from components.config import TrainConfig
from components.training import engine
if sys.argv[1] == "default":
    engine.keep_freed_host_memory = lambda: False
cfg = TrainConfig(arch="dcgan", base_channels=32, batch_size=64, steps=25, log_every=1000, sample_every=1000, ema_decay=0.0)
images = np.random.default_rng(0).integers(0, 256, (256, 3, 32, 32), dtype=np.uint8)
faults = []
class Clock:
    def update(self, n): faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
    def close(self): pass
engine.train_gan(images, None, cfg, seed=0, progress=lambda total, initial: Clock())
print((faults[24] - faults[9]) / 15)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or any(v in os.environ for v in ALLOCATOR_ENV), reason="glibc's allocator, as it starts"
)
def test_cpu_steps_reuse_freed_memory_instead_of_faulting_in_new_pages():
    def faults_per_step(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, mode], capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0, out.stderr[-2000:]
        return float(out.stdout.split()[-1])

    default, kept = faults_per_step("default"), faults_per_step("kept")
    assert default > 200  # glibc's defaults: fresh pages for activations, step after step (1,250-4,200 measured)
    assert kept < 50, (kept, default)  # 0.07-5 measured
