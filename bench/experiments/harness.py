#!/usr/bin/env python3
"""An independent second opinion on #17's round-trip and connection-rate rows.

    bench/experiments/harness.py [ROUNDS] [MS]     (as root; default 5 rounds of 1000 ms)

Written apart from sockbroker-bench (bench/src): the clients and the upstream
are a C program (harness.c, built here with gcc) with blocking threads on both
sides -- a thread per client connection or worker, a thread per upstream
connection, as the outside harness #17 quotes. In front of the same upstream:
`socat UNIX-LISTEN:…,fork UNIX-CLIENT:…`, the floor relay
(target/release/sockbroker-floor-relay) and sockbroker (target/release/
sockbroker, RUST_LOG=info, one tenant). Each scenario runs each target once per
round, in an order that rotates every round, after a discarded warm-up; the
table shows the median rates and sockbroker's ratios to socat and the floor.
SOCKBROKER_BIN and FLOOR_BIN replace the two binaries; COMPARE_BIN adds a
second sockbroker build (or a wrapper script) as a fifth column.
"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
MS = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
HERE = os.path.dirname(os.path.abspath(__file__))
WS = os.path.dirname(os.path.dirname(HERE))
REL = os.path.join(WS, "target", "release")
SCENARIOS = [("rr", 1), ("rr", 16), ("conn", 1), ("conn", 16)]
NAMES = {"rr": "round trips", "conn": "connection rate"}


def wait_socket(path, deadline=10.0):
    end = time.monotonic() + deadline
    while not os.path.exists(path):
        if time.monotonic() > end:
            sys.exit(f"harness: {path} never appeared")
        time.sleep(0.01)


def main():
    if os.geteuid() != 0:
        sys.exit("harness: run as root (the tenant socket is owned by uid 0)")
    bins = {"floor": os.environ.get("FLOOR_BIN", os.path.join(REL, "sockbroker-floor-relay")),
            "sockbroker": os.environ.get("SOCKBROKER_BIN", os.path.join(REL, "sockbroker"))}
    if os.environ.get("COMPARE_BIN"):
        bins["compare"] = os.environ["COMPARE_BIN"]
    for b in bins.values():
        if not os.path.exists(b):
            sys.exit(f"harness: no {b}: cargo build --release first")
    tmp = tempfile.mkdtemp(prefix="sbharness", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    procs = []
    try:
        exe = os.path.join(tmp, "harness")
        subprocess.run(["gcc", "-O2", "-pthread", "-o", exe, os.path.join(HERE, "harness.c")], check=True)
        upstream = os.path.join(tmp, "upstream.sock")
        procs.append(subprocess.Popen([exe, "server", upstream]))
        wait_socket(upstream)

        targets = {}
        p = os.path.join(tmp, "socat.sock")
        procs.append(subprocess.Popen(["socat", f"UNIX-LISTEN:{p},fork,backlog=4096", f"UNIX-CLIENT:{upstream}"]))
        targets["socat"] = p
        for name, binary in bins.items():
            d = os.path.join(tmp, name)
            os.mkdir(d)
            listen = os.path.join(d, "t", "s.sock")
            config = os.path.join(d, "sockbroker.yaml")
            with open(config, "w") as f:
                f.write(f"defaults:\n  upstream: {upstream}\n  max_connections: 100000\n"
                        f"tenants:\n  t:\n    listen: {listen}\n    uid: 0\n    gid: 0\n")
            log = open(os.path.join(tmp, f"{name}.log"), "w")
            env = dict(os.environ, RUST_LOG="info")
            procs.append(subprocess.Popen([binary, "run", "--config", config],
                                          stdout=log, stderr=log, env=env))
            targets[name] = listen
        for p in targets.values():
            wait_socket(p)

        order = list(targets)
        print(f"{ROUNDS} rounds of {MS} ms, targets rotated each round; load average "
              f"{os.getloadavg()[0]:.2f} at the start", flush=True)
        rows = []
        for mode, n in SCENARIOS:
            rates = {t: [] for t in targets}
            for r in range(ROUNDS + 1):
                for i in range(len(order)):
                    t = order[(i + r) % len(order)]
                    out = subprocess.run([exe, mode, targets[t], str(n), str(MS)],
                                         check=True, capture_output=True, text=True).stdout
                    kv = dict(x.split("=") for x in out.split())
                    if r > 0:  # round 0 is the warm-up
                        rates[t].append(int(kv["count"]) / float(kv["seconds"]))
            med = {t: statistics.median(v) for t, v in rates.items()}
            unit = "conn" if n == 1 else "conns"
            if mode == "conn":
                unit = "worker" if n == 1 else "workers"
            rows.append((f"{NAMES[mode]}, {n} {unit}", med))
        print(f"load average {os.getloadavg()[0]:.2f} at the end\n")
        cmp = "compare" in targets
        print("| scenario (harness.c, threaded upstream) | socat /s | floor /s | sockbroker /s "
              + ("| compare /s " if cmp else "")
              + "| sockbroker/socat | sockbroker/floor |" + (" compare/sockbroker |" if cmp else ""))
        print("|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if cmp else ""))
        for name, m in rows:
            print(f"| {name} | {m['socat']:.0f} | {m['floor']:.0f} | {m['sockbroker']:.0f} "
                  + (f"| {m['compare']:.0f} " if cmp else "")
                  + f"| {m['sockbroker'] / m['socat']:.2f}x | {m['sockbroker'] / m['floor']:.2f}x |"
                  + (f" {m['compare'] / m['sockbroker']:.2f}x |" if cmp else ""))
    finally:
        for p in procs:
            if p.poll() is None:
                # socat's forked children belong to its process group only when
                # it is the leader; end the parent, then its children by pid.
                kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
                p.send_signal(signal.SIGTERM)
                for k in kids:
                    try:
                        os.kill(int(k), signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
