#!/usr/bin/env bash
# Runs each fuzz target for a while on the stable toolchain (no sanitizer).
# New inputs go to target/fuzz-corpus/, so the seed corpus in corpus/ stays small.
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decoder message_decode connection_ops relay_ops ibl_input ws_input tls_input)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
for t in "${targets[@]}"; do
  work="target/fuzz-corpus/$t"
  mkdir -p "$work"
  echo "== $t for ${seconds}s"
  cargo fuzz run --sanitizer none "$t" "$work" "corpus/$t" -- -max_total_time="$seconds" -max_len=4096
done
