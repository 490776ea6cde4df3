//! The resolved tenants as a plain text table (for `sockbroker check`).

use super::Config;

/// A plain, space-aligned text table of the resolved tenants, one line per
/// tenant (sorted by name) under a header:
///
/// ```text
/// TENANT     LISTEN                                    OWNER                            MODE  UPSTREAM              ACCESS
/// ci-runner  /run/sockbroker/ci-runner/docker.sock     231072:231072                    0660  /var/run/docker.sock  full
/// ```
///
/// Every line ends with a newline; with no tenants only the header is printed.
pub fn format_table(config: &Config) -> String {
    let rows: Vec<[String; 6]> = config
        .tenants
        .values()
        .map(|t| {
            [
                t.name.clone(),
                t.listen.display().to_string(),
                t.owner_string(),
                t.mode_string(),
                t.upstream.display().to_string(),
                t.access.to_string(),
            ]
        })
        .collect();
    crate::text_table::render(
        ["TENANT", "LISTEN", "OWNER", "MODE", "UPSTREAM", "ACCESS"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::super::{AccessPolicy, OwnerSource, TenantSpec};
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn spec(name: &str, owner: OwnerSource, uid: u32) -> TenantSpec {
        TenantSpec {
            name: name.into(),
            listen: PathBuf::from(format!("/run/sockbroker/{name}/docker.sock")),
            uid,
            gid: uid,
            owner,
            mode: 0o660,
            upstream: PathBuf::from("/var/run/docker.sock"),
            allow: None,
            access: AccessPolicy::Full,
            max_connections: 256,
            idle_timeout: None,
            drain_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn owner_and_mode_strings() {
        let mut s = spec("a", OwnerSource::Ids, 231072);
        assert_eq!(s.owner_string(), "231072:231072");
        assert_eq!(s.mode_string(), "0660");
        s.mode = 0o7;
        assert_eq!(s.mode_string(), "0007");
        s.owner = OwnerSource::Userns {
            user: "dockremap".into(),
            container_uid: 0,
            container_gid: 0,
        };
        assert_eq!(s.owner_string(), "231072:231072 (userns dockremap)");
        s.owner = OwnerSource::Userns {
            user: "dockremap".into(),
            container_uid: 1000,
            container_gid: 1001,
        };
        assert_eq!(
            s.owner_string(),
            "231072:231072 (userns dockremap, container 1000:1001)"
        );
    }

    #[test]
    fn aligned_table() {
        let mut config = Config::default();
        assert_eq!(
            format_table(&config),
            "TENANT  LISTEN  OWNER  MODE  UPSTREAM  ACCESS\n"
        );
        for t in [
            spec(
                "portainer",
                OwnerSource::Userns {
                    user: "dockremap".into(),
                    container_uid: 0,
                    container_gid: 0,
                },
                231072,
            ),
            spec("ci", OwnerSource::Ids, 1000),
        ] {
            config.tenants.insert(t.name.clone(), t);
        }
        let table = format_table(&config);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("ci         /run/sockbroker/ci/docker.sock "),
            "{table}"
        );
        assert!(
            lines[2].starts_with("portainer  /run/sockbroker/portainer/docker.sock"),
            "{table}"
        );
        // Columns line up: every row has MODE where the header has it.
        let col = lines[0].find("MODE").unwrap();
        assert_eq!(&lines[1][col..col + 4], "0660");
        assert_eq!(&lines[2][col..col + 4], "0660");
        assert!(lines[2].contains("231072:231072 (userns dockremap)"));
        assert!(lines.iter().all(|l| !l.ends_with(' ')));
    }
}
