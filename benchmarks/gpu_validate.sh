#!/usr/bin/env bash
# The committed validate grid in one device call (<= 10 minutes) on one H200 (16 cores):
# dense, sparse s = 0.6 and its no-skip control s = 0, multi-scale f = 2 and its control f = 1,
# combined (0.6, 2) and the Transformer reference, at widths 64 / 128 / 256, 3 seeds each
# (7 settings x 3 widths x 3 seeds = 63 runs). As the 2026-12-02 grid: N = 256, 4 blocks, batch 64,
# all of test.txt scored; trained with the Triton BK-Core (FLOPs are counted on the CPU with vectorized).
#
# One grid per width runs at once, each run in its own process on its own pinned cores (small models
# are bound by the host that launches their kernels); every finished run is written to its runs file at
# once, so a grid cut short by LIMIT_S still reports what it finished. The runs files are then joined
# and reported (--report-only: table, JSON, Markdown, plots). The no-argument CPU smoke run goes beside
# them on two cores of its own, timed.
#
# Usage (repository root): bash benchmarks/gpu_validate.sh OUT [TOKENS [LIMIT_S]]
#   TOKENS: training positions per run (default 3,276,800 = 200 steps of 64 x 256)
#   LIMIT_S: wall-clock limit of the training grids (default 450 s; the report needs ~60 s after it)
# A plumbing check on a CPU: DEVICE=cpu BACKEND=vectorized EXTRA="--corpus DIR --n-seq 16 ..." (EXTRA's
# options come last, so they win).
set -u
mkdir -p "$1"; out=$(cd "$1" && pwd); tokens=${2:-3276800}; limit=${3:-450}  # absolute: the smoke run works in /tmp
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
pin() { local cores=$1; shift; if command -v taskset >/dev/null && [ "$(nproc)" -ge 16 ]; then taskset -c "$cores" "$@"; else "$@"; fi; }
log=$out/log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$log" 2>&1
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >>"$log" 2>&1
echo "cores $(nproc); tokens $tokens; limit $limit s" >>"$log"
grid=(--device "${DEVICE:-cuda}" --backend "${BACKEND:-triton}" --n-seq 256 --layers 4 --batch 64 --tokens "$tokens"
      --seeds 3 --variant sparse --variant multiscale --variant combined --sparsity 0.6 --downsample 2
      --test-tokens all ${EXTRA:-})
(cd /tmp && { time pin 14,15 python3 -m bkprof validate --runs-file /tmp/smoke.jsonl --format json \
    --output "$out/cpu-smoke.json" ; } 2>"$out/cpu-smoke-time.txt") &
smoke=$!
start=$(date +%s)
pids=()
for spec in "64 0-3 4" "128 4-8 5" "256 9-13 5"; do
    set -- $spec
    pin "$2" timeout "$limit" python3 -m bkprof validate "${grid[@]}" --d-model "$1" --jobs-per-device "$3" \
        --runs-file "/tmp/d$1.jsonl" --format json --output "/tmp/d$1.json" >"/tmp/d$1.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; echo "grid (pid $pid): rc $? after $(( $(date +%s) - start )) s" >>"$log"; done
tail -n 5 /tmp/d64.log /tmp/d128.log /tmp/d256.log >>"$log"
cat /tmp/d64.jsonl /tmp/d128.jsonl /tmp/d256.jsonl >"$out/runs.jsonl" 2>>"$log"
echo "runs written: $(wc -l <"$out/runs.jsonl")" >>"$log"
# one report of every finished run (whatever the time limit left), with the plots and the learning curves
report=(python3 -m bkprof validate "${grid[@]}" --d-model 64,128,256 --report-only --runs-file "$out/runs.jsonl")
"${report[@]}" --plot "$out/plots" --format json --output "$out/validate.json" >>"$log" 2>&1
echo "report: rc $? after $(( $(date +%s) - start )) s" >>"$log"
"${report[@]}" --format markdown --output "$out/report.md" >>"$log" 2>&1
{ time "${report[@]}" --format json --output /tmp/again.json ; } 2>"$out/report-only-time.txt"
wait $smoke; echo "smoke rc $?" >>"$log"
cat "$out/cpu-smoke-time.txt" "$out/report-only-time.txt" >>"$log"
tail -n 40 "$log"
