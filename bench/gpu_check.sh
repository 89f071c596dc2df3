#!/usr/bin/env bash
# GPU check (issue 7): install, prove the CUDA provider really runs the encoder, then time the encoder
# alone (row 4), where a batch's time goes, end to end (row 5) and N worker processes draining a backlog
# (rows 5d<N>) on the GPU, and write the figures. Meant for a fresh GPU machine: under a minute of install
# (or none with SITE=), about 4 of checks and benches (H200: provider check and sweep 60 s, rows 4-5 and
# drains 1/4/8 ~3 min).
#
#   bench/gpu_check.sh [OUT_DIR]          figures in OUT_DIR (default bench/results/gpu): gpu.json,
#                                         check.txt (providers, device), bench.log
#   WHEELS=DIR bench/gpu_check.sh         install from a folder of wheels (no index), for an offline box
#   SITE=DIR bench/gpu_check.sh           no install: the image's python3 already holds numpy, tokenizers and
#                                         the CUDA libraries, and DIR holds the rest (onnxruntime-gpu, kafka-
#                                         python, ...; bench/offline/README.md); run from the checkout
#   FINSIGNAL_PROVIDER=cpu bench/gpu_check.sh   rehearse the whole script on a machine without a GPU
#   PROCS=1,4,8 BATCH=1024 TOKENS=65536   worker processes for the drain (and SCALING=1) rows, batch size,
#                                         token budget; BENCH_TIMEOUT_S=300 bounds the bench
#
# It stops with a message naming what is missing when onnxruntime-gpu cannot be installed or its CUDA
# provider does not start (a silent fall-back to the CPU would measure the wrong thing).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mkdir -p "${1:-bench/results/gpu}" && cd "${1:-bench/results/gpu}" && pwd)
provider=${FINSIGNAL_PROVIDER:-cuda}
venv=${GPU_VENV:-.venv-gpu}
pip_flags=(-q --disable-pip-version-check)
if [[ -n "${WHEELS:-}" ]]; then pip_flags+=(--no-index --find-links "$WHEELS"); fi

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

if [[ -n "${SITE:-}" ]]; then
  step "using $SITE (no install)"
  py=${PYTHON:-python3}
  export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  finsignal=("$py" -m worker)
else
  step "install into $venv"
  "${PYTHON:-python3}" -m venv "$venv"
  py="$venv/bin/python"
  "$py" -m pip install "${pip_flags[@]}" -e .
  if [[ "$provider" == cuda ]]; then
    # The CPU and GPU wheels both install the module `onnxruntime`: keep only the GPU one. Same version as
    # docker/Dockerfile.gpu (CUDA 13, cuDNN 9); the [cuda,cudnn] extras bring those libraries as wheels
    # (the worker's preload_dlls() finds them), else the host's own CUDA is used.
    ort_gpu="onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION:-1.31.1}"
    "$py" -m pip uninstall -q -y onnxruntime
    "$py" -m pip install "${pip_flags[@]}" "${ort_gpu/==/[cuda,cudnn]==}" \
      || "$py" -m pip install "${pip_flags[@]}" "$ort_gpu" || {
        echo "gpu_check: cannot install $ort_gpu (no index reachable? give WHEELS=DIR)" >&2
        exit 2
      }
  fi
  finsignal=("$venv/bin/finsignal")
fi
# CUDA/cuDNN libraries installed as pip packages (nvidia-*) beside python: on the loader's path, since
# ONNX Runtime's preload_dlls() only looks beside its own package.
nvidia_libs=$("$py" -c 'import glob, os, site
dirs = {os.path.dirname(p) for d in site.getsitepackages() for p in glob.glob(d + "/nvidia/**/lib*.so*", recursive=True)}
print(":".join(sorted(dirs)))')
export LD_LIBRARY_PATH="${nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  # GPU load once a second through the benches: is the GPU or the host the limit?
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 >"$out/smi.csv" &
  smi=$!
  trap 'kill $smi 2>/dev/null || true' EXIT
fi

step "provider check"
"$py" -m bench.provider_check "$provider" --sweep --json "$out/check.json" | tee "$out/check.txt"

step "where a batch's time goes (tokenization, padding, session)"
"$py" -m bench.offline.gpu_profile "$provider" 4096 >"$out/profile.json" || echo "gpu_check: profile failed" >&2

# Rows 4 and 5, then N worker processes draining a backlog (5d<N>). SCALING=1 adds the replayed 5x<N>
# rows; on the H200 one of them once waited out its 300 s for signals (BENCHMARKS.md, GPU), so the bench
# runs under a time limit and its log keeps what came before.
step "bench: encoder alone, end to end, ${PROCS:-1,4,8} worker processes draining a backlog"
export FINSIGNAL_MAX_BATCH_SIZE=${BATCH:-1024} FINSIGNAL_MAX_BATCH_TOKENS=${TOKENS:-65536}
scaling=()
if [[ -n "${SCALING:-}" ]]; then scaling=(--scaling); fi
FINSIGNAL_PROVIDER="$provider" timeout "${BENCH_TIMEOUT_S:-300}" "${finsignal[@]}" bench --rows 4,5 \
  ${scaling[@]+"${scaling[@]}"} --drain --procs "${PROCS:-1,4,8}" --name gpu --out-dir "$out" \
  --no-markdown --no-plots 2>&1 | tee "$out/bench.log" || echo "gpu_check: the bench stopped early (see bench.log)" >&2
echo
echo "gpu_check: figures in $out (gpu.json, check.json, check.txt, profile.json, bench.log, smi.csv)"
