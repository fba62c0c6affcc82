#!/usr/bin/env python3
"""The figures of SPEC §10 under attack, measured on loopback.

Starts `smsdrop serve` (the binary given, default target/release/smsdrop) on a
throwaway config, lets a customer upload one-row archives one after another
(connect, log in, STOR, quit, wait for results/<batch>.json), first alone and
then while attackers run at the same time:

  idle      200 connections from 40 loopback addresses that never log in
            (silent, NOOP every second, AUTH TLS without a handshake)
  longline  3 clients each sending a 1 GiB command line
  sweep     a connection to every port of the passive range, over and over,
            from another address
  guess     20 parallel wrong passwords from one address, over and over
  scrape    16 clients requesting /metrics without pause

Prints, for the quiet phase and the attack phase: uploads, failures, upload ->
results latency (median, p90, max), the server's peak RSS, and /healthz.

    python3 tools/siege.py [--binary target/release/smsdrop] [--seconds 30]
"""

import argparse
import ftplib
import http.client
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

HASH = "$argon2id$v=19$m=19456,t=2,p=1$4K/ExbU+/nJAth9ogF2McQ$UcQ8uSEG8jLFMYij8AWAQRls/3ON8cTBDYGqYrMFyhE"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def archive(text):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("sms/m.csv", f"TELRN_LONG;TEXT\n79031234567;{text}\n")
    return buf.getvalue()


def tls_files(root):
    cert, key = os.path.join(root, "cert.pem"), os.path.join(root, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
        check=True, stderr=subprocess.DEVNULL)
    return cert, key


class Siege:
    def __init__(self, binary, root):
        self.root = root
        self.port, self.http = free_port(), free_port()
        self.pasv = free_port()
        self.pasv_range = (self.pasv, self.pasv + 100)
        cert, key = tls_files(root)
        config = os.path.join(root, "smsdrop.toml")
        with open(config, "w") as f:
            f.write(f"""
[ftp]
listen = "127.0.0.1:{self.port}"
passive_ports = [{self.pasv_range[0]}, {self.pasv_range[1]}]
[ftp.tls]
cert = "{cert}"
key = "{key}"
[spool]
dir = "{root}/spool"
state_dir = "{root}/state"
[queue]
path = "{root}/state/queue.db"
[http]
listen = "127.0.0.1:{self.http}"
[[accounts]]
login = "guest"
password_hash = "{HASH}"
senders = ["TESTSMS"]
""")
        self.log = open(os.path.join(root, "serve.log"), "w")
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = subprocess.Popen([binary, "serve", "--config", config],
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.05)
        self.results = os.path.join(root, "spool", "guest", "results")
        self.stop = threading.Event()
        self.serial = 0

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0

    def healthz(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=5)
            c.request("GET", "/healthz")
            return c.getresponse().status
        except OSError as e:
            return f"error {e}"

    def upload_once(self):
        """One upload; its upload -> results latency in seconds."""
        self.serial += 1
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(1_700_000_000 + self.serial))
        batch = f"guest_{stamp}"
        data = archive(f"hello {self.serial}")
        start = time.monotonic()
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", self.port, timeout=20)
        ftp.login("guest", "guest")
        ftp.storbinary(f"STOR {batch}.zip", io.BytesIO(data))
        ftp.quit()
        path = os.path.join(self.results, batch + ".json")
        while not os.path.exists(path):
            if time.monotonic() - start > 20:
                raise TimeoutError(f"no results for {batch}")
            time.sleep(0.002)
        return time.monotonic() - start

    def customer(self, seconds):
        latencies, failures = [], []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                latencies.append(self.upload_once())
            except Exception as e:  # noqa: BLE001 - every failure is counted
                failures.append(repr(e))
            time.sleep(0.05)
        return latencies, failures

    # --- attackers -------------------------------------------------------
    def idle(self, index):
        src = f"127.0.{10 + index // 5}.{1 + index % 5}"
        kind = index % 3
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=60,
                                             source_address=(src, 0))
                s.recv(100)
                if kind == 1:
                    s.sendall(b"AUTH TLS\r\n")
                while not self.stop.is_set():
                    if kind == 2:
                        s.sendall(b"NOOP\r\n")
                    s.settimeout(1)
                    try:
                        if s.recv(100) == b"":
                            break
                    except socket.timeout:
                        pass
                s.close()
            except OSError:
                time.sleep(0.2)

    def longline(self, index):
        chunk = b"A" * (1 << 20)
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                             source_address=(f"127.0.3.{index + 1}", 0))
                s.recv(100)
                for _ in range(1024):  # 1 GiB
                    if self.stop.is_set():
                        break
                    s.sendall(chunk)
                s.close()
            except OSError:
                time.sleep(0.05)

    def sweep(self):
        lo, hi = self.pasv_range
        while not self.stop.is_set():
            for port in range(lo, hi + 1):
                if self.stop.is_set():
                    return
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=1,
                                                 source_address=("127.0.4.1", 0))
                    s.close()
                except OSError:
                    pass

    def guess(self):
        def one(i):
            try:
                ftp = ftplib.FTP()
                ftp.connect("127.0.0.1", self.port, timeout=20, source_address=("127.0.5.1", 0))
                ftp.login("guest", f"guess{i}")
            except Exception:  # noqa: BLE001 - refusals are the point
                pass
        while not self.stop.is_set():
            threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

    def scrape(self):
        while not self.stop.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=10)
                c.request("GET", "/metrics")
                c.getresponse().read()
                c.close()
            except OSError:
                time.sleep(0.01)

    def attack(self):
        threads = [threading.Thread(target=self.idle, args=(i,), daemon=True) for i in range(200)]
        threads += [threading.Thread(target=self.longline, args=(i,), daemon=True) for i in range(3)]
        threads += [threading.Thread(target=self.sweep, daemon=True)]
        threads += [threading.Thread(target=self.guess, daemon=True)]
        threads += [threading.Thread(target=self.scrape, daemon=True) for _ in range(16)]
        for t in threads:
            t.start()
        return threads

    def close(self):
        self.stop.set()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def report(name, latencies, failures, siege, healthz):
    lat = sorted(latencies)
    if lat:
        p90 = lat[int(0.9 * (len(lat) - 1))]
        line = (f"median {statistics.median(lat) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, "
                f"max {lat[-1] * 1000:.0f} ms")
    else:
        line = "no upload went through"
    print(f"{name:8} uploads {len(lat):4}, failed {len(failures):3}; upload -> results {line}; "
          f"peak RSS {siege.peak_rss_mb():.0f} MB; /healthz {healthz}")
    for f in failures[:5]:
        print(f"         failure: {f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/smsdrop")
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="smsdrop-siege.")
    siege = Siege(os.path.abspath(args.binary), root)
    try:
        lat, fail = siege.customer(min(10, args.seconds))
        report("quiet", lat, fail, siege, siege.healthz())
        siege.attack()
        time.sleep(2)
        healthz = siege.healthz()
        lat, fail = siege.customer(args.seconds)
        report("attacked", lat, fail, siege, healthz)
    finally:
        siege.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
