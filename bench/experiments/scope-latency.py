#!/usr/bin/env python3
"""What `scope: own` adds per request, against the real engine.

    flock /var/lib/sockbroker-test/.lock bench/experiments/scope-latency.py [N]

Needs root, the debug or release broker (SOCKBROKER_BIN, default
target/debug/sockbroker) and tests/docker/setup.sh (engine 4, started and
stopped here). One broker, two tenants on one engine, both `preset:
userns-safe`: `plain` (scope engine) and `scoped` (scope own); plus the engine
directly. Each scenario runs N times on one keep-alive connection per target;
the median and p90 latency in microseconds are printed as a Markdown table.
(The bench in bench/src measures the relay's own CPU against a fake engine;
this measures what a client sees with the real one, lookups included.)
"""
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
ROOT = os.environ.get("SB_DOCKER_ROOT", "/var/lib/sockbroker-test")
HERE = os.path.dirname(os.path.abspath(__file__))
WS = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("SOCKBROKER_BIN", os.path.join(WS, "target/debug/sockbroker"))


class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("docker")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def call(c, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    return r.status, data


def measure(sock, method, path, body=None, n=N, after=None):
    c = Unix(sock)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        status, data = call(c, method, path, body)
        times.append((time.perf_counter() - t) * 1e6)
        assert status < 300, (sock, method, path, status, data)
        if after:
            after(c, data)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)]


def main():
    subprocess.run(["bash", os.path.join(WS, "tests/docker/setup.sh"), "engine", "4", "dockremap"],
                   check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, SB_DOCKER_ROOT=ROOT))
    engine = os.path.join(ROOT, "docker-4/docker.sock")
    d = tempfile.mkdtemp()
    cfg = os.path.join(d, "sockbroker.yaml")
    with open(cfg, "w") as f:
        f.write("tenants:\n")
        for name, scope in [("plain", "engine"), ("scoped", "own")]:
            f.write(f"  {name}:\n    listen: {d}/{name}.sock\n    uid: 0\n    gid: 0\n"
                    f"    upstream: {engine}\n    access: {{preset: userns-safe, scope: {scope}}}\n")
    broker = subprocess.Popen([BIN, "run", "--config", cfg, "--watch", "off"],
                              stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    try:
        for name in ["plain", "scoped"]:
            while not os.path.exists(f"{d}/{name}.sock"):
                time.sleep(0.01)
        targets = {"direct": engine, "userns-safe": f"{d}/plain.sock", "userns-safe + scope own": f"{d}/scoped.sock"}
        # One container per target, created through it (so the scoped one owns its own).
        ids = {}
        for t, sock in targets.items():
            name = "lat-" + t.replace(" ", "").replace("+", "-")
            body = json.dumps({"Image": "tenant:local", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}})
            status, data = call(Unix(sock), "POST", f"/v1.41/containers/create?name={name}", body)
            assert status == 201, data
            ids[t] = (name, json.loads(data)["Id"])
        rows = []

        def remove(c, data):
            call(c, "DELETE", f"/v1.41/containers/{json.loads(data)['Id']}")

        create = json.dumps({"Image": "tenant:local", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}})
        scenarios = [
            ("GET /containers/json?all=1 (list)", "GET", "/v1.41/containers/json?all=1", None, N, None),
            ("GET /containers/NAME/json (inspect by name)", "GET", "/v1.41/containers/{name}/json", None, N, None),
            ("GET /containers/ID/json (inspect by full ID)", "GET", "/v1.41/containers/{id}/json", None, N, None),
            ("POST /containers/create (+ DELETE, not timed)", "POST", "/v1.41/containers/create", create, max(N // 10, 10), remove),
        ]
        for label, method, path, body, n, after in scenarios:
            row = [label]
            for t, sock in targets.items():
                name, cid = ids[t]
                p50, p90 = measure(sock, method, path.format(name=name, id=cid), body, n, after)
                row.append(f"{p50:.0f} / {p90:.0f}")
            rows.append(row)
        print("| request (µs, p50 / p90) | " + " | ".join(targets) + " |")
        print("|---|" + "---:|" * len(targets))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        for t, sock in targets.items():
            call(Unix(sock), "DELETE", f"/v1.41/containers/{ids[t][1]}?force=1")
    finally:
        broker.terminate()
        broker.wait()
        subprocess.run(["bash", os.path.join(WS, "tests/docker/teardown.sh"), "4"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, SB_DOCKER_ROOT=ROOT))


if __name__ == "__main__":
    main()
