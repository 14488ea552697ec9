#!/usr/bin/env bash
# The H200 call behind this report. Two grids run at once on the one GPU, each run in its own
# process (small models are bound by the host): dense, sparse at four sparsities and multi-scale at
# 2x and 4x (7 settings x 3 seeds, 11 processes), and combined at the published setting (3 seeds,
# 3 processes). Their runs files are then joined and reported together. The no-argument CPU smoke
# run goes at the same time, pinned to two cores of their own, timed.
# Usage (repository root): bash reports/validate/H200-2026-12-02/run.sh OUT_FOLDER TOKENS LIMIT_S
set -u
out=$1; tokens=$2; limit=$3
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
pin() { local cores=$1; shift; if command -v taskset >/dev/null; then taskset -c "$cores" "$@"; else "$@"; fi; }
log=$out/log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$log" 2>&1
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >>"$log" 2>&1
echo "cores $(nproc)" >>"$log"
grid=(--device cuda --backend vectorized --d-model 128 --n-seq 256 --layers 4 --batch 64 --tokens "$tokens"
      --seeds 3 --sparsity 0.4,0.5,0.6,0.7 --downsample 2,4 --test-tokens all)
(cd /tmp && { time pin 14,15 python3 -m bkprof validate --runs-file /tmp/smoke.jsonl --format json \
    --output "$out/cpu-smoke.json" ; } 2>"$out/cpu-smoke-time.txt") &
smoke=$!
start=$(date +%s)
pin 0-10 timeout "$limit" python3 -m bkprof validate "${grid[@]}" --variant dense --variant sparse \
    --variant multiscale --jobs-per-device 11 --runs-file /tmp/a.jsonl --format json --output /tmp/a.json \
    >/tmp/a.log 2>&1 &
first=$!
pin 11-13 timeout "$limit" python3 -m bkprof validate "${grid[@]}" --variant combined --sparsity 0.6 \
    --downsample 2 --jobs-per-device 3 --runs-file /tmp/b.jsonl --format json --output /tmp/b.json \
    >/tmp/b.log 2>&1 &
second=$!
wait $first; echo "grid 1: rc $? after $(( $(date +%s) - start )) s" >>"$log"
wait $second; echo "grid 2: rc $? after $(( $(date +%s) - start )) s" >>"$log"
tail -n 5 /tmp/a.log /tmp/b.log >>"$log"
cat /tmp/a.jsonl /tmp/b.jsonl >"$out/runs.jsonl" 2>>"$log"
# one report of every finished run (whatever the time limit left), with the plots
python3 -m bkprof validate "${grid[@]}" --report-only --runs-file "$out/runs.jsonl" --plot "$out/plots" \
    --format json --output "$out/validate.json" >>"$log" 2>&1
echo "report: rc $? after $(( $(date +%s) - start )) s" >>"$log"
wait $smoke; echo "smoke rc $?" >>"$log"
cat "$out/cpu-smoke-time.txt" >>"$log"
tail -n 30 "$log"
