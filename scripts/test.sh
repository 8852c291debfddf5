#!/usr/bin/env bash
# scripts/test.sh: THE test command of eddy (CI runs it through .ci/run).
#
#   scripts/test.sh                 full suite: go vet and staticcheck, then go test -race against a real
#                                   Kafka broker (started here unless EDDY_TEST_BROKERS is set)
#   scripts/test.sh --fast          fast subset, no broker: go vet, staticcheck, go test -race -short
#   scripts/test.sh [opts] -- ARGS  pass ARGS to go test (e.g. -- -run TestKafkaX ./processor/...;
#                                   package patterns given there replace ./...)
#
# Options: --fast, --no-vet, --verbose (also stream the "=== RUN" lines), -h/--help.
#
# Environment:
#   EDDY_TEST_BROKERS   use this broker (host:port[,host:port]) instead of starting one
#   EDDY_TEST_STATE     where logs and the managed broker's state go (default: a new directory
#                       per run, ${TMPDIR:-/tmp}/eddy-test.XXXXXX, so runs on one host never share
#                       a broker; a directory given here is locked for the run: a second run
#                       with the same one stops at once instead of stopping the first's broker)
#   EDDY_TEST_APICURIO  use this Apicurio ccompat URL instead of starting Apicurio Registry
#   EDDY_CACHE          cache root for scripts/kafka.sh, scripts/apicurio.sh and the Python
#                       virtualenv of scripts/avro_consume.py (default $HOME/.cache/eddy)
#   GOFLAGS             passed through untouched (e.g. -buildvcs=false)
#
# Exported to the tests:
#   EDDY_TEST_BROKERS=127.0.0.1:PORT  the broker (full mode only)
#   EDDY_REQUIRE_KAFKA=1              a TestKafka* test must fail, not skip, without a broker
#   EDDY_KAFKA_SH, EDDY_KAFKA_STATE   only when this script started the broker (its script and
#                                     state; crash tests use a broker of their own: kafkatest.Private)
#   EDDY_TEST_APICURIO=http://127.0.0.1:PORT/apis/ccompat/v7
#                                     Apicurio Registry's Confluent-compatible API (full mode only;
#                                     started here with scripts/apicurio.sh unless already set)
#   EDDY_TEST_PYTHON=PATH             a Python with confluent-kafka[avro,schemaregistry] (pinned in
#                                     scripts/avro_consume.requirements.txt), for scripts/avro_consume.py
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Debian packages the suite needs, as "command:package"; add more here.
DEB_PACKAGES=("kcat:kcat" "prometheus-alertmanager:prometheus-alertmanager" "amtool:prometheus-alertmanager" "chromium:chromium")
# Needed only when this script starts the broker (scripts/kafka.sh) or Apicurio
# Registry (scripts/apicurio.sh) itself.
BROKER_DEB_PACKAGES=("java:openjdk-17-jre-headless" "mvn:maven")

# staticcheck's module version (honnef.co/go/tools), run with go run.
STATICCHECK_VERSION=v0.8.2

FAST=0
VET=1
VERBOSE=0
GO_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --fast) FAST=1 ;;
    --no-vet) VET=0 ;;
    --verbose|-v) VERBOSE=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; GO_ARGS=("$@"); break ;;
    *) echo "test.sh: unknown option '$1' (go test arguments go after --)" >&2; exit 2 ;;
  esac
  shift
done

# Each run has a state directory of its own, so that runs on a shared host
# never see (and never stop) each other's broker; the directory is locked
# for the run, so a broker recorded in it while we hold the lock can only be
# one a hard-killed earlier run left behind.
if [[ -n "${EDDY_TEST_STATE:-}" ]]; then
  STATE="$EDDY_TEST_STATE"
  mkdir -p "$STATE"
  FRESH_STATE=0
else
  STATE="$(mktemp -d "${TMPDIR:-/tmp}/eddy-test.XXXXXX")"
  FRESH_STATE=1
fi
STATE_LOCK_FD=""
if command -v flock >/dev/null 2>&1; then
  exec {STATE_LOCK_FD}>"$STATE/.lock"
  flock -n "$STATE_LOCK_FD" || { echo "test.sh: error: another scripts/test.sh is using $STATE (EDDY_TEST_STATE): give this run another directory, or unset EDDY_TEST_STATE for a fresh one" >&2; exit 1; }
fi
# unlocked runs a command without the lock's file descriptor, so that a
# broker it starts does not hold the lock after this run ends.
unlocked() {
  if [[ -n "$STATE_LOCK_FD" ]]; then "$@" {STATE_LOCK_FD}>&-; else "$@"; fi
}
KAFKA_SH="$ROOT/scripts/kafka.sh"
KAFKA_STATE="$STATE/kafka"
APICURIO_SH="$ROOT/scripts/apicurio.sh"
APICURIO_STATE="$STATE/apicurio"
CACHE_ROOT="${EDDY_CACHE:-$HOME/.cache/eddy}"

say() { echo "test.sh: $*" >&2; }
die() { echo "test.sh: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- Debian packages

install_packages() {
  local missing=() pair cmd pkg
  for pair in "$@"; do
    cmd="${pair%%:*}"; pkg="${pair#*:}"
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      die "missing Debian package(s): ${missing[*]}. Not root and no password-less sudo here:
  install them yourself: sudo apt-get install -y ${missing[*]}"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing package(s) ${missing[*]} and no apt-get to install them"
  say "installing missing Debian package(s): ${missing[*]}"
  "${sudo[@]}" apt-get update -qq >"$STATE/apt.log" 2>&1 \
    || { tail -n 20 "$STATE/apt.log" >&2; die "apt-get update failed (log: $STATE/apt.log)"; }
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$STATE/apt.log" 2>&1 \
    || { tail -n 20 "$STATE/apt.log" >&2; die "apt-get install ${missing[*]} failed (log: $STATE/apt.log)"; }
}

# ---------------------------------------------------------------- broker

STARTED_BROKER=0
STARTED_APICURIO=0
SUMMARY_PID=""
GO_PGID_FILE="$STATE/go-test.pgid"
cleanup() {
  local rc=$?
  trap - INT TERM
  if [[ -n "$SUMMARY_PID" ]]; then
    # Interrupted while go test ran: end go test and its test binaries (their own
    # process group), then let the summarizer print what it saw.
    local pgid
    pgid="$(cat "$GO_PGID_FILE" 2>/dev/null || true)"
    if [[ "$pgid" =~ ^[0-9]+$ ]] && kill -0 -- "-$pgid" 2>/dev/null; then
      say "interrupted: stopping go test (process group $pgid)"
      kill -TERM -- "-$pgid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
    wait "$SUMMARY_PID" 2>/dev/null || true
  fi
  if [[ "$STARTED_BROKER" == 1 ]]; then
    EDDY_KAFKA_STATE="$KAFKA_STATE" "$KAFKA_SH" stop >/dev/null 2>&1 \
      || say "warning: stopping the test broker failed (state $KAFKA_STATE)"
  fi
  if [[ "$STARTED_APICURIO" == 1 ]]; then
    EDDY_APICURIO_STATE="$APICURIO_STATE" "$APICURIO_SH" stop >/dev/null 2>&1 \
      || say "warning: stopping Apicurio Registry failed (state $APICURIO_STATE)"
  fi
  # A passing run in a directory of its own keeps only its logs; a failing
  # one keeps the broker's and Apicurio's data and logs to look at.
  if [[ "$FRESH_STATE" == 1 && "$rc" == 0 ]]; then
    rm -rf "$KAFKA_STATE" "$APICURIO_STATE"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- third-party Avro consumer

# A virtualenv with the pinned dependencies of scripts/avro_consume.py, made once
# per version of the requirements file under the cache dir (never system-wide).
python_venv() {
  local req="$ROOT/scripts/avro_consume.requirements.txt" sum dir
  sum="$(sha256sum "$req" | cut -c1-12)"
  dir="$CACHE_ROOT/pyvenv-avro-$sum"
  if [[ ! -f "$dir/.complete" ]]; then
    say "creating the Python virtualenv for scripts/avro_consume.py in $dir (first time only)"
    rm -rf "$dir"
    mkdir -p "$CACHE_ROOT"
    python3 -m venv "$dir" >"$STATE/venv.log" 2>&1 \
      || { tail -n 20 "$STATE/venv.log" >&2; die "python3 -m venv failed (Debian: apt-get install python3-venv; log: $STATE/venv.log)"; }
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$req" >>"$STATE/venv.log" 2>&1 \
      || { tail -n 20 "$STATE/venv.log" >&2; die "pip install -r $req failed (log: $STATE/venv.log)"; }
    touch "$dir/.complete"
  fi
  echo "$dir/bin/python"
}

# ---------------------------------------------------------------- go vet

command -v go >/dev/null 2>&1 || die "Go is not on PATH"
command -v python3 >/dev/null 2>&1 || die "python3 is required (it summarizes go test -json)"

if [[ "$VET" == 1 ]]; then
  say "go vet ./..."
  go vet ./... || die "go vet failed"
  go vet -tags eddytest ./... || die "go vet -tags eddytest failed"
  # staticcheck, pinned, from the Go module proxy (cached after the first run).
  say "staticcheck ./..."
  go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ./... || die "staticcheck failed"
fi

# ---------------------------------------------------------------- go test

# Package patterns given after -- replace ./...
PKGS=("./...")
for a in "${GO_ARGS[@]+"${GO_ARGS[@]}"}"; do
  if [[ "$a" == "." || "$a" == ./* || "$a" == ../* ]]; then PKGS=(); break; fi
done

SUMMARY_ARGS=(--log "$STATE/go-test.log" --json-log "$STATE/go-test.json"
              --module "$(go list -m 2>/dev/null || true)")
[[ "$VERBOSE" == 1 ]] && SUMMARY_ARGS+=(--verbose)

if [[ "$FAST" == 1 ]]; then
  unset EDDY_REQUIRE_KAFKA
  TEST_CMD=(go test -json -race -short "${PKGS[@]+"${PKGS[@]}"}" "${GO_ARGS[@]+"${GO_ARGS[@]}"}")
else
  install_packages "${DEB_PACKAGES[@]}"
  if [[ -n "${EDDY_TEST_BROKERS:-}" ]]; then
    say "using the broker in EDDY_TEST_BROKERS=$EDDY_TEST_BROKERS"
    unset EDDY_KAFKA_SH EDDY_KAFKA_STATE   # not ours: tests must not kill it
  else
    install_packages "${BROKER_DEB_PACKAGES[@]}"
    export EDDY_KAFKA_STATE="$KAFKA_STATE"
    # A broker recorded in our locked directory was left by an earlier run
    # that was killed hard (only with EDDY_TEST_STATE): stop it.
    [[ "$FRESH_STATE" == 1 ]] || "$KAFKA_SH" stop >/dev/null 2>&1 || true
    STARTED_BROKER=1
    EDDY_TEST_BROKERS="$(unlocked "$KAFKA_SH" start)" || die "could not start Kafka (see above)"
    export EDDY_KAFKA_SH="$KAFKA_SH"
  fi
  export EDDY_TEST_BROKERS
  if [[ -n "${EDDY_TEST_APICURIO:-}" ]]; then
    say "using the Apicurio Registry in EDDY_TEST_APICURIO=$EDDY_TEST_APICURIO"
  else
    install_packages "${BROKER_DEB_PACKAGES[@]}" "curl:curl"
    # One left behind in our locked directory by a hard-killed earlier run: stop it.
    [[ "$FRESH_STATE" == 1 ]] || EDDY_APICURIO_STATE="$APICURIO_STATE" "$APICURIO_SH" stop >/dev/null 2>&1 || true
    STARTED_APICURIO=1
    EDDY_TEST_APICURIO="$(EDDY_APICURIO_STATE="$APICURIO_STATE" unlocked "$APICURIO_SH" start)" \
      || die "could not start Apicurio Registry (see above)"
  fi
  export EDDY_TEST_APICURIO
  EDDY_TEST_PYTHON="$(python_venv)"
  export EDDY_TEST_PYTHON
  export EDDY_REQUIRE_KAFKA=1
  SUMMARY_ARGS+=(--expect-kafka)
  TEST_CMD=(go test -json -race -count=1 -timeout 25m "${PKGS[@]+"${PKGS[@]}"}" "${GO_ARGS[@]+"${GO_ARGS[@]}"}")
fi

say "${TEST_CMD[*]}  (EDDY_TEST_BROKERS=${EDDY_TEST_BROKERS:-unset}; EDDY_TEST_APICURIO=${EDDY_TEST_APICURIO:-unset}; full -v log: $STATE/go-test.log)"
# go test runs in a session of its own (setsid), so that an interrupted run can end
# it and all its test binaries by process group; its exit status travels to the
# summarizer as a last event, so that the summary's closing "N passed, N failed"
# line is the last line printed either way.
rm -f "$GO_PGID_FILE"
setsid bash -c 'echo $$ >"$0"; "$@" 2>&1; echo "{\"Action\":\"eddy-exit\",\"Code\":$?}"' \
    "$GO_PGID_FILE" "${TEST_CMD[@]}" \
  | python3 "$ROOT/scripts/gotest-summary.py" "${SUMMARY_ARGS[@]}" &
SUMMARY_PID=$!
rc=0
wait "$SUMMARY_PID" || rc=$?
SUMMARY_PID=""
exit "$rc"
