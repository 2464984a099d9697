#!/usr/bin/env bash
# The GPU run, ready to go (issue 39 item 5): on a Linux x86_64 machine with an NVIDIA GPU, from the repository
# root: `bash benchmarks/gpu.sh`. Each step runs under a time limit; the limits sum to under 8 minutes.
#   1. installs torch (the PyPI wheel of the pinned version is a CUDA build on Linux x86_64) and the package with
#      its test extras under constraints.txt;
#   2. runs the tests that need CUDA (they skip without it): pytest -k cuda;
#   3. bench_step_cost.py --device cuda (158 / 1,000 / 10,000 beads) -> step_cost_cuda.json;
#   4. bench_replicas.py --device cuda (R = 1..16 batched vs sequential, 158 beads) -> replicas_cuda.json;
#   5. bench_speed.py --device cuda (classical MD on every OpenMM platform present vs the learned integrator on
#      CUDA, short settings) -> speed_cuda.json.
# Every JSON records the GPU's name (torch.cuda.get_device_name) in its environment; all land in
# benchmarks/results/current/ (OUT=... to change it). Logs go to benchmarks/work/gpu_logs/ (git-ignored). A
# failing step is reported at the end and does not stop the later ones. SKIP_INSTALL=1 skips step 1.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/current}"
LOGS="${LOGS:-benchmarks/work/gpu_logs}"
mkdir -p "$LOGS"
PY="${PYTHON:-python}"
failed=()

step() {  # step NAME TIMEOUT_S COMMAND...: run with a time limit, log to $LOGS/NAME.log, remember failures
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    if timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1; then
        echo "   ok in $((SECONDS - t0)) s"
    else
        echo "   FAILED (exit $?) after $((SECONDS - t0)) s; tail of $LOGS/$name.log:"
        tail -n 15 "$LOGS/$name.log"
        failed+=("$name")
    fi
}

if [ "${SKIP_INSTALL:-0}" != "1" ]; then
    step install_torch 150 "$PY" -m pip install -q "torch==2.13.0"
    step install_package 75 "$PY" -m pip install -q -c constraints.txt -e ".[test]"
fi

"$PY" - <<'PYEOF' || { echo "no CUDA device visible to torch: stopping (the benchmarks below need one)"; exit 2; }
import torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PYEOF

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
step cuda_tests 45 "$PY" -m pytest -q -rs -k cuda tests/test_integrator.py tests/test_batched_replicas.py
step step_cost_cuda 60 "$PY" benchmarks/bench_step_cost.py --device cuda --sizes 158 1000 10000 \
    --steps 4 2 1 --repeats 3 3 1 --out "$OUT"
step replicas_cuda 45 "$PY" benchmarks/bench_replicas.py --device cuda --replicas 1 2 4 8 16 --steps 2 \
    --repeats 2 --out "$OUT"
step speed_cuda 90 "$PY" benchmarks/bench_speed.py --device cuda --sizes 100,1000,10000 --time-budget-s 60 \
    --learned-steps 5 --refine-levels 4 --refine-steps 4 --md-seconds 5 --repeats 2 --out "$OUT"

ls -l "$OUT"/*_cuda.json 2>/dev/null
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed steps: ${failed[*]} (logs in $LOGS)"
    exit 1
fi
echo "all steps passed; results: $OUT/*_cuda.json"
