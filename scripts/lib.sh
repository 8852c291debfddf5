# scripts/lib.sh: helpers shared by scripts/kafka.sh and scripts/apicurio.sh
# (sourced, not run). The caller sets NAME (its name in messages) and
# STATE_DIR before using them.

log() { echo "$NAME: $*" >&2; }
die() { echo "$NAME: error: $*" >&2; exit 1; }

# need_java WHAT: sets JAVA_BIN to a Java 17 or newer ($JAVA_HOME first, then
# PATH), or dies saying that WHAT needs it.
JAVA_BIN=""
need_java() {
  local what="$1"
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA_BIN="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    JAVA_BIN="$(command -v java)"
  else
    die "Java 17 or newer is required to run $what, and no 'java' was found on PATH (nor in \$JAVA_HOME).
  Install it, e.g. on Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless"
  fi
  local ver major
  ver="$("$JAVA_BIN" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
  major="${ver%%.*}"
  [[ "$major" == "1" ]] && major="$(echo "$ver" | cut -d. -f2)"
  if ! [[ "$major" =~ ^[0-9]+$ ]] || (( major < 17 )); then
    die "Java 17 or newer is required to run $what; $JAVA_BIN is version '${ver:-unknown}'.
  Install a newer JDK/JRE (e.g. apt-get install -y openjdk-17-jre-headless) or point JAVA_HOME at one."
  fi
}

# need_mvn WHAT: dies unless Maven is on PATH, saying it is needed to fetch
# WHAT into $CACHE_DIR.
need_mvn() {
  command -v mvn >/dev/null 2>&1 || die "Maven ('mvn') is required to fetch $1 into
  $CACHE_DIR (not cached yet), and it was not found on PATH.
  Install it, e.g. on Debian/Ubuntu: apt-get install -y maven
  (the first fetch also needs network access to Maven Central)."
}

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'
    return
  fi
  # Fallback without python3: a random high port that nothing answers on.
  local p i
  for i in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "could not find a free port"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# lock_state: one instance of the script at a time per state dir (fd 9).
lock_state() {
  mkdir -p "$STATE_DIR"
  exec 9>"$STATE_DIR/.lock"
  flock -w 300 9 || die "timed out waiting for another $NAME on $STATE_DIR"
}

# terminate PID IS_OURS WHAT: SIGTERM, up to 30s, then SIGKILL; returns once
# IS_OURS PID is false (the process is gone).
terminate() {
  local pid="$1" is_ours="$2" what="$3" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 300); do
    "$is_ours" "$pid" || return 0
    sleep 0.1
  done
  log "$what $pid did not stop within 30s after SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do "$is_ours" "$pid" || return 0; sleep 0.1; done
  die "$what $pid is still alive after SIGKILL"
}
