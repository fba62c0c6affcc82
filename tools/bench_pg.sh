#!/usr/bin/env bash
# PostgreSQL ingest beside SQLite, in one run: the template archives of
# tools/bench.sh (3 attributes, senddate, localtime=1, registry numbers when
# ../shared has them), each ingested RUNS times into a throwaway PostgreSQL
# (initdb defaults: fsync on, synchronous_commit on) and into SQLite,
# alternating; prints the medians, messages/s, PostgreSQL's time over SQLite's
# and the peak RSS of each.
#
#   tools/bench_pg.sh [ROWS ...]      (default: 100000 1000000 5000000)
#   RUNS=5 tools/bench_pg.sh 1000000  (runs per size and back-end, default 3)
#   SMSDROP=path/to/smsdrop tools/bench_pg.sh   (another build, e.g. a baseline)
#
# Needs PostgreSQL's server binaries (Debian: postgresql); as root, the
# server runs as the postgres user.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000 5000000)
runs=${RUNS:-3}

cargo build --release --locked --bin smsdrop --example bench_archive >/dev/null 2>&1
bin=${SMSDROP:-$PWD/target/release/smsdrop}
gen=$PWD/target/release/examples/bench_archive
registry=$(realpath -q ../shared/data/numbering/DEF-9xx.csv || true)
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$pgbin" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 2; }

dir=$(mktemp -d /tmp/smsdrop-bench-pg.XXXXXX)
chmod 755 "$dir"
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/pg"
[ "$(id -u)" = 0 ] && chown postgres "$dir/pg"
as_pg "$pgbin/initdb -D $dir/pg/db -A trust -U postgres >/dev/null"
as_pg "$pgbin/pg_ctl -D $dir/pg/db -o '-p $port -k $dir/pg -c listen_addresses=127.0.0.1' -l $dir/pg/log start -w >/dev/null"
trap 'as_pg "$pgbin/pg_ctl -D $dir/pg/db stop -m fast >/dev/null" || true; rm -rf "$dir"' EXIT
psql() { "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -qAt "$@"; }

registry_line="registry_files = []"
[ -n "$registry" ] && [ -f "$registry" ] && registry_line="registry_files = [\"$registry\"]"
config() { # backend name → a config file
    cat > "$dir/$1.toml" <<TOML
[spool]
dir = "$dir/$1/spool"
state_dir = "$dir/$1/state"
[limits]
max_archive_bytes = 1073741824
max_uncompressed_bytes = 4294967296
[numbering]
$registry_line
[queue]
backend = "$2"
path = "$dir/$1/state/queue.db"
url = "host=127.0.0.1 port=$port user=postgres dbname=bench"
[[accounts]]
login = "guest"
password_hash = "\$argon2id\$v=19\$m=19456,t=2,p=1\$4K/ExbU+/nJAth9ogF2McQ\$UcQ8uSEG8jLFMYij8AWAQRls/3ON8cTBDYGqYrMFyhE"
senders = ["TESTSMS"]
TOML
}
config sqlite sqlite
config postgres postgres

printf '%10s %9s %9s %9s %10s %10s %7s %9s %9s\n' rows zip_MB sqlite_s pg_s sqlite_msg/s pg_msg/s pg/sq sq_MB pg_MB
for rows in "${sizes[@]}"; do
    archive="$dir/guest_20261123070000.zip"
    $gen "$rows" "$archive" $registry
    : > "$dir/runs.txt"
    for _ in $(seq "$runs"); do
        for backend in sqlite postgres; do
            rm -rf "$dir/$backend"
            if [ "$backend" = postgres ]; then
                psql -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench"
            fi
            sync
            /usr/bin/time -f 'wall %e rss %M' "$bin" ingest "$archive" --config "$dir/$backend.toml" \
                > "$dir/result.json" 2> "$dir/time.txt"
            accepted=$(python3 -c "import json; print(json.load(open('$dir/result.json'))['accepted'])")
            [ "$accepted" = "$rows" ] || { echo "$backend: $accepted of $rows accepted" >&2; cat "$dir/time.txt" >&2; exit 1; }
            echo "$backend $(tail -1 "$dir/time.txt")" >> "$dir/runs.txt"
        done
    done
    python3 - "$rows" "$archive" "$dir/runs.txt" <<'PY'
import os, statistics, sys
rows, archive, runs = int(sys.argv[1]), sys.argv[2], sys.argv[3]
walls, rss = {"sqlite": [], "postgres": []}, {"sqlite": [], "postgres": []}
for line in open(runs):
    backend, _, wall, _, kb = line.split()
    walls[backend].append(float(wall)); rss[backend].append(int(kb))
sq, pg = statistics.median(walls["sqlite"]), statistics.median(walls["postgres"])
print(f"{rows:10d} {os.path.getsize(archive)/1e6:9.1f} {sq:9.2f} {pg:9.2f} {rows/sq:10.0f} {rows/pg:10.0f} "
      f"{pg/sq:7.2f} {max(rss['sqlite'])/1024:9.1f} {max(rss['postgres'])/1024:9.1f}")
PY
done
