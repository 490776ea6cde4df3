//! Client-side measurements (blocking threads; one per connection or worker).

use crate::target::connect;
use crate::{CHUNK, MSG};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

pub(crate) struct RunResult {
    /// Units done (bytes, round trips, connections) in the measured interval.
    pub(crate) units: u64,
    /// Units done per second.
    pub(crate) rate: f64,
    /// Latency samples in ns, sorted (round trips, connection cycles).
    pub(crate) lat: Vec<u64>,
}

/// Run `n` client threads for `dur`. Each thread gets its index, a start
/// barrier and the stop flag, and returns (units done, latency samples).
pub(crate) fn run_clients<F>(n: usize, dur: Duration, f: F) -> RunResult
where
    F: Fn(usize, &Barrier, &AtomicBool) -> (u64, Vec<u64>) + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::with_capacity(n);
    for i in 0..n {
        let (f, b, s) = (f.clone(), barrier.clone(), stop.clone());
        hs.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let r = f(i, &b, &s);
                    (r, Instant::now())
                })
                .unwrap(),
        );
    }
    barrier.wait();
    let start = Instant::now();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let mut units = 0;
    let mut lat = Vec::new();
    let mut last = start;
    for h in hs {
        let ((u, l), end) = h.join().expect("client thread failed");
        units += u;
        lat.extend(l);
        last = last.max(end);
    }
    lat.sort_unstable();
    RunResult {
        units,
        rate: units as f64 / (last - start).as_secs_f64(),
        lat,
    }
}

pub(crate) fn throughput_up(path: &Path, conns: usize, dur: Duration) -> RunResult {
    let path = path.to_owned();
    run_clients(conns, dur, move |_, b, stop| {
        let mut s = connect(&path);
        s.write_all(b"S").unwrap();
        let buf = vec![0xa5u8; CHUNK];
        b.wait();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            s.write_all(&buf).expect("write to sink");
            n += CHUNK as u64;
        }
        (n, Vec::new())
    })
}

pub(crate) fn throughput_down(path: &Path, conns: usize, dur: Duration) -> RunResult {
    let path = path.to_owned();
    run_clients(conns, dur, move |_, b, stop| {
        let mut s = connect(&path);
        s.write_all(b"O").unwrap();
        let mut buf = vec![0u8; CHUNK];
        // The stream is flowing before the clock starts.
        s.read_exact(&mut buf[..1]).unwrap();
        b.wait();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let r = s.read(&mut buf).expect("read from source");
            assert!(r > 0, "source ended early");
            n += r as u64;
        }
        (n, Vec::new())
    })
}

pub(crate) fn round_trip(s: &mut UnixStream, out: &[u8; MSG], back: &mut [u8; MSG]) {
    s.write_all(out).expect("write request");
    s.read_exact(back).expect("read response");
}

pub(crate) fn request_response(path: &Path, conns: usize, dur: Duration) -> RunResult {
    let path = path.to_owned();
    run_clients(conns, dur, move |_, b, stop| {
        let mut s = connect(&path);
        s.write_all(b"E").unwrap();
        let out = [7u8; MSG];
        let mut back = [0u8; MSG];
        round_trip(&mut s, &out, &mut back);
        let mut lat = Vec::with_capacity(1 << 16);
        b.wait();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            round_trip(&mut s, &out, &mut back);
            lat.push(t.elapsed().as_nanos() as u64);
        }
        (lat.len() as u64, lat)
    })
}

pub(crate) fn connection_rate(path: &Path, workers: usize, dur: Duration) -> RunResult {
    let path = path.to_owned();
    run_clients(workers, dur, move |_, b, stop| {
        let mut req = [7u8; MSG + 1];
        req[0] = b'E';
        let mut back = [0u8; MSG];
        let mut lat = Vec::with_capacity(1 << 14);
        b.wait();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let mut s = connect(&path);
            s.write_all(&req).expect("write request");
            s.read_exact(&mut back).expect("read response");
            drop(s);
            lat.push(t.elapsed().as_nanos() as u64);
        }
        (lat.len() as u64, lat)
    })
}

// ---------------------------------------------------------------------------
// HTTP client (policy group): blocking, keep-alive, fixed request bytes; the
// end of each response is found with httparse and its Content-Length.

pub(crate) const PING_REQUEST: &[u8] = b"GET /v1.41/_ping HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Docker-Client/20.10.24 (linux)\r\n\r\n";

/// The body `docker run -d --name web -p 8080:80 -v webdata:/usr/share/nginx/html
/// -e TZ=UTC --memory 512m --restart unless-stopped --label app=web nginx:1.25`
/// sends (docker CLI 20.10, API 1.41): a full HostConfig, a named volume, no
/// field `userns-safe` refuses.
pub(crate) const CREATE_BODY: &str = concat!(
    r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"#,
    r#""AttachStderr":false,"ExposedPorts":{"80/tcp":{}},"Tty":false,"OpenStdin":false,"#,
    r#""StdinOnce":false,"Env":["TZ=UTC"],"Cmd":null,"Image":"nginx:1.25","Volumes":{},"#,
    r#""WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{"app":"web"},"#,
    r#""HostConfig":{"Binds":["webdata:/usr/share/nginx/html"],"ContainerIDFile":"","#,
    r#""LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","#,
    r#""PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},"#,
    r#""RestartPolicy":{"Name":"unless-stopped","MaximumRetryCount":0},"AutoRemove":false,"#,
    r#""VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"#,
    r#""CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"#,
    r#""GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","#,
    r#""Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"#,
    r#""UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"#,
    r#""Memory":536870912,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"#,
    r#""BlkioWeightDevice":[],"BlkioDeviceReadBps":null,"BlkioDeviceWriteBps":null,"#,
    r#""BlkioDeviceReadIOps":null,"BlkioDeviceWriteIOps":null,"CpuPeriod":0,"CpuQuota":0,"#,
    r#""CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","#,
    r#""Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"KernelMemory":0,"#,
    r#""KernelMemoryTCP":0,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"#,
    r#""OomKillDisable":false,"PidsLimit":null,"Ulimits":null,"CpuCount":0,"CpuPercent":0,"#,
    r#""IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},"#,
    r#""NetworkingConfig":{"EndpointsConfig":{}}}"#,
);

/// The full `POST /v1.41/containers/create?name=web` request with `body`.
pub(crate) fn create_request(body: &str) -> Arc<[u8]> {
    format!(
        "POST /v1.41/containers/create?name=web HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Docker-Client/20.10.24 (linux)\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into()
}

/// One keep-alive client connection.
pub(crate) struct HttpClient {
    pub(crate) s: UnixStream,
    pub(crate) buf: Vec<u8>,
    /// Bytes of `buf` received and not yet consumed.
    pub(crate) len: usize,
}

/// (status, length of the whole response) once `data` holds a complete head.
pub(crate) fn response_end(data: &[u8]) -> Option<(u16, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(data).expect("malformed response head") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .expect("response without a Content-Length");
    Some((resp.code.expect("status code"), head + len))
}

impl HttpClient {
    pub(crate) fn connect(path: &Path) -> HttpClient {
        HttpClient {
            s: connect(path),
            buf: vec![0; 16 * 1024],
            len: 0,
        }
    }

    pub(crate) fn fill(&mut self) {
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self
            .s
            .read(&mut self.buf[self.len..])
            .expect("read response");
        assert!(n > 0, "connection closed before the response ended");
        self.len += n;
    }

    /// Send `req`, read its response; panic unless the status is `want`.
    pub(crate) fn exchange(&mut self, req: &[u8], want: u16) {
        self.s.write_all(req).expect("write request");
        let (status, end) = loop {
            if let Some(x) = response_end(&self.buf[..self.len]) {
                break x;
            }
            self.fill();
        };
        while self.len < end {
            self.fill();
        }
        assert_eq!(
            status,
            want,
            "unexpected response:\n{}",
            String::from_utf8_lossy(&self.buf[..end])
        );
        self.buf.copy_within(end..self.len, 0);
        self.len -= end;
    }
}

/// `conns` keep-alive connections sending `req` back to back, each answered with `want`.
pub(crate) fn http_requests(
    path: &Path,
    conns: usize,
    dur: Duration,
    req: Arc<[u8]>,
    want: u16,
) -> RunResult {
    let path = path.to_owned();
    run_clients(conns, dur, move |_, b, stop| {
        let mut c = HttpClient::connect(&path);
        // The connection (and the policy relay's upstream connection) is up before the clock.
        c.exchange(&req, want);
        let mut lat = Vec::with_capacity(1 << 16);
        b.wait();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            c.exchange(&req, want);
            lat.push(t.elapsed().as_nanos() as u64);
        }
        (lat.len() as u64, lat)
    })
}
