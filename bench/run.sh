#!/usr/bin/env bash
# `npm run bench`: makes sure the machine is ready (npm packages, Temporal CLI, Docker engine, sandbox image), then
# runs the benchmark suite. Arguments go to bench/run.ts (--quick, --only ttft,sandbox, --latency MS, --ttft MS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -d node_modules/@temporalio/worker ] && [ -d node_modules/@napi-rs/canvas ] || npm install --no-audit --no-fund
bash scripts/setup
exec node --import tsx bench/run.ts "$@"
