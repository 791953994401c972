#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer (docs/fuzzing.md), on the stable
# toolchain: the fuzz crate (fuzz/, its own workspace) is built with the
# sanitizer-coverage instrumentation cargo-fuzz itself asks rustc for
# (stable codegen options; no nightly, no cargo-fuzz), and each target runs
# from its committed corpus.
#   scripts/fuzz.sh TARGET SECONDS [LIBFUZZER-ARGS...]   one target
#   scripts/fuzz.sh all SECONDS                          every target in turn (CI)
#   scripts/fuzz.sh list                                 the targets
#   scripts/fuzz.sh lint                                 clippy on the fuzz crate (CI)
# New inputs go to fuzz/corpus/TARGET (minimise with -merge=1 before a
# commit); a crash or a disagreement is written to fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=$(sed -n 's/^name = "\([a-z0-9_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^gracedown-fuzz$')
if [ "${1:-}" = list ]; then
  echo "$targets"
  exit 0
fi
# libfuzzer-sys compiles libFuzzer itself: a C++ compiler.
if ! command -v c++ >/dev/null; then
  echo "installing: g++"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends g++
fi
if [ "${1:-}" = lint ]; then
  exec cargo clippy --manifest-path fuzz/Cargo.toml --target-dir fuzz/target -- -D warnings
fi
target=${1:?usage: scripts/fuzz.sh TARGET|all|list|lint SECONDS [LIBFUZZER-ARGS...]}
seconds=${2:?usage: scripts/fuzz.sh TARGET|all SECONDS}
shift 2
case $seconds in
  ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac
if [ "$target" != all ] && ! grep -qx "$target" <<<"$targets"; then
  echo "fuzz.sh: no target '$target'; the targets are:" $targets >&2
  exit 2
fi
host=$(rustc -vV | sed -n 's/^host: //p')
# What cargo-fuzz passes with `--sanitizer none`; `--target` keeps the
# instrumentation out of build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
cargo build --release --quiet --manifest-path fuzz/Cargo.toml --target "$host" --target-dir fuzz/target
run() {
  local name=$1
  shift
  mkdir -p "fuzz/corpus/$name" "fuzz/artifacts/$name"
  echo "== $name: $seconds s"
  "fuzz/target/$host/release/$name" -max_total_time="$seconds" -max_len=4096 \
    -artifact_prefix="fuzz/artifacts/$name/" -print_final_stats=1 "$@" "fuzz/corpus/$name"
}
if [ "$target" = all ]; then
  for name in $targets; do
    # CI: from the committed corpus, adding nothing to it.
    scratch=$(mktemp -d)
    run "$name" "$scratch" "$@"
    rm -rf "$scratch"
  done
else
  run "$target" "$@"
fi
