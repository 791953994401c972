#!/usr/bin/env bash
# The test command: installs what the suite needs when it is missing, then
# runs every test (unit, integration, doc). Nothing is skipped: the suite
# fails when a tool it needs is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the integration tests run for real (nginx: the experiment's
# proxy scenario; HAProxy: its fleet).
need=()
command -v start_server >/dev/null || need+=(libserver-starter-perl)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
command -v systemd-socket-activate >/dev/null || need+=(systemd)
perl -MPlack::Handler::Starlet -e1 2>/dev/null || need+=(starlet)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
# The deploy kit's validators: Python for kubernetes-validate (from PyPI).
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# kubernetes-validate (Kubernetes' own schemas, offline) in a private
# environment, for the deploy kit's tests.
export GRACEDOWN_DEPLOY_VENV="$PWD/target/deploy-venv"
if [ ! -x "$GRACEDOWN_DEPLOY_VENV/bin/kubernetes-validate" ]; then
  echo "installing kubernetes-validate into $GRACEDOWN_DEPLOY_VENV"
  python3 -m venv "$GRACEDOWN_DEPLOY_VENV"
  "$GRACEDOWN_DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check 'kubernetes-validate==1.37.0'
fi

# Every process the suite starts inherits this marker (start_server passes
# its environment on to workers), so whatever outlives the suite is found.
export GRACEDOWN_TEST_RUN="$$.$RANDOM"

status=0
# Doc tests first, so that the last line printed is the main suite's summary.
cargo test --workspace --doc || status=$?
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --lib --bins --tests "$@" || status=$?
fi

# Nothing the suite started may still run. Workers whose supervisor was
# killed get a few seconds to drain first.
leftovers() {
  local dir pid
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = "$$" ] && continue
    if { env -u GRACEDOWN_TEST_RUN tr '\0' '\n' <"$dir/environ"; } 2>/dev/null |
      env -u GRACEDOWN_TEST_RUN grep -qx "GRACEDOWN_TEST_RUN=$GRACEDOWN_TEST_RUN"; then
      echo "$pid"
    fi
  done
}
for _ in $(seq 50); do
  left=$(leftovers)
  [ -z "$left" ] && break
  sleep 0.2
done
if [ -n "$left" ]; then
  echo "error: processes started by the test suite are still running:" >&2
  for pid in $left; do
    echo "  $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
    kill -KILL "$pid" 2>/dev/null || true
  done
  status=1
fi
exit "$status"
