# What the benchmark scripts share; sourced, not run.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT [TRIES (200)] [WHERE TO LOOK]: returns once something accepts
# on 127.0.0.1:PORT, trying every 50 ms; exits the script (its EXIT trap
# cleans up) when TRIES pass without.
wait_port() {
  for _ in $(seq "${2:-200}"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1${3:+ (see $3)}" >&2
  exit 1
}

# whole_numbers WHAT VALUE...: exits with status 2, naming the values, unless
# each is a whole number above 0 (WHAT names them, e.g. "SECONDS and ROUNDS").
whole_numbers() {
  local what=$1 n; shift
  for n in "$@"; do
    case "$n" in ''|*[!0-9]*|0*) echo "$what are whole numbers above 0, not$(printf " '%s'" "$@")" >&2; exit 2;; esac
  done
}
