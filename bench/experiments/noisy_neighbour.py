#!/usr/bin/env python3
"""A noisy neighbour: how much one tenant's expensive requests delay another's.

    bench/experiments/noisy_neighbour.py BROKER TENANTS ATTACKERS   (as root)
    e.g. bench/experiments/noisy_neighbour.py target/release/sockbroker a,b 2

Starts BROKER (`sockbroker run`) on a scratch config under /dev/shm/iso with
the tenants named in TENANTS (comma list, in config order; listeners go to
the data-path workers round-robin, so `a,b` puts a and b on different
workers of a 2-core machine and `a,x,b` on the same one). Tenant `a` has
`access: userns-safe`; ATTACKERS threads send it back-to-back container
creates whose ~820 KiB body of 60,000 labels the broker must parse and check
before it refuses them (`Privileged`). Tenant `b` is a byte relay to a Python
echo upstream; one client measures its 64-byte round trips (one per ms)
before and during the attack. Prints the victim's p50/p99/max in µs.
"""
import os, socket, subprocess, sys, threading, time, statistics
d = "/dev/shm/iso"; up = d + "/up.sock"
os.makedirs(d, exist_ok=True)
for f in os.listdir(d):
    if f.endswith(".sock"): os.unlink(os.path.join(d, f))
ls = socket.socket(socket.AF_UNIX); ls.bind(up); ls.listen(256)
def echo(c):
    try:
        while True:
            b = c.recv(65536)
            if not b: break
            c.sendall(b)
    except OSError: pass
    c.close()
def serve():
    while True:
        c, _ = ls.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
threading.Thread(target=serve, daemon=True).start()
names = sys.argv[2].split(",")  # e.g. a,b or a,x,b
cfg = d + "/sockbroker.yaml"
with open(cfg, "w") as f:
    f.write(f"defaults:\n  upstream: {up}\ntenants:\n")
    for n in names:
        f.write(f"  {n}:\n    listen: {d}/{n}.sock\n    uid: 0\n    gid: 0\n")
        if n == "a": f.write("    access: userns-safe\n")
p = subprocess.Popen([sys.argv[1], "run", "--config", cfg], stderr=open(d+"/err.log","w"), env=dict(os.environ, RUST_LOG="warn"))
for n in names:
    while not os.path.exists(f"{d}/{n}.sock"): time.sleep(0.01)
labels = ",".join(f'"k{i:06d}":"v"' for i in range(60000))
body = ('{"Image":"x","Labels":{' + labels + '},"HostConfig":{"Privileged":true}}').encode()
req = b"POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
stop = [False]; sent = [0]
def attack():
    while not stop[0]:
        s = socket.socket(socket.AF_UNIX); s.connect(f"{d}/a.sock"); s.sendall(req)
        r = s.recv(4096); s.close(); sent[0] += 1
def victim(dur):
    s = socket.socket(socket.AF_UNIX); s.connect(f"{d}/b.sock"); lat = []
    end = time.time() + dur
    while time.time() < end:
        t = time.perf_counter(); s.sendall(b"x"*64); g = b""
        while len(g) < 64: g += s.recv(64)
        lat.append((time.perf_counter()-t)*1e6)
        time.sleep(0.001)
    return sorted(lat)
base = victim(1.5)
ths = [threading.Thread(target=attack) for _ in range(int(sys.argv[3]))]
for t in ths: t.start()
time.sleep(0.3)
under = victim(3)
stop[0] = True
for t in ths: t.join()
q = lambda l, x: l[min(len(l)-1, int(x*len(l)))]
print(f"{os.path.basename(sys.argv[1])} tenants={sys.argv[2]} attackers={sys.argv[3]} body={len(body)//1024}KiB attacks={sent[0]}  base p50 {q(base,.5):.0f} p99 {q(base,.99):.0f} | under attack p50 {q(under,.5):.0f} p99 {q(under,.99):.0f} max {under[-1]:.0f} us")
p.terminate(); p.wait()
