#!/usr/bin/env bash
# scripts/apicurio.sh: a throwaway Apicurio Registry 3.x (in-memory storage) for
# eddy's interoperability tests: a third-party schema registry whose
# Confluent-compatible API lives under /apis/ccompat/v7.
#
#   scripts/apicurio.sh start    fetch the release if needed, start it on a free loopback
#                                port, wait until its ccompat API answers, print that API's URL
#   scripts/apicurio.sh stop     SIGTERM (SIGKILL after 30s); everything it stored is gone
#   scripts/apicurio.sh status   say whether it runs, where, and where its log is (exit 1 if not)
#   scripts/apicurio.sh env      print: export EDDY_TEST_APICURIO=http://127.0.0.1:PORT/apis/ccompat/v7
#   scripts/apicurio.sh url      print just that URL
#   scripts/apicurio.sh fetch    only download and unpack the release into the cache
#
# Environment:
#   EDDY_CACHE               cache root (default $HOME/.cache/eddy); the release goes to
#                            $EDDY_CACHE/apicurio-<version>/
#   EDDY_APICURIO_STATE      state dir holding pid, port, log (default /tmp/eddy-apicurio)
#   EDDY_APICURIO_PORT       HTTP port (default: a free port picked from the OS)
#   EDDY_APICURIO_VERSION    Apicurio Registry version (default below)
#   EDDY_APICURIO_COMPATIBILITY  the default global COMPATIBILITY rule (default BACKWARD, as
#                            in Confluent's registry and eddy's; Apicurio's own default is none)
#   EDDY_APICURIO_HEAP       JVM heap flags (default "-Xms64m -Xmx384m")
#   EDDY_APICURIO_START_TIMEOUT  seconds to wait for it (default 120)
#   EDDY_MVN_ARGS            extra arguments for mvn (e.g. -o, -s settings.xml)
set -euo pipefail

# 3.0.9 is the newest Apicurio Registry 3.x whose release runs on Java 17 (the
# Java Debian 12 ships, and the one Kafka runs on here): the 3.3.x releases are
# compiled for Java 21 (class file version 65) and fail at start-up on 17.
APICURIO_VERSION="${EDDY_APICURIO_VERSION:-3.0.9}"
COMPATIBILITY="${EDDY_APICURIO_COMPATIBILITY:-BACKWARD}"

CACHE_ROOT="${EDDY_CACHE:-$HOME/.cache/eddy}"
CACHE_DIR="$CACHE_ROOT/apicurio-$APICURIO_VERSION"
APP_DIR="$CACHE_DIR/app"
STATE_DIR="${EDDY_APICURIO_STATE:-/tmp/eddy-apicurio}"
STATE_FILE="$STATE_DIR/state.env"
START_TIMEOUT="${EDDY_APICURIO_START_TIMEOUT:-120}"
HEAP_OPTS="${EDDY_APICURIO_HEAP:--Xms64m -Xmx384m}"
CCOMPAT_PATH="/apis/ccompat/v7"

PROG="scripts/apicurio.sh"

NAME="apicurio.sh"
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- prerequisites

release_cached() { [[ -f "$CACHE_DIR/.complete" && -d "$APP_DIR" ]]; }

need_prereqs() {
  need_java "Apicurio Registry $APICURIO_VERSION"
  release_cached || need_mvn "Apicurio Registry $APICURIO_VERSION"
}

# ---------------------------------------------------------------- release cache

# The release is the io.apicurio:apicurio-registry-app tarball with classifier
# "all" on Maven Central, fetched the way scripts/kafka.sh fetches Kafka: with
# Maven, into Maven's local repository, then unpacked into the cache.
fetch_release() {
  release_cached && return 0
  need_mvn "Apicurio Registry $APICURIO_VERSION"
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/.fetch.lock"
  flock -w 900 8 || die "timed out waiting for another fetch into $CACHE_DIR"
  if release_cached; then exec 8>&-; return 0; fi

  log "fetching Apicurio Registry $APICURIO_VERSION with Maven into $APP_DIR (first time only)..."
  local t0=$SECONDS tmp="$CACHE_DIR/fetch.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # shellcheck disable=SC2086
  if ! mvn -B -q --no-transfer-progress ${EDDY_MVN_ARGS:-} dependency:copy \
        -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
        -DoutputDirectory="$tmp" >"$CACHE_DIR/mvn.log" 2>&1; then
    tail -n 40 "$CACHE_DIR/mvn.log" >&2 || true
    rm -rf "$tmp"
    die "Maven could not fetch io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all (full log: $CACHE_DIR/mvn.log).
  The first fetch needs network access to Maven Central."
  fi
  local tarball="$tmp/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz"
  [[ -f "$tarball" ]] || die "Maven finished but $tarball is missing (see $CACHE_DIR/mvn.log)"
  mkdir -p "$tmp/app"
  tar -xzf "$tarball" -C "$tmp/app" || die "could not unpack $tarball"
  rm -f "$tarball"
  rm -rf "$APP_DIR"
  mv "$tmp/app" "$APP_DIR"
  rm -rf "$tmp"
  app_jar >/dev/null || die "the release unpacked into $APP_DIR has no runnable jar"
  echo "$APICURIO_VERSION" >"$CACHE_DIR/.complete"
  exec 8>&-
  log "fetched and unpacked Apicurio Registry $APICURIO_VERSION in $((SECONDS - t0))s"
}

# The jar to run: quarkus-run.jar (the fast-jar layout of the 3.1+ releases) or
# the legacy runner jar (3.0.x).
app_jar() {
  if [[ -f "$APP_DIR/quarkus-run.jar" ]]; then
    echo "$APP_DIR/quarkus-run.jar"
    return 0
  fi
  local j
  for j in "$APP_DIR"/*-runner.jar; do
    [[ -f "$j" ]] && { echo "$j"; return 0; }
  done
  return 1
}

# ---------------------------------------------------------------- helpers

load_state() {
  APICURIO_PID="" APICURIO_PORT="" APICURIO_URL="" APICURIO_LOG=""
  [[ -f "$STATE_FILE" ]] || return 1
  # shellcheck disable=SC1090
  source "$STATE_FILE"
}

save_state() {
  mkdir -p "$STATE_DIR"
  cat >"$STATE_FILE.tmp" <<EOF
APICURIO_VERSION='$APICURIO_VERSION'
APICURIO_PID='$APICURIO_PID'
APICURIO_PORT='$APICURIO_PORT'
APICURIO_URL='$APICURIO_URL'
APICURIO_LOG='$APICURIO_LOG'
EOF
  mv "$STATE_FILE.tmp" "$STATE_FILE"
  echo "$APICURIO_URL" >"$STATE_DIR/url"
}

# True if $1 is a live process that is our registry (guards against pid reuse):
# its command line carries this state dir as a marker property.
is_ours() {
  local pid="$1"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  local cmd
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *"-Deddy.apicurio.state=$STATE_DIR "* ]]
}

running() { load_state && is_ours "$APICURIO_PID"; }

launch() {
  local heap jar
  read -r -a heap <<<"$HEAP_OPTS"
  jar="$(app_jar)"
  # setsid: not in the caller's process group, so ^C in the shell that ran
  # `start` does not take it down; stop addresses it by pid. Storage is the
  # release's default, an in-memory H2 database: nothing survives a stop.
  setsid nohup "$JAVA_BIN" "${heap[@]}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Deddy.apicurio.state="$STATE_DIR" \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$APICURIO_PORT" \
    -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
    -Dapicurio.rules.global.compatibility="$COMPATIBILITY" \
    -jar "$jar" >>"$APICURIO_LOG" 2>&1 </dev/null 8>&- 9>&- &
  APICURIO_PID=$!
  save_state
}

fail_start() {
  echo "apicurio.sh: error: $1" >&2
  echo "---- last 40 lines of $APICURIO_LOG ----" >&2
  tail -n 40 "$APICURIO_LOG" >&2 || true
  echo "---- end of registry log ----" >&2
  if is_ours "$APICURIO_PID"; then kill -9 "$APICURIO_PID" 2>/dev/null || true; fi
  rm -f "$STATE_FILE" "$STATE_DIR/url"
  exit 1
}

# Waits until GET /apis/ccompat/v7/subjects answers 200. Returns 2 if the
# process exited because its port was taken meanwhile (the caller retries).
wait_ready() {
  local deadline=$(( SECONDS + START_TIMEOUT ))
  while :; do
    if ! is_ours "$APICURIO_PID"; then
      grep -qiE 'port.*already|address already in use' "$APICURIO_LOG" && return 2
      fail_start "Apicurio Registry (pid $APICURIO_PID) exited during start-up"
    fi
    if port_open "$APICURIO_PORT" && curl -sf -o /dev/null --max-time 5 "$APICURIO_URL/subjects"; then
      return 0
    fi
    (( SECONDS < deadline )) || fail_start "Apicurio Registry did not answer within ${START_TIMEOUT}s"
    sleep 0.3
  done
}

# ---------------------------------------------------------------- commands

cmd_start() {
  need_prereqs
  command -v curl >/dev/null 2>&1 || die "curl is required (it checks that the registry answers)"
  lock_state
  if running; then
    log "already running (pid $APICURIO_PID, state $STATE_DIR)"
    echo "$APICURIO_URL"
    return 0
  fi
  rm -f "$STATE_FILE" "$STATE_DIR/url"
  fetch_release
  local t0=$SECONDS attempt rc
  APICURIO_LOG="$STATE_DIR/apicurio.log"
  : >"$APICURIO_LOG"
  for attempt in 1 2 3; do
    APICURIO_PORT="${EDDY_APICURIO_PORT:-$(free_port)}"
    port_open "$APICURIO_PORT" && die "port $APICURIO_PORT on 127.0.0.1 is already in use (EDDY_APICURIO_PORT?)"
    APICURIO_URL="http://127.0.0.1:$APICURIO_PORT$CCOMPAT_PATH"
    echo "==== apicurio.sh start $(date -u +%FT%TZ) port $APICURIO_PORT ====" >>"$APICURIO_LOG"
    launch
    rc=0
    wait_ready || rc=$?
    [[ $rc == 0 ]] && break
    [[ -n "${EDDY_APICURIO_PORT:-}" || $attempt == 3 ]] && fail_start "port $APICURIO_PORT was taken"
    log "port $APICURIO_PORT was taken before the registry bound it; trying another"
  done
  log "Apicurio Registry $APICURIO_VERSION up in $((SECONDS - t0))s (pid $APICURIO_PID, global compatibility $COMPATIBILITY, log $APICURIO_LOG)"
  echo "$APICURIO_URL"
}

cmd_stop() {
  lock_state
  if ! load_state; then
    log "not running (no state in $STATE_DIR)"
    return 0
  fi
  if is_ours "$APICURIO_PID"; then
    terminate "$APICURIO_PID" is_ours registry
    log "stopped Apicurio Registry (pid $APICURIO_PID)"
  else
    log "Apicurio Registry was not running; cleaning up its state"
  fi
  rm -f "$STATE_FILE" "$STATE_DIR/url"
}

cmd_status() {
  if running; then
    echo "running: Apicurio Registry ${APICURIO_VERSION} at $APICURIO_URL (pid $APICURIO_PID)"
    echo "  log:   $APICURIO_LOG"
    echo "  state: $STATE_DIR"
    return 0
  fi
  echo "not running (state $STATE_DIR)"
  return 1
}

cmd_env() {
  running || die "no Apicurio Registry running (state $STATE_DIR); run '$PROG start' first"
  echo "export EDDY_TEST_APICURIO=$APICURIO_URL"
}

cmd_url() {
  running || die "no Apicurio Registry running (state $STATE_DIR); run '$PROG start' first"
  echo "$APICURIO_URL"
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    start)  cmd_start ;;
    stop)   cmd_stop ;;
    status) cmd_status ;;
    env)    cmd_env ;;
    url)    cmd_url ;;
    fetch)  need_prereqs; fetch_release; echo "$APP_DIR" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
