#!/usr/bin/env python3
"""How long after a kill -9 a client of a node reads EOF, with and without
the memory keeper (DESIGN.md 3.5), for a single node filled with about
250 MiB of values by redis-benchmark. Needs redis-benchmark; uses ports
23900/24900 on loopback and data dirs under /tmp.

    cargo build --release --bin sraft && scripts/kill_eof.py [ROUNDS]
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.path.join(os.path.dirname(__file__), "..", "target", "release", "sraft")


def one(keeper):
    env = dict(os.environ)
    if not keeper:
        env["SRAFT_MEMORY_KEEPER"] = "off"
    data = tempfile.mkdtemp(prefix="sraft-kill-eof-")
    node = subprocess.Popen(
        [BIN, "--node-id", "0", "--peers", "127.0.0.1:23900", "--data-dir", data],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        time.sleep(0.8)
        subprocess.run(["redis-benchmark", "-p", "24900", "-t", "set", "-n", "30000",
                        "-d", "4000", "-r", "100000000", "-c", "16", "-q"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        time.sleep(8)  # Let snapshots and fsyncs finish: nothing in D state.
        with open(f"/proc/{node.pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) // 1024
        client = socket.create_connection(("127.0.0.1", 24900))
        client.settimeout(5)
        start = time.perf_counter()
        node.send_signal(signal.SIGKILL)
        client.recv(1)
        eof = (time.perf_counter() - start) * 1000
        node.wait()
        reaped = (time.perf_counter() - start) * 1000
        return eof, reaped, rss
    finally:
        node.kill()
        node.wait()
        shutil.rmtree(data, ignore_errors=True)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for keeper in (True, False):
        runs = [one(keeper) for _ in range(rounds)]
        print(f"memory keeper {'on ' if keeper else 'off'}: EOF after "
              + ", ".join(f"{e:.2f}" for e, _, _ in runs) + " ms; resident "
              + ", ".join(f"{r}" for _, _, r in runs) + " MiB")


if __name__ == "__main__":
    main()
