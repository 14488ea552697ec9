#!/usr/bin/env bash
# validate's part of the GPU session (one H200, 16 cores), inside a time budget: the training step's
# speed, then the learning-rate sweep and the learning curves, then (GRID=1 only) the width grid.
#
# 1. step: training tokens/s of each variant (dense, sparse 0.6, multiscale 2, combined 0.6/2, the
#    Transformer reference) at d = 128, N = 256, 4 blocks, batch 64, with each step eager, as a CUDA-graph
#    replay and compiled (benchmarks/bench_train_step.py: 15 processes prepare at once, then time in turn
#    with CUDA events, 5 blocks of 20 steps after 20 warm-up steps: median, p10, p90), and each mode's
#    first 20 losses against eager's from the same seed -> $OUT/step.json.
# 2. concurrent: dense, graph, with 2, 4 and 8 processes at once -> $OUT/step-P.json (summed tokens/s).
# 3. curves: bkprof validate with dense and sparse 0.6 (no controls, no reference), 2 seeds, --step auto
#    (graph): the learning-rate sweep at 1x tokens (lr 1e-3, 3e-3, 1e-2), the learning curve at 4x and 16x
#    (lr 3e-3), and at 1x the same runs with --step eager (graph against eager within seed noise)
#    -> $OUT/curves-{1x,4x,16x,1x-eager}.{json,runs.jsonl}. 1x = 200 steps of 64 x 256 = 3,276,800 tokens.
# 4. GRID=1: the committed width grid (d = 64/128/256, 7 settings, 3 seeds) with what budget is left;
#    GRID=only: the grid alone, with the whole budget (its own device call).
#
# Time (assuming >= 1 M tokens/s per graph process, the issue's target, and ~6 M tokens/s summed over ~8
# processes at once; the budget's timeouts cut any phase that runs long, and every part writes as it goes):
#   1. 15 processes prepare at once: CUDA init + inductor compile of the compiled ones, ~90 s (a guess: no
#      GPU compile has been timed); timing in turn: 15 x 120 steps x 16,384 tokens = 29.5 M tokens, at
#      1 M/s graph ~2 s each, eager (5.16 ms/step measured for dense, more for the others) <= ~6 s each,
#      ~60 s in all: ~150 s (cut at 200 s).
#   2. per P: start-up and capture ~15 s, 100 timed steps: 3 x ~20 s = 60 s (cut at 90 s).
#   3. 24 runs, 12 processes at once: 1x 12 runs x 3.28 M + 4x 4 x 13.1 M + 16x 4 x 52.4 M + eager 4 x 3.28 M
#      = 314 M tokens, ~52 s at 6 M/s summed; the longest (a 16x run, 52.4 M at ~0.5-1 M/s while shared)
#      ~60-105 s, plus start-up, FLOP counting on the CPU and scoring all of test.txt: ~150 s (cut at 200 s).
#   Total ~360 s (6 min) of a default budget of 420 s (BUDGET_S), reports included.
#
# Usage (repository root): bash benchmarks/gpu_validate.sh OUT [BUDGET_S]
# CPU plumbing check (tiny sizes, eager steps only: graph needs CUDA, compiled is tests/test_step.py):
#   DEVICE=cpu bash benchmarks/gpu_validate.sh /tmp/out 600
set -u
mkdir -p "$1"; out=$(cd "$1" && pwd); budget=${2:-${BUDGET_S:-420}}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
device=${DEVICE:-cuda}
start=$(date +%s)
log=$out/validate-log.txt
left() { echo $(( budget - ($(date +%s) - start) )); }
# a phase's limit: what it is sized for, or what the budget has left (less a reserve for the reports)
limit() { local want=$1 reserve=${2:-30}; local l=$(( $(left) - reserve )); [ "$l" -lt "$want" ] && echo $(( l > 1 ? l : 1 )) || echo "$want"; }
if [ "$device" = cpu ]; then
    size=(--d-model 16 --n-seq 16 --layers 1 --batch 4); base=1024; modes=eager  # inductor on 2 cores: minutes
    bench=(--steps 3 --blocks 2 --warmup 3); backend=vectorized; test_tokens=2000; procs=(2)
    wide_size=(--n-seq 16 --layers 1 --batch 4); widths=16,32,64; wide_jobs=2
else
    size=(--d-model 128 --n-seq 256 --layers 4 --batch 64); base=3276800; modes=eager,graph,compiled
    bench=(--steps 20 --blocks 5 --warmup 20); backend=${BACKEND:-triton}; test_tokens=all; procs=(2 4 8)
    wide_size=(--n-seq 256 --layers 4 --batch 64); widths=64,128,256; wide_jobs=12
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >>"$log" 2>&1
fi
python3 -c "import torch; print('torch', torch.__version__)" >>"$log" 2>&1
echo "device $device; cores $(nproc); budget $budget s" >>"$log"

if [ "${GRID:-0}" != only ]; then   # GRID=only: the width grid alone (a second call)
# 1. the step's speed per variant and mode
# (--deadline inside the limit: the benchmark writes its rows so far and names the unfinished itself)
lim=$(limit 200)
timeout "$lim" python3 benchmarks/bench_train_step.py "$out/step.json" --device "$device" --modes "$modes" \
    "${size[@]}" "${bench[@]}" --backend "$backend" --deadline $(( lim > 20 ? lim - 10 : lim )) \
    >"$out/step.txt" 2>"$out/step-stderr.txt"
echo "step: rc $? at $(( $(date +%s) - start )) s" >>"$log"

# 2. several processes at once (dense, the default mode of the device)
mode=$([ "$device" = cpu ] && echo eager || echo graph)
for p in "${procs[@]}"; do
    lim=$(limit 30)
    timeout "$lim" python3 benchmarks/bench_train_step.py "$out/step-$p.json" --device "$device" \
        --modes "$mode" --variants dense --processes "$p" "${size[@]}" "${bench[@]}" --backend "$backend" \
        --deadline $(( lim > 20 ? lim - 10 : lim )) \
        >"$out/step-$p.txt" 2>"$out/step-$p-stderr.txt"
    echo "$p processes: rc $? at $(( $(date +%s) - start )) s" >>"$log"
done

# 3. the learning-rate sweep and the learning curves, all at once
grid=(--device "$device" --backend "$backend" "${size[@]}" --variant sparse --sparsity 0.6 --no-controls
      --no-reference --seeds 2 --test-tokens "$test_tokens" ${EXTRA:-})
curves_limit=$(limit 200)
pids=()
for spec in "1x 1 --lr=1e-3,3e-3,1e-2 --jobs-per-device=4" "4x 4 --jobs-per-device=2" "16x 16 --jobs-per-device=4" \
            "1x-eager 1 --step=eager --jobs-per-device=2"; do
    set -- $spec
    name=$1; tokens=$(( base * $2 )); shift 2
    timeout "$curves_limit" python3 -m bkprof validate "${grid[@]}" --tokens "$tokens" "$@" \
        --runs-file "$out/curves-$name.runs.jsonl" --format json --output "$out/curves-$name.json" \
        >"$out/curves-$name.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; echo "curves (pid $pid): rc $? at $(( $(date +%s) - start )) s" >>"$log"; done
# a grid cut short by the time limit still has its runs file: report what finished
for spec in "1x 1 --lr=1e-3,3e-3,1e-2" "4x 4" "16x 16" "1x-eager 1"; do
    set -- $spec
    name=$1; tokens=$(( base * $2 )); shift 2
    [ -s "$out/curves-$name.json" ] || [ ! -s "$out/curves-$name.runs.jsonl" ] || \
        timeout "$(limit 60 0)" python3 -m bkprof validate "${grid[@]}" --tokens "$tokens" "$@" --report-only \
            --runs-file "$out/curves-$name.runs.jsonl" --format json --output "$out/curves-$name.json" >>"$log" 2>&1
done

fi

# 4. the width grid of 2026-12-02's plan, with what is left (GRID=1)
if [ "${GRID:-0}" != 0 ] && [ "$(left)" -gt 90 ]; then
    wide=(--device "$device" --backend "$backend" "${wide_size[@]}" --tokens "$base" --seeds 3
          --variant sparse --variant multiscale --variant combined --sparsity 0.6 --downsample 2
          --test-tokens "$test_tokens" ${EXTRA:-})
    timeout "$(limit 600)" python3 -m bkprof validate "${wide[@]}" --d-model "$widths" --jobs-per-device "$wide_jobs" \
        --runs-file "$out/grid.runs.jsonl" --format json --output "$out/grid.json" --plot "$out/plots" >"$out/grid.log" 2>&1
    echo "grid: rc $? at $(( $(date +%s) - start )) s" >>"$log"
fi
echo "validate part: $(( $(date +%s) - start )) s of $budget s" >>"$log"
tail -n 30 "$log"
