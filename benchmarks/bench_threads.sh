#!/bin/bash
# A small sweep (configs/digits.yaml: 10 units, 2 chunks of 5, 50 steps each) with torch's default number of
# threads and with one thread, alternately, twice each; prints the wall time of every run and the load average.
#   bash benchmarks/bench_threads.sh   (from the repository root; writes into a temporary folder)
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
cp -r "$ROOT/configs" "$WORK/"
cd "$WORK"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
for i in 1 2; do
  for t in default 1; do
    rm -rf "sweep_$t"
    if [ "$t" = default ]; then run="env -u OMP_NUM_THREADS"; else run="env OMP_NUM_THREADS=1"; fi
    start=$(date +%s.%N)
    $run python -m inputopt.cli sweep --config configs/digits.yaml --trainer.max_steps 50 --units_per_batch 5 \
      --sweep_dir "sweep_$t" --trainer.enable_progress_bar false > /dev/null 2>&1
    end=$(date +%s.%N)
    echo "threads=$t seconds=$(echo "$end - $start" | bc) load=$(cut -d' ' -f1 /proc/loadavg)"
  done
done
rm -rf "$WORK"
