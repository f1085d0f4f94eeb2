#!/usr/bin/env bash
# The scale simulation grid of issue 16 (docs/BENCHMARKS.md, "Bounded-load assignment"):
# task-dispatch's scale_sim at 10 x 10,000, 100 x 100,000 and 1,000 x 1,000,000 nodes x apps,
# uniform and zipf weights, the bounded assignment at epsilon 0.05, 0.1 and 0.25, and the plain
# rendezvous ring (once per size and weight law: epsilon does not apply to it).
# Prints one JSON line per run (scale_sim's contract, docs/DESIGN.md). Extra arguments go to
# every run (e.g. --seed 7). About a minute on two cores, 0.5 GB of memory at most.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --release -p task-dispatch --example scale_sim
sim="${CARGO_TARGET_DIR:-target}/release/examples/scale_sim"

for size in "10 10000" "100 100000" "1000 1000000"; do
    read -r nodes apps <<<"$size"
    for weights in uniform zipf; do
        for epsilon in 0.05 0.1 0.25; do
            "$sim" --nodes "$nodes" --apps "$apps" --weights "$weights" --epsilon "$epsilon" \
                --assignment bounded "$@"
        done
        "$sim" --nodes "$nodes" --apps "$apps" --weights "$weights" --assignment rendezvous "$@"
    done
done
