#!/usr/bin/env bash
# The Ray path's overhead per run against the local worker pool (docs/cluster.md), on this machine.
#
# The same CPU grid three ways, each run one torch thread, two runs at once:
#   pool:    --jobs-per-device 2 (two spawned worker processes)
#   cluster: --cluster on a one-node Ray cluster of 2 CPUs started here first (its start-up timed apart)
# Overhead per run = (cluster wall - pool wall) / runs, at two grid sizes (the slope shows what is per run
# and what is once per command). Needs Ray (pip install 'bkprof[cluster]'). Usage:
#   benchmarks/cluster_overhead.sh [REPEATS]     (prints one line per command and repeat)
set -euo pipefail
cd "$(dirname "$0")/.."
repeats="${1:-2}"
export PYTHONPATH="$PWD" RAY_USAGE_STATS_ENABLED=0
temp="$(mktemp -d /tmp/bkray.XXXX)"
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
grid=(--variant dense --variant sparse --tokens 8192 --test-tokens 1000 --no-controls --no-reference --format json)

start=$(date +%s.%N)
setsid python -m ray.scripts.scripts start --head --block --num-cpus 2 --include-dashboard=false \
    --port "$port" --temp-dir "$temp" --disable-usage-stats >"$temp/start.log" 2>&1 &
node=$!
trap 'kill -TERM -- -$node 2>/dev/null; sleep 3; kill -KILL -- -$node 2>/dev/null; rm -rf "$temp"' EXIT
until grep -qs "Ray runtime started" "$temp/start.log"; do sleep 0.1; done
echo "ray start --head: $(python -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

timed() {  # label, then bkprof's arguments
    local label=$1; shift
    rm -f "$temp/runs.jsonl"
    local t0=$(date +%s.%N)
    python -m bkprof validate "${grid[@]}" --runs-file "$temp/runs.jsonl" "$@" >/dev/null 2>"$temp/err" \
        || { cat "$temp/err"; exit 1; }
    echo "$label: $(python -c "print(f'{$(date +%s.%N) - $t0:.2f}')") s, $(wc -l <"$temp/runs.jsonl") runs, load $(cut -d' ' -f1 /proc/loadavg)"
}

# Ray's own cost of one task, apart from any run: 200 tasks that do nothing, through bkprof.cluster's task body
python - "127.0.0.1:$port" <<'PY'
import sys, time
import ray
from bkprof.cluster import on_a_node
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
task = ray.remote(on_a_node).options(num_cpus=1, max_retries=3, retry_exceptions=False)
ray.get([task.remote(int, 0) for _ in range(10)])  # the workers started
start = time.perf_counter()
ray.get([task.remote(int, 0) for _ in range(200)])
print(f"no-op task: {(time.perf_counter() - start) / 200 * 1000:.1f} ms each (200, two at a time)")
ray.shutdown()
PY

for seeds in 2 6; do
    for _ in $(seq "$repeats"); do
        timed "pool    seeds=$seeds" --seeds "$seeds" --jobs-per-device 2
        timed "cluster seeds=$seeds" --seeds "$seeds" --cluster "127.0.0.1:$port"
    done
done
