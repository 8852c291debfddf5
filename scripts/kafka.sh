#!/usr/bin/env bash
# scripts/kafka.sh: a throwaway single-node Apache Kafka (KRaft, combined
# broker+controller) for eddy's tests and local development.
#
#   scripts/kafka.sh start      fetch jars if needed, format a fresh data dir, start,
#                               wait until the broker answers, print the bootstrap address
#   scripts/kafka.sh stop       SIGTERM (SIGKILL after 30s) and remove the data dir
#   scripts/kafka.sh status     say whether it runs, where, and where its log is (exit 1 if not running)
#   scripts/kafka.sh env        print: export EDDY_TEST_BROKERS=127.0.0.1:PORT
#   scripts/kafka.sh bootstrap  print just the bootstrap address
#   scripts/kafka.sh kill       SIGKILL the broker, keep its data (crash tests)
#   scripts/kafka.sh restart    start again on the same data dir and ports (after kill, or
#                               a clean stop-and-start with data kept if still running)
#   scripts/kafka.sh tool CLASS [ARGS...]
#                               run one of Kafka's own CLI tools from the same jars; CLASS is a
#                               full class name or a short alias (see `tool --help`)
#   scripts/kafka.sh fetch      only download the jars into the cache
#
# Environment:
#   EDDY_CACHE          cache root (default $HOME/.cache/eddy); jars go to $EDDY_CACHE/kafka-<version>/
#   EDDY_KAFKA_STATE    state dir holding pid, ports, data dir path, log (default /tmp/eddy-kafka)
#   EDDY_KAFKA_PORT     broker listener port (default: a free port picked from the OS)
#   EDDY_KAFKA_CONTROLLER_PORT  controller listener port (default: a free port from the OS)
#   EDDY_KAFKA_VERSION  Kafka version (default below)
#   EDDY_KAFKA_HEAP     broker heap flags (default "-Xms128m -Xmx512m")
#   EDDY_KAFKA_START_TIMEOUT  seconds to wait for the broker (default 90)
#   EDDY_KAFKA_PROPS    extra server.properties lines (key=value, newline or space separated)
#   EDDY_KAFKA_TLS_DIR  a directory with server.pem (PKCS#8 private key + certificate chain)
#                       and ca.pem: adds two listeners next to PLAINTEXT, on free ports saved in
#                       the state as KAFKA_SASL_SSL_BOOTSTRAP (SASL_SSL, SCRAM-SHA-512 and OAUTHBEARER
#                       with unsecured JWTs; add SCRAM users
#                       over PLAINTEXT, e.g. with kadm AlterUserSCRAMs) and KAFKA_MTLS_BOOTSTRAP
#                       (SSL requiring a client certificate signed by ca.pem)
#   EDDY_MVN_ARGS       extra arguments for mvn (e.g. -o, -s settings.xml)
set -euo pipefail

KAFKA_VERSION="${EDDY_KAFKA_VERSION:-4.1.2}"
# Kafka 4.1 logs through slf4j 1.7.x (slf4j-api 1.7.36) and ships log4j2 2.25.3 as its
# backend, but the published POMs leave out the binding between them: add
# log4j-slf4j-impl (the slf4j 1.x binding) at the log4j version Kafka itself uses.
LOG4J_VERSION="${EDDY_LOG4J_VERSION:-2.25.3}"

CACHE_ROOT="${EDDY_CACHE:-$HOME/.cache/eddy}"
CACHE_DIR="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIB_DIR="$CACHE_DIR/libs"
STATE_DIR="${EDDY_KAFKA_STATE:-/tmp/eddy-kafka}"
STATE_FILE="$STATE_DIR/state.env"
START_TIMEOUT="${EDDY_KAFKA_START_TIMEOUT:-90}"
HEAP_OPTS="${EDDY_KAFKA_HEAP:--Xms128m -Xmx512m}"

PROG="scripts/kafka.sh"

NAME="kafka.sh"
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- prerequisites

jars_cached() { [[ -f "$CACHE_DIR/.complete" && -d "$LIB_DIR" ]]; }

# Checks both prerequisites up front: java always, mvn when the jar cache is cold.
need_prereqs() {
  need_java "Kafka $KAFKA_VERSION"
  jars_cached || need_mvn "the Kafka $KAFKA_VERSION jars"
}

# ---------------------------------------------------------------- jar cache

write_log4j_configs() {
  mkdir -p "$CACHE_DIR/config"
  cat >"$CACHE_DIR/config/broker-log4j2.properties" <<'EOF'
# Broker logging: everything to stdout, which kafka.sh redirects to the broker log file.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.network.name = kafka.network.RequestChannel$
logger.network.level = WARN
logger.controller.name = kafka.controller
logger.controller.level = INFO
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = INFO
EOF
  cat >"$CACHE_DIR/config/tools-log4j2.properties" <<'EOF'
# CLI tools: only warnings, and on stderr, so tool output stays clean.
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

fetch_jars() {
  if jars_cached; then
    [[ -f "$CACHE_DIR/config/tools-log4j2.properties" ]] || write_log4j_configs
    return 0
  fi
  need_mvn "the Kafka $KAFKA_VERSION jars"
  mkdir -p "$CACHE_DIR"
  # One fetch at a time per cache dir.
  exec 8>"$CACHE_DIR/.fetch.lock"
  flock -w 900 8 || die "timed out waiting for another fetch into $CACHE_DIR"
  if jars_cached; then exec 8>&-; return 0; fi

  log "fetching Apache Kafka $KAFKA_VERSION jars with Maven into $LIB_DIR (first time only)..."
  local t0=$SECONDS
  cat >"$CACHE_DIR/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by $PROG: a throwaway POM used only to resolve Kafka's runtime classpath. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.eddy-streams.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  local tmp="$CACHE_DIR/libs.tmp.$$"
  rm -rf "$tmp"
  # shellcheck disable=SC2086
  if ! mvn -B -q --no-transfer-progress ${EDDY_MVN_ARGS:-} -f "$CACHE_DIR/pom.xml" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$CACHE_DIR/mvn.log" 2>&1; then
    tail -n 40 "$CACHE_DIR/mvn.log" >&2 || true
    rm -rf "$tmp"
    die "Maven could not fetch Kafka $KAFKA_VERSION (full log: $CACHE_DIR/mvn.log).
  The first fetch needs network access to Maven Central."
  fi
  ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar "$tmp"/kafka-tools-"$KAFKA_VERSION".jar >/dev/null 2>&1 \
    || die "Maven finished but the Kafka jars are missing in $tmp (see $CACHE_DIR/mvn.log)"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  write_log4j_configs
  echo "$KAFKA_VERSION" >"$CACHE_DIR/.complete"
  exec 8>&-
  log "fetched $(ls "$LIB_DIR" | wc -l) jars in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- helpers

CP() { echo "$LIB_DIR/*"; }

# Runs a Kafka CLI class in the foreground with quiet logging and a quick-starting JVM.
run_tool() {
  local cls="$1"; shift
  "$JAVA_BIN" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$CACHE_DIR/config/tools-log4j2.properties" \
    -cp "$(CP)" "$cls" "$@"
}

new_cluster_id() {
  # Same shape as org.apache.kafka.common.Uuid.randomUuid(): 16 random bytes, URL-safe
  # base64 without padding, never starting with '-'.
  python3 - <<'EOF' 2>/dev/null || run_tool kafka.tools.StorageTool random-uuid
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not s.startswith("-"):
        print(s); break
EOF
}

load_state() {
  KAFKA_PID="" KAFKA_BOOTSTRAP="" KAFKA_PORT="" KAFKA_CONTROLLER_PORT="" KAFKA_DATA_DIR="" KAFKA_LOG="" KAFKA_CONFIG=""
  KAFKA_SASL_SSL_BOOTSTRAP="" KAFKA_MTLS_BOOTSTRAP=""
  [[ -f "$STATE_FILE" ]] || return 1
  # shellcheck disable=SC1090
  source "$STATE_FILE"
}

save_state() {
  mkdir -p "$STATE_DIR"
  cat >"$STATE_FILE.tmp" <<EOF
KAFKA_VERSION='$KAFKA_VERSION'
KAFKA_PID='$KAFKA_PID'
KAFKA_BOOTSTRAP='$KAFKA_BOOTSTRAP'
KAFKA_PORT='$KAFKA_PORT'
KAFKA_CONTROLLER_PORT='$KAFKA_CONTROLLER_PORT'
KAFKA_DATA_DIR='$KAFKA_DATA_DIR'
KAFKA_LOG='$KAFKA_LOG'
KAFKA_CONFIG='$KAFKA_CONFIG'
KAFKA_SASL_SSL_BOOTSTRAP='${KAFKA_SASL_SSL_BOOTSTRAP:-}'
KAFKA_MTLS_BOOTSTRAP='${KAFKA_MTLS_BOOTSTRAP:-}'
EOF
  mv "$STATE_FILE.tmp" "$STATE_FILE"
  echo "$KAFKA_BOOTSTRAP" >"$STATE_DIR/bootstrap"
}

# True if $1 is a live process that is our broker (guards against pid reuse).
is_our_broker() {
  local pid="$1"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  local cmd
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *kafka.Kafka* && "$cmd" == *"$KAFKA_CONFIG"* ]]
}

running() { load_state && is_our_broker "$KAFKA_PID"; }

# alive: pid exists and has not exited (a zombie has).
alive() {
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

write_server_properties() {
  local cfg="$KAFKA_CONFIG"
  cat >"$cfg" <<EOF
# Generated by $PROG: single-node KRaft broker+controller for tests.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
log.dirs=$KAFKA_DATA_DIR/logs
# After a SIGKILL + restart the controller refuses the broker's re-registration until
# the old session expires (default 9s); shorter, so crash tests restart quickly.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000

# A small machine.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4

# Test-friendly settings.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
group.consumer.min.session.timeout.ms=1000
group.consumer.min.heartbeat.interval.ms=500

# Compaction that acts quickly on small segments (topics set segment.ms/bytes themselves).
log.cleaner.enable=true
log.cleaner.threads=1
log.cleaner.backoff.ms=1000
log.cleaner.dedupe.buffer.size=16777216
log.cleaner.min.compaction.lag.ms=0
log.retention.check.interval.ms=1000
EOF
  if [[ -n "${KAFKA_SASL_SSL_BOOTSTRAP:-}" ]]; then
    local tls="${EDDY_KAFKA_TLS_DIR}"
    cat >>"$cfg" <<EOF

# From EDDY_KAFKA_TLS_DIR: SASL_SSL (SCRAM-SHA-512) and mTLS listeners.
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://$KAFKA_SASL_SSL_BOOTSTRAP,MTLS://$KAFKA_MTLS_BOOTSTRAP
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://$KAFKA_SASL_SSL_BOOTSTRAP,MTLS://$KAFKA_MTLS_BOOTSTRAP
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL
ssl.keystore.type=PEM
ssl.keystore.location=$tls/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
listener.name.mtls.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512,OAUTHBEARER
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,OAUTHBEARER
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# OAUTHBEARER with Kafka's unsecured-JWT validator (alg none, checks sub, iat and exp): tests only.
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker";
listener.name.sasl_ssl.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.internals.unsecured.OAuthBearerUnsecuredValidatorCallbackHandler
EOF
  fi
  if [[ -n "${EDDY_KAFKA_PROPS:-}" ]]; then
    echo "# From EDDY_KAFKA_PROPS" >>"$cfg"
    tr ' ' '\n' <<<"$EDDY_KAFKA_PROPS" | sed '/^$/d' >>"$cfg"
  fi
}

launch_broker() {
  # setsid: the broker is not in the caller's process group, so ^C in a shell that
  # ran `start` does not take it down; stop/kill address it by pid.
  local heap
  read -r -a heap <<<"$HEAP_OPTS"
  setsid nohup "$JAVA_BIN" "${heap[@]}" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$CACHE_DIR/config/broker-log4j2.properties" \
    -cp "$(CP)" kafka.Kafka "$KAFKA_CONFIG" \
    >>"$KAFKA_LOG" 2>&1 </dev/null 8>&- 9>&- &
  KAFKA_PID=$!
  save_state
}

fail_start() {
  echo "kafka.sh: error: $1" >&2
  if grep -qE '^\[[^]]*\] (ERROR|FATAL)' "$KAFKA_LOG" 2>/dev/null; then
    echo "---- first errors in $KAFKA_LOG ----" >&2
    grep -E -A1 '^\[[^]]*\] (ERROR|FATAL)' "$KAFKA_LOG" | head -n 8 >&2 || true
  fi
  echo "---- last 50 lines of $KAFKA_LOG ----" >&2
  tail -n 50 "$KAFKA_LOG" >&2 || true
  echo "---- end of broker log ----" >&2
  # Alive and not yet the broker is still this script's child (an unreaped
  # pid is not reused): kill it too, or it would become the broker later.
  if is_our_broker "$KAFKA_PID" || alive "$KAFKA_PID"; then kill -9 "$KAFKA_PID" 2>/dev/null || true; fi
  exit 1
}

# Waits until the broker logs that it started and a TopicCommand --list answers.
wait_ready() {
  local since="$1" deadline=$(( SECONDS + START_TIMEOUT )) launched=$SECONDS
  while :; do
    if ! is_our_broker "$KAFKA_PID"; then
      # Just after the launch the child may not have exec'd java yet (its
      # command line is still this script's): only a process that is gone
      # (or a zombie), or still not the broker after 10 s, has failed.
      if ! alive "$KAFKA_PID" || (( SECONDS - launched > 10 )); then
        fail_start "the broker process ($KAFKA_PID) exited during start-up"
      fi
    fi
    if port_open "$KAFKA_PORT" && tail -n +"$since" "$KAFKA_LOG" | grep -q "Kafka Server started"; then
      break
    fi
    (( SECONDS < deadline )) || fail_start "the broker did not start within ${START_TIMEOUT}s"
    sleep 0.2
  done
  local left=$(( deadline - SECONDS )); (( left < 15 )) && left=15
  local out
  if ! out="$(timeout "$left" "$JAVA_BIN" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$CACHE_DIR/config/tools-log4j2.properties" -cp "$(CP)" \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --list 2>&1)"; then
    echo "$out" >&2
    fail_start "the broker is up but does not answer TopicCommand --list"
  fi
}

# ---------------------------------------------------------------- commands

cmd_start() {
  need_prereqs
  lock_state
  if running; then
    log "already running (pid $KAFKA_PID, state $STATE_DIR)"
    echo "$KAFKA_BOOTSTRAP"
    return 0
  fi
  if load_state; then
    log "discarding stale state from a broker that is no longer running (data dir ${KAFKA_DATA_DIR:-none})"
    [[ -n "$KAFKA_DATA_DIR" && -d "$KAFKA_DATA_DIR" ]] && rm -rf "$KAFKA_DATA_DIR"
    rm -f "$STATE_FILE" "$STATE_DIR/bootstrap"
  fi
  fetch_jars
  local t0=$SECONDS

  KAFKA_PORT="${EDDY_KAFKA_PORT:-$(free_port)}"
  KAFKA_CONTROLLER_PORT="${EDDY_KAFKA_CONTROLLER_PORT:-$(free_port)}"
  while [[ "$KAFKA_CONTROLLER_PORT" == "$KAFKA_PORT" ]]; do KAFKA_CONTROLLER_PORT="$(free_port)"; done
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT on 127.0.0.1 is already in use (EDDY_KAFKA_PORT?)"
  port_open "$KAFKA_CONTROLLER_PORT" && die "port $KAFKA_CONTROLLER_PORT on 127.0.0.1 is already in use"
  KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
  KAFKA_SASL_SSL_BOOTSTRAP="" KAFKA_MTLS_BOOTSTRAP=""
  if [[ -n "${EDDY_KAFKA_TLS_DIR:-}" ]]; then
    [[ -f "$EDDY_KAFKA_TLS_DIR/server.pem" && -f "$EDDY_KAFKA_TLS_DIR/ca.pem" ]] \
      || die "EDDY_KAFKA_TLS_DIR=$EDDY_KAFKA_TLS_DIR needs server.pem and ca.pem"
    local sp mp
    sp="$(free_port)"; mp="$(free_port)"
    while [[ "$sp" == "$KAFKA_PORT" || "$sp" == "$KAFKA_CONTROLLER_PORT" ]]; do sp="$(free_port)"; done
    while [[ "$mp" == "$sp" || "$mp" == "$KAFKA_PORT" || "$mp" == "$KAFKA_CONTROLLER_PORT" ]]; do mp="$(free_port)"; done
    KAFKA_SASL_SSL_BOOTSTRAP="127.0.0.1:$sp" KAFKA_MTLS_BOOTSTRAP="127.0.0.1:$mp"
  fi
  KAFKA_DATA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/eddy-kafka-data.XXXXXX")"
  KAFKA_CONFIG="$KAFKA_DATA_DIR/server.properties"
  KAFKA_LOG="$STATE_DIR/broker.log"
  KAFKA_PID=""
  : >"$KAFKA_LOG"
  write_server_properties
  save_state

  local cluster_id
  cluster_id="$(new_cluster_id)"
  if ! run_tool kafka.tools.StorageTool format --standalone --cluster-id "$cluster_id" \
        --config "$KAFKA_CONFIG" >>"$KAFKA_LOG" 2>&1; then
    fail_start "formatting the KRaft storage in $KAFKA_DATA_DIR failed"
  fi

  launch_broker
  wait_ready 1
  log "Kafka $KAFKA_VERSION up at $KAFKA_BOOTSTRAP in $((SECONDS - t0))s (pid $KAFKA_PID, data $KAFKA_DATA_DIR, log $KAFKA_LOG)"
  echo "$KAFKA_BOOTSTRAP"
}

cmd_stop() {
  lock_state
  if ! load_state; then
    log "not running (no state in $STATE_DIR)"
    return 0
  fi
  if is_our_broker "$KAFKA_PID"; then
    terminate "$KAFKA_PID" is_our_broker broker
    log "stopped broker (pid $KAFKA_PID)"
  else
    log "broker was not running; cleaning up its state"
  fi
  if [[ -n "$KAFKA_DATA_DIR" && -d "$KAFKA_DATA_DIR" ]]; then rm -rf "$KAFKA_DATA_DIR"; fi
  rm -f "$STATE_FILE" "$STATE_DIR/bootstrap"
}

cmd_kill() {
  lock_state
  load_state || die "no broker state in $STATE_DIR (start it first)"
  if ! is_our_broker "$KAFKA_PID"; then
    log "broker is not running (already killed?); data kept in $KAFKA_DATA_DIR"
    return 0
  fi
  kill -KILL "$KAFKA_PID"
  local i
  for i in $(seq 1 100); do is_our_broker "$KAFKA_PID" || break; sleep 0.1; done
  is_our_broker "$KAFKA_PID" && die "broker $KAFKA_PID survived SIGKILL"
  log "killed broker (pid $KAFKA_PID) with SIGKILL; data kept in $KAFKA_DATA_DIR"
}

cmd_restart() {
  need_prereqs
  lock_state
  load_state || die "no broker state in $STATE_DIR: nothing to restart (use start)"
  [[ -n "$KAFKA_DATA_DIR" && -f "$KAFKA_CONFIG" ]] || die "the data dir $KAFKA_DATA_DIR is gone; use start"
  fetch_jars
  if is_our_broker "$KAFKA_PID"; then
    log "broker is running; stopping it cleanly first (data kept)"
    terminate "$KAFKA_PID" is_our_broker broker
  fi
  local t0=$SECONDS
  local i
  for i in $(seq 1 100); do
    port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT" || break
    sleep 0.1
  done
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process; cannot restart on the same port"
  local since
  since=$(( $(wc -l <"$KAFKA_LOG") + 1 ))
  echo "==== kafka.sh restart $(date -u +%FT%TZ) ====" >>"$KAFKA_LOG"
  launch_broker
  wait_ready "$since"
  log "Kafka restarted at $KAFKA_BOOTSTRAP in $((SECONDS - t0))s (pid $KAFKA_PID, data $KAFKA_DATA_DIR)"
  echo "$KAFKA_BOOTSTRAP"
}

cmd_status() {
  if running; then
    echo "running: Kafka ${KAFKA_VERSION} at $KAFKA_BOOTSTRAP (pid $KAFKA_PID)"
    echo "  controller: 127.0.0.1:$KAFKA_CONTROLLER_PORT"
    echo "  data dir:   $KAFKA_DATA_DIR"
    echo "  log:        $KAFKA_LOG"
    echo "  state:      $STATE_DIR"
    return 0
  fi
  if load_state; then
    echo "not running (killed or crashed): last at $KAFKA_BOOTSTRAP, data kept in $KAFKA_DATA_DIR; log $KAFKA_LOG"
    echo "  use '$PROG restart' to start it again on the same data, or '$PROG stop' to clean up"
  else
    echo "not running (no state in $STATE_DIR)"
  fi
  return 1
}

cmd_env() {
  running || die "no broker running (state $STATE_DIR); run '$PROG start' first"
  echo "export EDDY_TEST_BROKERS=$KAFKA_BOOTSTRAP"
}

cmd_bootstrap() {
  running || die "no broker running (state $STATE_DIR); run '$PROG start' first"
  echo "$KAFKA_BOOTSTRAP"
}

tool_alias() {
  case "$1" in
    topics)            echo org.apache.kafka.tools.TopicCommand ;;
    groups|consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    console-consumer)  echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    console-producer)  echo org.apache.kafka.tools.ConsoleProducer ;;
    configs)           echo kafka.admin.ConfigCommand ;;
    get-offsets)       echo org.apache.kafka.tools.GetOffsetShell ;;
    api-versions)      echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    delete-records)    echo org.apache.kafka.tools.DeleteRecordsCommand ;;
    transactions)      echo org.apache.kafka.tools.TransactionsCommand ;;
    dump-log)          echo org.apache.kafka.tools.DumpLogSegments ;;
    storage)           echo kafka.tools.StorageTool ;;
    *)                 echo "$1" ;;
  esac
}

cmd_tool() {
  if [[ $# -eq 0 || "$1" == "--help" || "$1" == "-h" ]]; then
    cat <<EOF
usage: $PROG tool CLASS [ARGS...]
Runs a Kafka $KAFKA_VERSION CLI tool from the cached jars. CLASS is a full class name or an alias:
  topics            org.apache.kafka.tools.TopicCommand
  groups            org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
  console-consumer  org.apache.kafka.tools.consumer.ConsoleConsumer
  console-producer  org.apache.kafka.tools.ConsoleProducer
  configs           kafka.admin.ConfigCommand
  get-offsets       org.apache.kafka.tools.GetOffsetShell
  api-versions      org.apache.kafka.tools.BrokerApiVersionsCommand
  delete-records    org.apache.kafka.tools.DeleteRecordsCommand
  transactions      org.apache.kafka.tools.TransactionsCommand
  dump-log          org.apache.kafka.tools.DumpLogSegments
  storage           kafka.tools.StorageTool
The broker address: --bootstrap-server "\$($PROG bootstrap)"
EOF
    [[ $# -eq 0 ]] && exit 2
    return 0
  fi
  need_prereqs
  fetch_jars
  local cls
  cls="$(tool_alias "$1")"; shift
  run_tool "$cls" "$@"
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    start)     cmd_start ;;
    stop)      cmd_stop ;;
    status)    cmd_status ;;
    env)       cmd_env ;;
    bootstrap) cmd_bootstrap ;;
    kill)      cmd_kill ;;
    restart)   cmd_restart ;;
    tool)      cmd_tool "$@" ;;
    fetch)     need_prereqs; fetch_jars; echo "$LIB_DIR" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
