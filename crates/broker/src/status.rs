//! `sockbroker status`: fetch `/tenants` from a running broker and print a table.

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::tenants_api::TenantStatus;

/// Where to reach the broker.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// host:port over TCP.
    Tcp(String),
    /// A Unix socket path.
    Unix(String),
}

fn parse_url(url: &str) -> anyhow::Result<Target> {
    if let Some(p) = url.strip_prefix("unix:") {
        return Ok(Target::Unix(p.trim_start_matches("//").to_string()));
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or_default();
    if hostport.is_empty() {
        anyhow::bail!("--url {url:?}: expected http://HOST:PORT or unix:/PATH");
    }
    Ok(Target::Tcp(hostport.to_string()))
}

async fn get<IO>(io: IO, host: &str) -> anyhow::Result<(u16, Bytes)>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let req = Request::get("/tenants")
        .header(hyper::header::HOST, host)
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Render statuses as an aligned table.
pub fn format_table(tenants: &[TenantStatus]) -> String {
    let rows: Vec<[String; 7]> = tenants
        .iter()
        .map(|t| {
            [
                t.name.clone(),
                t.state.clone(),
                t.listen.clone(),
                t.owner.clone(),
                t.mode.clone(),
                t.active_connections.to_string(),
                t.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    crate::text_table::render(
        [
            "TENANT", "STATE", "LISTEN", "OWNER", "MODE", "CONNS", "REASON",
        ],
        &rows,
    )
}

/// Run the `status` command.
pub fn run(url: &str) -> anyhow::Result<()> {
    let target = parse_url(url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (code, body) = rt.block_on(async {
        let fut = async {
            match &target {
                Target::Tcp(hp) => {
                    let s = tokio::net::TcpStream::connect(hp)
                        .await
                        .with_context(|| format!("cannot reach the broker at {hp} (is it running with metrics.listen set to this address?)"))?;
                    get(s, hp).await
                }
                Target::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p)
                        .await
                        .with_context(|| format!("cannot reach the broker at unix:{p}"))?;
                    get(s, "localhost").await
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), fut)
            .await
            .context("the broker did not answer within 10s")?
    })?;
    if code != 200 {
        anyhow::bail!(
            "{url}/tenants answered HTTP {code}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let tenants: Vec<TenantStatus> =
        serde_json::from_slice(&body).context("unexpected /tenants answer")?;
    print!("{}", format_table(&tenants));
    let down = tenants.iter().filter(|t| t.state != "up").count();
    println!("{} tenant(s), {} down", tenants.len(), down);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:9477").unwrap(),
            Target::Tcp("127.0.0.1:9477".into())
        );
        assert_eq!(
            parse_url("127.0.0.1:1/x").unwrap(),
            Target::Tcp("127.0.0.1:1".into())
        );
        assert_eq!(
            parse_url("unix:/run/m.sock").unwrap(),
            Target::Unix("/run/m.sock".into())
        );
        assert!(parse_url("http://").is_err());
    }
}
