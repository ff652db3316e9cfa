#!/usr/bin/env bash
# Every benchmark, one after the other; each prints its own figures (nothing here asserts).
# Needs the shared data sets at ../shared (they are not part of a user's clone).
#   bash tests/benchmarks/all.sh [WORK_DIR]        (about an hour on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-$(mktemp -d)}
python=.venv/bin/python
retail=../shared/datasets/online-retail/online_retail.csv.gz
events=$work/retail.jsonl.gz

step() { printf '\n== %s\n' "$*"; }

step "import speed (Online Retail)"
$python tests/benchmarks/import_speed.py "$retail"
[ -f "$events" ] || $python -m dataflows import online-retail "$retail" "$events"

step "synthetic generator at 1M users x 100k items x 2M events"
$python tests/benchmarks/generator_speed.py

step "quality and speed of the engine and the baselines (prequential, K=10)"
$python -m dataflows evaluate "$events" --baselines --ablation --json

step "streamrec bench: passthrough, engine, replay 1 and 2 processes, Kafka, memory, profile"
$python -m dataflows bench --events "$events" --plot "$work/bench.png"

step "latency alone at 1,500 events/s, and when the slowest events came (epochs' snapshots)"
$python tests/benchmarks/latency.py --backlog "$events"

step "HR@10 on every synthetic shape and Online Retail"
$python tests/benchmarks/quality.py --retail "$events"

step "recovery after a concept drift (synthetic)"
$python tests/benchmarks/drift_recovery.py

step "pretrain on Online Retail's first half, then online on its second"
$python tests/benchmarks/transfer.py "$events"

step "the million-user stream: refresh cost, then a replay of its first 500,000 events"
users=$work/users500k.jsonl
if [ ! -f "$users" ]; then
    $python -m dataflows generate -q --shape cold-start --users 12000000 --items 100000 \
        --events 5000000 --seed 1 "$work/users.jsonl"
    head -n 500000 "$work/users.jsonl" > "$users"
    rm "$work/users.jsonl"
fi
$python tests/benchmarks/refresh.py "$users"
$python -m dataflows replay "$users" --out "$work/users-recs.jsonl"
