#!/usr/bin/env bash
# The GPU checks of issue 15, as run on the device machine (one H100 or H200, PyTorch preinstalled, no network).
# Usage: benchmarks/gpu_session.sh train|fid   (from the repository root; output also goes to $OUT/<phase>.log)
#   train: bench_train_dcgan.py in its variants against the plain DCGAN loop, gpu_equivalence.py (eager, CUDA graph,
#          DDP over NCCL), and where the time of a 50,000-sample fp32 FID goes (random Inception weights).
#   fid:   bench_fid_features.py (feature agreement with the TorchScript reference, 50,000-sample FID timings).
# Packages the machine lacks travel as wheels in .whl/; the Inception weights (87 MB, over one call's transfer
# limit) travel in two halves, .gpu/inception.part00 with `train` (kept in /root) and part01 with `fid`.
set -u
phase=${1:?train or fid}
out=${OUT:-/tmp}
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
run() { echo "+ $*"; timeout "$@" || echo "! exit $? from: $*"; }
bench() { run 150 python3 benchmarks/bench_train_dcgan.py --steps 300 --warmup 20 "$@"; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
  if [ "$phase" = train ]; then
    [ -f .gpu/inception.part00 ] && cp .gpu/inception.part00 /root/
    bench
    bench --no-cuda-graphs
    bench --precision fp32 --memory-format contiguous
    bench --batch 512
    bench --data-placement host
    run 120 python3 benchmarks/gpu_equivalence.py --steps 20 --precision fp32
    run 120 python3 benchmarks/gpu_equivalence.py --steps 20 --precision bf16
    run 60 python3 - <<'PY'
import time, torch
from components.evaluation.inception import FIDInceptionV3, preprocess
m = FIDInceptionV3().cuda().eval(); x8 = torch.randint(0, 256, (500, 3, 64, 64), dtype=torch.uint8, device="cuda")
def t(f, n=100):
    f(); torch.cuda.synchronize(); s = time.perf_counter()
    for _ in range(n): f()
    torch.cuda.synchronize(); return time.perf_counter() - s
with torch.no_grad():
    x = preprocess(x8)
    print(f"50,000 images in batches of 500: resize {t(lambda: preprocess(x8)):.1f} s, Inception fp32 {t(lambda: m(x)):.1f} s")
    torch.backends.cudnn.benchmark = True
    print(f"Inception fp32 with cudnn.benchmark: {t(lambda: m(x)):.1f} s")
PY
    run 200 python3 benchmarks/bench_train_dcgan.py --steps 300 --warmup 20 --compile --memory-format contiguous
    run 200 python3 benchmarks/bench_train_dcgan.py --steps 300 --warmup 20 --compile --compile-mode reduce-overhead --memory-format contiguous
  else
    cat /root/inception.part00 .gpu/inception.part01 > /tmp/pt_inception.pt
    echo "a16e4d89c0ecbc17a915dd76ea9e41211aa82562  /tmp/pt_inception.pt" | sha1sum -c
    export GANOPS_INCEPTION_WEIGHTS=/tmp/pt_inception.pt
    run 300 python3 benchmarks/bench_fid_features.py --images 2048 --batch 256 --fid-samples 50000 --fid-batch 500
  fi
} 2>&1 | tee "$out/$phase.log"
