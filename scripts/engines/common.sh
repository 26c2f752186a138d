# Shared by flink.sh and spark.sh (sourced, not run): where the cache is, tool venvs, Maven
# fetches, background processes with pid files. Everything downloaded goes into $CACHE once.

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=versions.env
. "$HERE/versions.env"
CACHE="${MINIMETER_ENGINES_CACHE:-$ROOT/.cache/engines}"
RUN="$CACHE/run"   # pid files
LOGS="$CACHE/logs"
PYTHON="${PYTHON:-python3}"
mkdir -p "$CACHE" "$RUN" "$LOGS"

die() {
    local code="$1"
    shift
    echo "${0##*/}: error: $*" >&2
    exit "$code"
}

need_java() {
    command -v java >/dev/null 2>&1 ||
        die 2 "java not found: the Flink and Spark engines need a JDK 11 or newer on PATH (17 on this project's machines; Debian: apt-get install openjdk-17-jdk-headless)"
    local v
    v="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    [ "${v%%.*}" -ge 11 ] 2>/dev/null ||
        die 2 "java $v is too old: Flink $FLINK_VERSION and Spark $SPARK_VERSION need Java 11 or newer (17 here)"
}

need_mvn() {
    command -v mvn >/dev/null 2>&1 ||
        die 2 "mvn not found: Beam's job-server jars come from Maven Central through Maven (Debian: apt-get install maven)"
}

# tool_venv DIR REQUIREMENT [pip options...]: a venv of its own under $CACHE, installed once.
tool_venv() {
    local dir="$CACHE/$1" req="$2"
    shift 2
    local stamp="$dir/.installed-${req//[^A-Za-z0-9._-]/_}"
    if [ ! -f "$stamp" ]; then
        echo "${0##*/}: installing $req into $dir (once)" >&2
        rm -rf "$dir"
        "$PYTHON" -m venv "$dir"
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@" "$req" ||
            die 1 "pip could not install $req into $dir"
        touch "$stamp"
    fi
}

site_packages() {
    "$CACHE/$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
}

# fetch_jar GROUP:ARTIFACT:VERSION: the jar in $CACHE/jars (printed), fetched once with
# `mvn dependency:copy`. Exit 3 when the repository does not serve it.
fetch_jar() {
    local coord="$1" group artifact version
    IFS=: read -r group artifact version <<<"$coord"
    local jar="$CACHE/jars/$artifact-$version.jar"
    if [ ! -s "$jar" ]; then
        need_java
        need_mvn
        mkdir -p "$CACHE/jars"
        local log="$LOGS/mvn-$artifact-$version.log"
        if ! mvn -B -U dependency:copy -Dartifact="$coord" -DoutputDirectory="$CACHE/jars" \
            >"$log" 2>&1; then
            local why
            why="$(grep -m1 -E 'Could not find artifact|was not found|Could not transfer|Unable to find' "$log" |
                sed -e 's/^\[ERROR\] //' -e 's/.*Unable to find artifact\. *//' -e 's/ in central (.*//')"
            die 3 "$coord cannot be had from Maven: ${why:-see $log}"
        fi
    fi
    echo "$jar"
}

# start_bg NAME LOG COMMAND...: start COMMAND in the background, its pid in $RUN/NAME.pid.
start_bg() {
    local name="$1" log="$2"
    shift 2
    if alive "$name"; then
        echo "${0##*/}: $name already running (pid $(cat "$RUN/$name.pid"))" >&2
        return 0
    fi
    nohup "$@" >"$log" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
}

alive() {
    local pidfile="$RUN/$1.pid"
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# stop_bg NAME: end the process this script started (by its pid file), TERM then KILL.
stop_bg() {
    local name="$1" pidfile="$RUN/$1.pid" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        echo "${0##*/}: stopped $name (pid $pid)" >&2
    fi
    rm -f "$pidfile"
}

port_open() {
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
with socket.socket() as s:
    s.settimeout(1)
    sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
EOF
}
