#!/usr/bin/env bash
# Starts a protocol suite as N shards in the background, one per CPU core, each pinned to
# its core with taskset (XLA:CPU's XLA_FLAGS do not stop its Eigen threads from spreading
# over every core; pinned, two ViT-mini shards on 2 cores ran 1.3x the throughput of two
# unpinned ones). The suite resumes from its cache: rerun the same line to continue.
#
#   bash scripts/shards.sh N SUITE --config=... --workdir=... --out=...
#   bash scripts/shards.sh 2 recipe --config=experiments/recipe/config.py:vit \
#       --workdir=experiments/results/cache/recipe --out=experiments/results/recipe_vit
#
# Logs: runs/shards/<suite>-<i>.log; process ids: runs/shards/<suite>.pids.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ $# -lt 2 ]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
n=$1 suite=$2
shift 2
cores=$(nproc)
mkdir -p runs/shards
: > "runs/shards/$suite.pids"
for ((i = 0; i < n; i++)); do
  PYTHONPATH=. XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
    nohup taskset -c $((i % cores)) .venv/bin/python -m "experiments.$suite" "$@" --shard "$i/$n" \
    >> "runs/shards/$suite-$i.log" 2>&1 &
  echo $! >> "runs/shards/$suite.pids"
done
echo "started $n shards of experiments.$suite: pids $(tr '\n' ' ' < "runs/shards/$suite.pids")"
echo "logs: runs/shards/$suite-<i>.log; stop: kill \$(cat runs/shards/$suite.pids)"
