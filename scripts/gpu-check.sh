#!/usr/bin/env bash
# The GPU checks of the scoring kernel (issue 4), for one machine with an NVIDIA GPU, run from
# the repository's root:
#
#     bash scripts/gpu-check.sh [LOG_DIR]
#
# It needs a python3 with torch built for CUDA, numba, numpy, scipy, pandas, pyarrow, pytest
# and hypothesis (the `device` tool's machines have all of them; nothing is installed or
# downloaded), and takes about two minutes after the first numba compile. In order:
# 1. what the machine is (GPU, driver, the Python packages' versions);
# 2. the kernel's tests, the CUDA one included (`tests/jobs/test_topn.py`);
# 3. `benchmarks.scoring --kernel-only` at the MovieLens-25M shape, on the GPU with three
#    block sizes, then on the same machine's CPU as the baseline of the same run.
# Each step's output also goes to LOG_DIR (default $OUT, else /tmp/gpu-check). The exit status
# is the first failing step's.
set -euo pipefail

log_dir=${1:-${OUT:-/tmp/gpu-check}}
python=${PYTHON:-python3}
mkdir -p "$log_dir"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
threads=$(nproc)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$log_dir/machine.txt"
"$python" - <<'EOF' 2>&1 | tee -a "$log_dir/machine.txt"
import sys
import numba, numpy, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"numba {numba.__version__}, numpy {numpy.__version__}")
if not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device: this is not a GPU machine")
print(f"device: {torch.cuda.get_device_name()}")
EOF

"$python" -m pytest -p no:cacheprovider -q tests/jobs/test_topn.py 2>&1 | tee "$log_dir/pytest.txt"

"$python" -m benchmarks.scoring --kernel-only --device cuda --block-rows 256,2048,8192 \
    --threads "$threads" 2>&1 | tee "$log_dir/scoring-cuda.txt"
"$python" -m benchmarks.scoring --kernel-only --device cpu --threads "$threads" 2>&1 |
    tee "$log_dir/scoring-cpu.txt"
