#!/usr/bin/env bash
# The GPU checks of issue 15, as run on the device machine (one H100 or H200, PyTorch preinstalled, no network).
# Usage: benchmarks/gpu_session.sh train|fid|variants   (from the repository root; output also goes to $OUT/<phase>.log)
#   train:    what the targets need, in about 5 minutes: bench_train_dcgan.py (the default step, and batches staged
#             from pinned host memory) against the plain DCGAN loop, gpu_equivalence.py in fp32 (eager, CUDA graph,
#             CUDA graph with staged batches, DDP over NCCL), and the 50,000-sample FID through ganops' own path
#             at the default GPU batch in fp32 and TF32 (bench_fid_features.py --product, random Inception weights:
#             the same arithmetic), then a kernel profile
#             of the training step (eager).
#   fid:      bench_fid_features.py with the real weights (feature agreement with the TorchScript reference, the
#             50,000-sample FID in fp32, TF32 and bf16).
#   variants: the step variants measured before (eager, fp32, batch 512, torch.compile) and bf16 equivalence.
# Packages the machine lacks travel as wheels in .whl/; the Inception weights (87 MB, over one call's transfer
# limit) travel in two halves, .gpu/inception.part00 with `train` (kept in /root) and part01 with `fid`.
set -u
phase=${1:?train, fid or variants}
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
    bench --data-placement host
    run 150 python3 benchmarks/gpu_equivalence.py --steps 20 --precision fp32
    run 120 python3 benchmarks/bench_fid_features.py --product --fid-samples 50000 --fid-batch 256 --product-modes fp32,tf32
    run 90 python3 benchmarks/bench_train_dcgan.py --steps 20 --warmup 5 --profile
  elif [ "$phase" = variants ]; then
    bench --no-cuda-graphs
    bench --precision fp32 --memory-format contiguous
    bench --batch 512
    run 120 python3 benchmarks/gpu_equivalence.py --steps 20 --precision bf16
    run 200 python3 benchmarks/bench_train_dcgan.py --steps 300 --warmup 20 --compile --compile-mode reduce-overhead --memory-format contiguous
  else
    cat /root/inception.part00 .gpu/inception.part01 > /tmp/pt_inception.pt
    echo "a16e4d89c0ecbc17a915dd76ea9e41211aa82562  /tmp/pt_inception.pt" | sha1sum -c
    export GANOPS_INCEPTION_WEIGHTS=/tmp/pt_inception.pt
    run 300 python3 benchmarks/bench_fid_features.py --images 2048 --batch 256 --fid-samples 50000 --fid-batch 500
  fi
} 2>&1 | tee "$out/$phase.log"
