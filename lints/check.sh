#!/usr/bin/env bash
# Proves the lint preset fires: runs clippy with lints/clippy.toml on the
# sample crate and checks that each banned crossing is reported.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(CLIPPY_CONF_DIR="$here" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/../target/lint-sample}" \
  cargo clippy --quiet --manifest-path "$here/sample/Cargo.toml" -- -D clippy::disallowed_methods 2>&1 || true)"
missing=0
for banned in \
  "tokio::task::spawn_blocking" \
  "tokio::task::block_in_place" \
  "tokio::runtime::Handle::block_on" \
  "tokio::runtime::Runtime::block_on" \
  "futures_executor::block_on" \
  "std::thread::sleep"; do
  if ! grep -q "use of a disallowed method \`$banned" <<<"$out"; then
    echo "lint preset did not fire for $banned"
    missing=1
  fi
done
fired="$(grep -c "use of a disallowed method" <<<"$out" || true)"
echo "lint preset: $fired disallowed-method errors on the sample crate"
if [ "$missing" -ne 0 ] || [ "$fired" -lt 6 ]; then
  echo "$out"
  exit 1
fi
