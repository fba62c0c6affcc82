#!/usr/bin/env bash
# FTP upload throughput over loopback: smsdrop serve vs Debian's proftpd, same
# file, same client (curl), same run. Prints MB/s of each and the ratio.
#
#   tools/bench_ftp.sh [SIZE_MB] [RUNS]     (default 200 MB, 21 runs each: single
#   runs vary by ±30% on a VM)
#
# smsdrop runs twice: as configured by default (sync_uploads = true: each upload
# is fsynced before its 226, so its speed is bounded by the disk) and with
# sync_uploads = false, like proftpd, which never fsyncs. Throughput is reported
# for the data transfer (curl's time from the start of sending to the 226) and
# for the whole session (with connect and login: smsdrop verifies an argon2id
# hash, proftpd a SHA-512 crypt one, ~30 ms against ~4 ms). The session figure
# is noisy: curl 7.88 at times sits out its own 200 ms timer after the EPSV
# reply before it connects (seen with both servers, more often the faster the
# reply comes).
#
# Installs proftpd-core from Debian when it is missing (needs root); proftpd runs
# from a throwaway config on a high port with one virtual user.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-200}
runs=${2:-21}

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

# --- smsdrop, twice: with its default fsync of each upload before the 226
# reply (sync_uploads = true) and without it, as proftpd (like for like).
start_smsdrop() { # NAME SYNC
    local port hport pasv
    port=$(free_port); hport=$(free_port); pasv=$(free_port)
    mkdir -p "$dir/$1"
    cat > "$dir/$1/smsdrop.toml" <<TOML
[ftp]
listen = "127.0.0.1:$port"
passive_ports = [$pasv, $((pasv + 20))]
sync_uploads = $2
[spool]
dir = "$dir/$1/spool"
state_dir = "$dir/$1/state"
[queue]
path = "$dir/$1/state/queue.db"
[http]
listen = "127.0.0.1:$hport"
[limits]
max_archive_bytes = $((size_mb * 2 * 1024 * 1024))
[[accounts]]
login = "guest"
password_hash = "\$argon2id\$v=19\$m=19456,t=2,p=1\$4K/ExbU+/nJAth9ogF2McQ\$UcQ8uSEG8jLFMYij8AWAQRls/3ON8cTBDYGqYrMFyhE"
senders = ["TESTSMS"]
TOML
    RUST_LOG=error ./target/release/smsdrop serve --config "$dir/$1/smsdrop.toml" 2>"$dir/$1/smsdrop.log" &
    echo $! > "$dir/$1.pid"
    echo "$port" > "$dir/$1.port"
}
start_smsdrop smsdrop true
start_smsdrop smsdrop-nosync false

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
wait_port "$(cat "$dir/smsdrop.port")"; wait_port "$(cat "$dir/smsdrop-nosync.port")"; wait_port "$pport"

# Runs alternate between the servers, so that the machine's state (page cache,
# writeback) affects both alike; curl reports the average upload speed in
# bytes/s. The median of each server counts.
: > "$dir/speeds"
for i in $(seq "$runs"); do
    # Who goes first rotates too.
    case $((i % 3)) in
        1) order="smsdrop proftpd smsdrop-nosync" ;;
        2) order="proftpd smsdrop-nosync smsdrop" ;;
        *) order="smsdrop-nosync smsdrop proftpd" ;;
    esac
    for server in $order; do
        if [ "$server" = proftpd ]; then
            url="ftp://bench:bench@127.0.0.1:$pport/"
        else
            url="ftp://guest:guest@127.0.0.1:$(cat "$dir/$server.port")/"
        fi
        # Each upload starts with no dirty pages of the one before.
        sync
        # Whole session (connect, login, STOR, 226) and the data transfer alone
        # (from the moment curl starts sending to the 226 reply).
        times=$(curl -sS --max-time 120 -T "$dir/payload" -o /dev/null \
            -w '%{time_pretransfer} %{time_total}' \
            "${url}guest_2026112307$(printf %02d "$i")00.zip")
        echo "$server $times" >> "$dir/speeds"
        # All servers' uploads are removed alike (smsdrop's poller has moved
        # its copies to state/processed/ by now, or will have shortly).
        sleep 0.5
        rm -rf "$dir"/proftpd-home/*.zip "$dir"/smsdrop*/state/processed/guest/* "$dir"/smsdrop*/spool/guest/*.zip
    done
done
python3 - "$dir/speeds" "$size_mb" "$runs" <<'PY'
import statistics, sys
mb = int(sys.argv[2]) * 1024 * 1024 / 1e6
runs = {}
for line in open(sys.argv[1]):
    server, pre, total = line.split()
    runs.setdefault(server, []).append((float(pre), float(total)))
print(f"upload of {mb:.0f} MB over loopback, {sys.argv[3]} rotating runs each (curl, passive), medians:")
print(f"  {'server':15s} {'transfer MB/s':>13s} {'session MB/s':>12s} {'login ms':>9s}")
med = {}
for server in ("smsdrop", "smsdrop-nosync", "proftpd"):
    values = runs[server]
    transfer = statistics.median(mb / (t - p) for p, t in values)
    session = statistics.median(mb / t for p, t in values)
    login = statistics.median(p for p, t in values) * 1000
    med[server] = (transfer, session)
    print(f"  {server:15s} {transfer:13.0f} {session:12.0f} {login:9.0f}")
for server, what in (("smsdrop-nosync", "like for like: neither fsyncs"),
                     ("smsdrop", "smsdrop fsyncs each upload before its 226, proftpd does not")):
    t, s = (med[server][k] / med["proftpd"][k] for k in (0, 1))
    print(f"  ratio {server:15s} transfer {t:.2f}, session {s:.2f} (goal ≥ 0.8; {what})")
PY
