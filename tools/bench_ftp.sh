#!/usr/bin/env bash
# FTP upload throughput over loopback: smsdrop serve vs Debian's proftpd, same
# file, same client (curl), same run. Prints MB/s of each and the ratio.
#
#   tools/bench_ftp.sh [SIZE_MB] [RUNS]     (default 200 MB, 5 runs each)
#   SYNC_UPLOADS=false tools/bench_ftp.sh    (smsdrop without its fsync, as proftpd)
#
# Installs proftpd-core from Debian when it is missing (needs root); proftpd runs
# from a throwaway config on a high port with one virtual user.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-200}
runs=${2:-5}

if ! command -v proftpd >/dev/null && [ ! -x /usr/sbin/proftpd ]; then
    echo "== installing proftpd-core"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends proftpd-core >/dev/null
fi
PROFTPD=$(command -v proftpd || echo /usr/sbin/proftpd)
cargo build --release --locked --bin smsdrop >/dev/null 2>&1

dir=$(mktemp -d /tmp/smsdrop-ftpbench.XXXXXX)
trap 'kill $(cat "$dir"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

head -c "$((size_mb * 1024 * 1024))" /dev/urandom > "$dir/payload"

# --- smsdrop
sport=$(free_port); hport=$(free_port); spasv=$(free_port)
cat > "$dir/smsdrop.toml" <<TOML
[ftp]
listen = "127.0.0.1:$sport"
passive_ports = [$spasv, $((spasv + 20))]
sync_uploads = ${SYNC_UPLOADS:-true}
[spool]
dir = "$dir/spool"
state_dir = "$dir/state"
[queue]
path = "$dir/state/queue.db"
[http]
listen = "127.0.0.1:$hport"
[limits]
max_archive_bytes = $((size_mb * 2 * 1024 * 1024))
[[accounts]]
login = "guest"
password_hash = "\$argon2id\$v=19\$m=19456,t=2,p=1\$4K/ExbU+/nJAth9ogF2McQ\$UcQ8uSEG8jLFMYij8AWAQRls/3ON8cTBDYGqYrMFyhE"
senders = ["TESTSMS"]
TOML
RUST_LOG=error ./target/release/smsdrop serve --config "$dir/smsdrop.toml" 2>"$dir/smsdrop.log" &
echo $! > "$dir/smsdrop.pid"

# --- proftpd, unprivileged user "bench" with password "bench"
pport=$(free_port); ppasv=$(free_port)
mkdir -p "$dir/proftpd-home"
hash=$(openssl passwd -6 bench)
echo "bench:$hash:$(id -u):$(id -g)::$dir/proftpd-home:/bin/false" > "$dir/passwd"
chmod 600 "$dir/passwd"
cat > "$dir/proftpd.conf" <<CONF
ServerName "bench"
ServerType standalone
DefaultServer on
Port $pport
DefaultAddress 127.0.0.1
UseIPv6 off
User $(id -un)
Group $(id -gn)
PassivePorts $ppasv $((ppasv + 20))
AuthOrder mod_auth_file.c
AuthUserFile $dir/passwd
RequireValidShell off
DefaultRoot ~
AllowOverwrite on
UseReverseDNS off
# The virtual user has the uid of whoever runs this, root included.
RootLogin on
WtmpLog off
PidFile $dir/proftpd.pid
ScoreboardFile $dir/proftpd.scoreboard
DelayTable none
SystemLog $dir/proftpd.log
TransferLog none
<Limit LOGIN>
  AllowAll
</Limit>
CONF
"$PROFTPD" -c "$dir/proftpd.conf" -n 2>/dev/null &
sleep 1

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
wait_port "$sport"; wait_port "$pport"

# Runs alternate between the servers, so that the machine's state (page cache,
# writeback) affects both alike; curl reports the average upload speed in
# bytes/s. The median of each server counts.
: > "$dir/speeds"
for i in $(seq "$runs"); do
    # Who goes first alternates too.
    order="smsdrop proftpd"; [ $((i % 2)) -eq 0 ] && order="proftpd smsdrop"
    for server in $order; do
        if [ "$server" = smsdrop ]; then url="ftp://guest:guest@127.0.0.1:$sport/"; else url="ftp://bench:bench@127.0.0.1:$pport/"; fi
        # Each upload starts with no dirty pages of the one before.
        sync
        speed=$(curl -sS --max-time 120 -T "$dir/payload" -w '%{speed_upload}' -o /dev/null \
            "${url}guest_2026112307$(printf %02d "$i")00.zip")
        echo "$server $speed" >> "$dir/speeds"
        # Both servers' uploads are removed alike (smsdrop's poller has moved
        # its copy to state/processed/ by now, or will have shortly).
        sleep 0.5
        rm -rf "$dir"/proftpd-home/*.zip "$dir"/state/processed/guest/* "$dir"/spool/guest/*.zip
    done
done
python3 - "$dir/speeds" "$size_mb" "$runs" <<'PY'
import statistics, sys
speeds = {}
for line in open(sys.argv[1]):
    server, speed = line.split()
    speeds.setdefault(server, []).append(float(speed) / 1e6)
print(f"upload of {sys.argv[2]} MB over loopback, {sys.argv[3]} alternating runs each (curl, passive):")
for server, values in speeds.items():
    print(f"  {server:8s} median {statistics.median(values):6.0f} MB/s  (min {min(values):.0f}, max {max(values):.0f})")
ratio = statistics.median(speeds["smsdrop"]) / statistics.median(speeds["proftpd"])
print(f"  ratio    {ratio:.2f} of the medians (goal ≥ 0.8); smsdrop also fsyncs each upload before its 226, proftpd does not")
PY
