#!/usr/bin/env bash
# A local standalone Spark cluster for Beam's SparkRunner: one master and one worker (2 cores),
# two JVM processes on localhost, from the pyspark wheel (PyPI) in a tool venv of its own under
# the cache folder. Versions: versions.env.
#
#   scripts/engines/spark.sh up          install once, start, wait until the worker registered
#   scripts/engines/spark.sh down        stop both processes (only the ones this script started)
#   scripts/engines/spark.sh status      the master's JSON summary, exit 1 when it is not up
#   scripts/engines/spark.sh smoke       a small PySpark job on the cluster (no Beam)
#   scripts/engines/spark.sh jobserver   Beam's Spark 3 job-server jar (mvn dependency:copy), its path
#   scripts/engines/spark.sh env         shell assignments for the tests and benchmarks
#
# Settings (environment): SPARK_MASTER_PORT (7077), SPARK_MASTER_WEBUI_PORT (8080),
# SPARK_WORKER_CORES (2), SPARK_WORKER_MEMORY (2g), MINIMETER_ENGINES_CACHE (.cache/engines).
. "$(dirname "$0")/common.sh"

SPARK_MASTER_PORT="${SPARK_MASTER_PORT:-7077}"
SPARK_MASTER_WEBUI_PORT="${SPARK_MASTER_WEBUI_PORT:-8080}"
SPARK_WORKER_WEBUI_PORT="${SPARK_WORKER_WEBUI_PORT:-8082}"
SPARK_WORKER_CORES="${SPARK_WORKER_CORES:-2}"
SPARK_WORKER_MEMORY="${SPARK_WORKER_MEMORY:-2g}"
VENV=spark-venv
MASTER_URL="spark://localhost:$SPARK_MASTER_PORT"

spark_home() { echo "$(site_packages "$VENV")/pyspark"; }

install() {
    need_java
    tool_venv "$VENV" "pyspark==$SPARK_VERSION"
    [ -x "$(spark_home)/bin/spark-class" ] ||
        die 1 "$(spark_home)/bin/spark-class missing: the pyspark wheel changed its layout"
}

spark_env() {
    export SPARK_HOME
    SPARK_HOME="$(spark_home)"
    export SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_HOSTNAME=localhost
    export SPARK_LOG_DIR="$LOGS" SPARK_WORKER_DIR="$CACHE/spark-work" SPARK_LOCAL_DIRS="$CACHE/spark-tmp"
    export PYSPARK_PYTHON="$CACHE/$VENV/bin/python"
    mkdir -p "$SPARK_WORKER_DIR" "$SPARK_LOCAL_DIRS"
}

summary() {
    "$PYTHON" - "$SPARK_MASTER_WEBUI_PORT" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://localhost:{sys.argv[1]}/json/", timeout=2) as r:
        o = json.load(r)
except (OSError, ValueError):
    sys.exit(1)
print(json.dumps({k: o.get(k) for k in ("url", "status", "aliveworkers", "cores", "coresused", "memory")}))
EOF
}

up() {
    install
    spark_env
    if summary >/dev/null 2>&1; then
        alive spark-master || die 1 "something else answers on localhost:$SPARK_MASTER_WEBUI_PORT (set SPARK_MASTER_WEBUI_PORT)"
        echo "spark.sh: already up: $(summary)" >&2
        return 0
    fi
    start_bg spark-master "$LOGS/spark-master.out" \
        "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master \
        --host localhost --port "$SPARK_MASTER_PORT" --webui-port "$SPARK_MASTER_WEBUI_PORT"
    for _ in $(seq 1 60); do
        port_open "$SPARK_MASTER_PORT" && break
        alive spark-master || die 1 "the Spark master died: $LOGS/spark-master.out"
        sleep 1
    done
    start_bg spark-worker "$LOGS/spark-worker.out" \
        "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker \
        --host localhost --cores "$SPARK_WORKER_CORES" --memory "$SPARK_WORKER_MEMORY" \
        --webui-port "$SPARK_WORKER_WEBUI_PORT" --work-dir "$SPARK_WORKER_DIR" "$MASTER_URL"
    local o
    for _ in $(seq 1 120); do
        if o="$(summary 2>/dev/null)" &&
            "$PYTHON" -c 'import json,sys; o=json.loads(sys.argv[1]); sys.exit(0 if o["aliveworkers"] >= 1 and o["cores"] >= int(sys.argv[2]) else 1)' "$o" "$SPARK_WORKER_CORES"; then
            echo "spark.sh: Spark $SPARK_VERSION up at $MASTER_URL: $o" >&2
            return 0
        fi
        alive spark-master || die 1 "the Spark master died: $LOGS/spark-master.out"
        alive spark-worker || die 1 "the Spark worker died: $LOGS/spark-worker.out"
        sleep 1
    done
    die 1 "no worker with $SPARK_WORKER_CORES cores registered after 120 s: $LOGS/spark-*.out"
}

down() {
    stop_bg spark-worker
    stop_bg spark-master
}

status() {
    summary || { echo "spark.sh: not up on localhost:$SPARK_MASTER_WEBUI_PORT" >&2; return 1; }
}

smoke() {
    install
    spark_env
    local script="$CACHE/spark-smoke.py"
    cat >"$script" <<'EOF'
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("minimeter-engine-smoke").getOrCreate()
total = spark.sparkContext.parallelize(range(1, 100001), 4).map(lambda x: x % 7).sum()
print(f"SMOKE-RESULT {total}")
spark.stop()
EOF
    "$SPARK_HOME/bin/spark-submit" --master "$MASTER_URL" --conf spark.ui.enabled=false \
        --conf spark.driver.host=localhost --conf spark.driver.bindAddress=127.0.0.1 "$script" 2>"$LOGS/spark-smoke.err"
}

env_() {
    echo "SPARK_VERSION=$SPARK_VERSION"
    echo "SPARK_MASTER_URL=$MASTER_URL"
    echo "SPARK_JOB_SERVER=$SPARK_JOB_SERVER"
    echo "SPARK_JOB_SERVER_JAR=$CACHE/jars/$(cut -d: -f2 <<<"$SPARK_JOB_SERVER")-$BEAM_VERSION.jar"
    echo "BEAM_VERSION=$BEAM_VERSION"
}

case "${1:-}" in
install) install ;;
up) up ;;
down) down ;;
status) status ;;
smoke) smoke ;;
jobserver) fetch_jar "$SPARK_JOB_SERVER" ;;
env) env_ ;;
*) die 2 "usage: spark.sh up|down|status|smoke|install|jobserver|env" ;;
esac
