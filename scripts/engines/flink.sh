#!/usr/bin/env bash
# A local Flink session cluster for Beam's FlinkRunner: one JobManager and one TaskManager with 2
# task slots, two JVM processes on localhost, from the apache-flink-libraries wheel (PyPI) in a
# tool venv of its own under the cache folder. Versions: versions.env.
#
#   scripts/engines/flink.sh up          install once, start, wait until 1 TaskManager / 2 slots
#   scripts/engines/flink.sh down        stop both processes (only the ones this script started)
#   scripts/engines/flink.sh status      the cluster's /overview, exit 1 when it is not up
#   scripts/engines/flink.sh smoke       a small SQL batch job on the cluster (no Beam; the SQL
#                                        gateway jar, which the wheel lacks, from Maven Central)
#   scripts/engines/flink.sh jobserver   Beam's Flink job-server jar (mvn dependency:copy), its path
#   scripts/engines/flink.sh env         shell assignments for the tests and benchmarks
#
# Settings (environment): FLINK_REST_PORT (8081), FLINK_SLOTS (2), FLINK_TM_MEMORY (2048m),
# MINIMETER_ENGINES_CACHE (.cache/engines).
. "$(dirname "$0")/common.sh"

FLINK_REST_PORT="${FLINK_REST_PORT:-8081}"
FLINK_RPC_PORT="${FLINK_RPC_PORT:-6123}"
FLINK_SLOTS="${FLINK_SLOTS:-2}"
FLINK_TM_MEMORY="${FLINK_TM_MEMORY:-2048m}"
VENV=flink-venv
CONF="$CACHE/flink-conf"

# What Flink's own start scripts pass on Java 17 (env.java.default-opts.all of its config.yaml).
JAVA_OPTS=(
    --add-exports=java.base/sun.net.util=ALL-UNNAMED
    --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
    --add-opens=java.base/java.lang=ALL-UNNAMED
    --add-opens=java.base/java.net=ALL-UNNAMED
    --add-opens=java.base/java.io=ALL-UNNAMED
    --add-opens=java.base/java.nio=ALL-UNNAMED
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens=java.base/java.text=ALL-UNNAMED
    --add-opens=java.base/java.time=ALL-UNNAMED
    --add-opens=java.base/java.util=ALL-UNNAMED
    --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
    --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
    --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
)

flink_home() { echo "$(site_packages "$VENV")/pyflink"; }

install() {
    need_java
    tool_venv "$VENV" "apache-flink-libraries==$FLINK_VERSION" --no-deps
    local home
    home="$(flink_home)"
    [ -f "$home/lib/flink-dist-$FLINK_VERSION.jar" ] ||
        die 1 "$home/lib/flink-dist-$FLINK_VERSION.jar missing: the apache-flink-libraries wheel changed its layout"
}

write_conf() {
    mkdir -p "$CONF" "$CACHE/flink-tmp"
    cat >"$CONF/config.yaml" <<EOF
# Written by scripts/engines/flink.sh: a session cluster on localhost only.
jobmanager:
  rpc: {address: localhost, port: $FLINK_RPC_PORT}
  bind-host: localhost
  memory: {process: {size: 1024m}}
taskmanager:
  host: localhost
  bind-host: localhost
  numberOfTaskSlots: $FLINK_SLOTS
  memory: {process: {size: $FLINK_TM_MEMORY}}
rest: {address: localhost, bind-address: localhost, port: $FLINK_REST_PORT}
parallelism: {default: 1}
io: {tmp: {dirs: $CACHE/flink-tmp}}
EOF
    cat >"$CONF/log4j.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = File
appender.main.fileName = ${sys:log.file}
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
logger.netty.name = org.jboss.netty.channel.DefaultChannelPipeline
logger.netty.level = OFF
EOF
}

# resource_params JM|TM: the JVM options and dynamic properties Flink's start scripts compute
# (BashJavaUtils, shipped in the wheel's bin/).
resource_params() {
    local home="$1" what="$2" out
    out="$(java -cp "$home/bin/bash-java-utils.jar:$home/lib/*" \
        org.apache.flink.runtime.util.bash.BashJavaUtils "GET_${what}_RESOURCE_PARAMS" \
        --configDir "$CONF" 2>&1)" || die 1 "Flink could not size the $what: $out"
    echo "$out" | sed -n 's/^BASH_JAVA_UTILS_EXEC_RESULT://p'
}

overview() {
    "$PYTHON" - "$FLINK_REST_PORT" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://localhost:{sys.argv[1]}/overview", timeout=2) as r:
        print(json.dumps(json.load(r)))
except OSError:
    sys.exit(1)
EOF
}

up() {
    install
    if overview >/dev/null 2>&1; then
        alive flink-jobmanager || die 1 "something else answers on localhost:$FLINK_REST_PORT (set FLINK_REST_PORT)"
        echo "flink.sh: already up: $(overview)" >&2
        return 0
    fi
    local home jm tm
    home="$(flink_home)"
    write_conf
    mapfile -t jm < <(resource_params "$home" JM)
    mapfile -t tm < <(resource_params "$home" TM)
    # shellcheck disable=SC2086 # the computed options are words
    start_bg flink-jobmanager "$LOGS/flink-jobmanager.out" \
        java "${JAVA_OPTS[@]}" ${jm[0]} -Dlog.file="$LOGS/flink-jobmanager.log" \
        -Dlog4j.configurationFile="file:$CONF/log4j.properties" -cp "$home/lib/*" \
        org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint \
        --configDir "$CONF" ${jm[1]}
    # shellcheck disable=SC2086
    start_bg flink-taskmanager "$LOGS/flink-taskmanager.out" \
        java "${JAVA_OPTS[@]}" ${tm[0]} -Dlog.file="$LOGS/flink-taskmanager.log" \
        -Dlog4j.configurationFile="file:$CONF/log4j.properties" -cp "$home/lib/*" \
        org.apache.flink.runtime.taskexecutor.TaskManagerRunner \
        --configDir "$CONF" ${tm[1]}
    local o
    for _ in $(seq 1 120); do
        if o="$(overview 2>/dev/null)" &&
            "$PYTHON" -c 'import json,sys; o=json.loads(sys.argv[1]); sys.exit(0 if o["taskmanagers"] >= 1 and o["slots-total"] >= int(sys.argv[2]) else 1)' "$o" "$FLINK_SLOTS"; then
            echo "flink.sh: Flink $FLINK_VERSION up at http://localhost:$FLINK_REST_PORT: $o" >&2
            return 0
        fi
        alive flink-jobmanager || die 1 "the JobManager died: $LOGS/flink-jobmanager.log"
        alive flink-taskmanager || die 1 "the TaskManager died: $LOGS/flink-taskmanager.log"
        sleep 1
    done
    die 1 "no TaskManager with $FLINK_SLOTS slots after 120 s: $LOGS/flink-*.log"
}

down() {
    stop_bg flink-taskmanager
    stop_bg flink-jobmanager
}

status() {
    overview || { echo "flink.sh: not up on localhost:$FLINK_REST_PORT" >&2; return 1; }
}

smoke() {
    install
    local home gateway script="$CACHE/flink-smoke.sql"
    home="$(flink_home)"
    gateway="$(fetch_jar "org.apache.flink:flink-sql-gateway:$FLINK_VERSION")"
    cat >"$script" <<'SQL'
SET 'execution.runtime-mode' = 'batch';
SET 'sql-client.execution.result-mode' = 'tableau';
SET 'execution.target' = 'remote';
SET 'parallelism.default' = '2';
SELECT x % 2 AS parity, COUNT(*) AS n, SUM(x) AS s FROM (VALUES (1), (2), (3), (4), (5)) AS t(x) GROUP BY x % 2;
SQL
    FLINK_CONF_DIR="$CONF" java "${JAVA_OPTS[@]}" -Dlog.file="$LOGS/flink-sql-client.log" \
        -Dlog4j.configurationFile="file:$CONF/log4j.properties" \
        -cp "$home/lib/*:$home/opt/flink-sql-client-$FLINK_VERSION.jar:$home/opt/flink-python-$FLINK_VERSION.jar:$gateway" \
        org.apache.flink.table.client.SqlClient embedded -f "$script" --history "$CACHE/flink-sql-history" </dev/null
}

env_() {
    echo "FLINK_VERSION=$FLINK_VERSION"
    echo "FLINK_MINOR=$FLINK_MINOR"
    echo "FLINK_REST_PORT=$FLINK_REST_PORT"
    echo "FLINK_SLOTS=$FLINK_SLOTS"
    echo "FLINK_JOB_SERVER=$FLINK_JOB_SERVER"
    echo "FLINK_JOB_SERVER_JAR=$CACHE/jars/$(cut -d: -f2 <<<"$FLINK_JOB_SERVER")-$BEAM_VERSION.jar"
    echo "BEAM_VERSION=$BEAM_VERSION"
}

case "${1:-}" in
install) install ;;
up) up ;;
down) down ;;
status) status ;;
smoke) smoke ;;
jobserver) fetch_jar "$FLINK_JOB_SERVER" ;;
env) env_ ;;
*) die 2 "usage: flink.sh up|down|status|smoke|install|jobserver|env" ;;
esac
