#!/usr/bin/env bash
# The test command: installs what the suite needs when it is missing, then
# runs every test (unit, integration, doc). Nothing is skipped: the suite
# fails when a tool it needs is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the integration tests run for real.
need=()
command -v start_server >/dev/null || need+=(libserver-starter-perl)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
command -v systemd-socket-activate >/dev/null || need+=(systemd)
perl -MPlack::Handler::Starlet -e1 2>/dev/null || need+=(starlet)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Doc tests first, so that the last line printed is the main suite's summary.
cargo test --workspace --doc
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --lib --bins --tests "$@"
fi
