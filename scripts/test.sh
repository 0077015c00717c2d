#!/usr/bin/env bash
# Runs every camfleet check and test, as CI does: installs the system
# packages the tests need, then formatting, lints and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust from https://rustup.rs (rustup default stable)" >&2
  exit 1
fi
# A target directory outside the clone is reused between runs when present.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/camfleet-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== import cycles (scripts/import-cycles.py)"
python3 scripts/import-cycles.py shared/src fanout/src camera-node/src viewer/src testkit/src
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== viewer without the display feature (no OpenCV)"
cargo check -p viewer --no-default-features --locked
echo "== cross-built node for the Pi (aarch64, armv7) and .debs"
scripts/build-pi.sh
echo "== tests"
# The run is kept in a log so that, when tests fail, the reason of each is
# printed again last: a long run's summary shows its head and tail only.
log="$CARGO_TARGET_DIR/test-run.log"
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
else
  cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
fi
if [ "$status" -ne 0 ]; then
  echo "== why each test failed (from $log)"
  # Every test that failed, timed out or died of a signal, once each; then
  # the first panic under each and up to four lines of its message.
  grep -E '^ *(FAIL|TIMEOUT|SIG[A-Z]+|LEAK-FAIL) \[' "$log" | awk '!seen[$0]++' || true
  awk '/^ *(FAIL|TIMEOUT|SIG[A-Z]+|LEAK-FAIL) \[/ { test = $0; shown = 0 }
       /panicked at/ && !shown { print test; n = 5; shown = 1 }
       /stack backtrace:/ { n = 0 }
       n > 0 { print "  " $0; n-- }' "$log"
  exit "$status"
fi
