#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer (docs/fuzzing.md), on the stable
# toolchain: the fuzz crate (fuzz/, its own workspace) is built with the
# sanitizer-coverage instrumentation cargo-fuzz itself asks rustc for
# (stable codegen options; no nightly, no cargo-fuzz), and each target runs
# from its committed corpus.
#   scripts/fuzz.sh TARGET SECONDS [LIBFUZZER-ARGS...]   one target
#   scripts/fuzz.sh all SECONDS                          every target in turn (CI)
#   scripts/fuzz.sh minimise TARGET                      keep the inputs that add coverage
#   scripts/fuzz.sh list                                 the targets
#   scripts/fuzz.sh lint                                 clippy on the fuzz crate (CI)
# New inputs go to fuzz/corpus/TARGET (minimise before a commit); a crash or
# a disagreement is written to fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/fuzz.sh TARGET|all SECONDS [LIBFUZZER-ARGS...] | minimise TARGET | list | lint"
targets=$(sed -n 's/^name = "\([a-z0-9_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^gracedown-fuzz$')
known() {
  grep -qx "$1" <<<"$targets" || {
    echo "fuzz.sh: no target '$1'; the targets are:" $targets >&2
    exit 2
  }
}
command=${1:?$usage}
case $command in
  list)
    echo "$targets"
    exit 0
    ;;
  minimise)
    known "${2:?$usage}"
    ;;
  lint | all) ;;
  *)
    known "$command"
    ;;
esac
if [ "$command" != lint ] && [ "$command" != minimise ]; then
  seconds=${2:?$usage}
  case $seconds in
    '' | *[!0-9]*)
      echo "fuzz.sh: SECONDS must be a whole number, not '$seconds'" >&2
      exit 2
      ;;
  esac
fi
# libfuzzer-sys compiles libFuzzer itself: a C++ compiler.
if ! command -v c++ >/dev/null; then
  echo "installing: g++"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends g++
fi
if [ "$command" = lint ]; then
  exec cargo clippy --manifest-path fuzz/Cargo.toml --target-dir fuzz/target -- -D warnings
fi
host=$(rustc -vV | sed -n 's/^host: //p')
# What cargo-fuzz passes with `--sanitizer none`; `--target` keeps the
# instrumentation out of build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
cargo build --release --quiet --manifest-path fuzz/Cargo.toml --target "$host" --target-dir fuzz/target
binary() { echo "fuzz/target/$host/release/$1"; }
if [ "$command" = minimise ]; then
  name=$2
  smaller=$(mktemp -d)
  "$(binary "$name")" -merge=1 -max_len=4096 "$smaller" "fuzz/corpus/$name"
  rm -rf "fuzz/corpus/$name"
  mv "$smaller" "fuzz/corpus/$name"
  echo "fuzz/corpus/$name: $(find "fuzz/corpus/$name" -type f | wc -l) inputs"
  exit 0
fi
shift 2
# Runs target $1 from its corpus; new inputs go to the first folder given.
run() {
  local name=$1
  shift
  mkdir -p "fuzz/corpus/$name" "fuzz/artifacts/$name"
  echo "== $name: $seconds s"
  "$(binary "$name")" -max_total_time="$seconds" -max_len=4096 \
    -artifact_prefix="fuzz/artifacts/$name/" -print_final_stats=1 "$@" "fuzz/corpus/$name"
}
if [ "$command" = all ]; then
  for name in $targets; do
    # CI: from the committed corpus, adding nothing to it.
    scratch=$(mktemp -d)
    run "$name" "$@" "$scratch"
    rm -rf "$scratch"
  done
else
  run "$command" "$@"
fi
