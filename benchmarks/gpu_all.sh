#!/usr/bin/env bash
# The next GPU session in ONE device call (at most 10 minutes on one H200): every part writes under OUT
# as it goes, inside one shared time budget, so whatever is cut short keeps what it finished.
#
#   validate   benchmarks/gpu_validate.sh OUT/validate LEFT: the training step's tokens/s (eager, graph,
#              compiled; 1-8 processes at once), the learning-rate sweep and the learning curves
#              (~360 s; VALIDATE_S, default 420 s, is its budget: see the arithmetic in that script)
#   kernels    every other benchmarks/gpu_*.sh part, in name order, each called as `bash PART OUT/NAME LEFT`
#              with LEFT the seconds the budget has left (a part must finish within them, or is cut)
#
# Usage (repository root): bash benchmarks/gpu_all.sh OUT [PART...]   (BUDGET_S: the whole budget, default
# 570 s: the call's 600 s less start-up and the copy back). PARTs (validate, kernel, ...) pick parts; none: all.
# The parts' own estimates (validate ~360 s, kernel ~300 s, at most 540 s) exceed one call together, so a
# session with the device runs them as two calls, kernel first (it also proves the kernels the validate
# runs train with):  bash benchmarks/gpu_all.sh $OUT kernel   then   bash benchmarks/gpu_all.sh $OUT validate
# CPU plumbing check: DEVICE=cpu bash benchmarks/gpu_all.sh /tmp/all
set -u
mkdir -p "$1"; out=$(cd "$1" && pwd); shift
parts=" $* "
wanted() { [ "$parts" = "  " ] || [[ "$parts" == *" $1 "* ]]; }   # no PART named: every part
budget=${BUDGET_S:-570}; start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
log=$out/all-log.txt
echo "gpu_all: budget $budget s; $(date -u +%FT%TZ)" >"$log"

# ---- validate (this helper's part) ----------------------------------------------------------------
if wanted validate; then
    validate_s=${VALIDATE_S:-420}; [ "$(left)" -lt "$validate_s" ] && validate_s=$(left)
    timeout "$validate_s" bash benchmarks/gpu_validate.sh "$out/validate" "$validate_s" >>"$log" 2>&1
    echo "validate: rc $? at $(( $(date +%s) - start )) s" >>"$log"
fi

# ---- kernel benchmarks: the other parts (benchmarks/gpu_*.sh), added by their authors ----------------
for part in benchmarks/gpu_*.sh; do
    name=$(basename "$part" .sh); name=${name#gpu_}
    case "$name" in all|validate) continue ;; esac
    wanted "$name" || continue
    [ "$(left)" -gt 10 ] || { echo "$name: skipped, no time left" >>"$log"; continue; }
    timeout "$(left)" bash "$part" "$out/$name" "$(left)" >>"$log" 2>&1
    echo "$name: rc $? at $(( $(date +%s) - start )) s" >>"$log"
done
echo "gpu_all: $(( $(date +%s) - start )) s of $budget s" >>"$log"
tail -n 40 "$log"
