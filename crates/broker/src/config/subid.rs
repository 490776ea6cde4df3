//! `/etc/subuid` and `/etc/subgid`: resolving `userns: NAME` to host ids.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where `/etc/subuid` and `/etc/subgid` are read from (tests override).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubIdFiles {
    /// The subordinate uid file, normally `/etc/subuid`.
    pub subuid: PathBuf,
    /// The subordinate gid file, normally `/etc/subgid`.
    pub subgid: PathBuf,
}

impl Default for SubIdFiles {
    /// `/etc/subuid` and `/etc/subgid`.
    fn default() -> Self {
        SubIdFiles {
            subuid: PathBuf::from("/etc/subuid"),
            subgid: PathBuf::from("/etc/subgid"),
        }
    }
}

impl SubIdFiles {
    /// The defaults, overridden by the `SOCKBROKER_SUBUID` / `SOCKBROKER_SUBGID`
    /// environment variables when they are set and not empty (end-to-end tests
    /// use them).
    pub fn from_env() -> Self {
        let mut files = SubIdFiles::default();
        if let Some(p) = std::env::var_os("SOCKBROKER_SUBUID").filter(|p| !p.is_empty()) {
            files.subuid = PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("SOCKBROKER_SUBGID").filter(|p| !p.is_empty()) {
            files.subgid = PathBuf::from(p);
        }
        files
    }
}

/// One line `owner:start:count` of a subid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubIdEntry {
    /// A user name, or a numeric uid.
    pub owner: String,
    /// First host id of the range.
    pub start: u32,
    /// Number of ids in the range (at least 1).
    pub count: u32,
}

/// Parse a subid file. Blank lines, `#` comments and malformed lines are
/// skipped (as shadow-utils does).
pub(crate) fn parse_subid(text: &str) -> Vec<SubIdEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut parts = line.split(':');
            let owner = parts.next()?.trim();
            let start = parts.next()?.trim().parse::<u32>().ok()?;
            let count = parts.next()?.trim().parse::<u32>().ok()?;
            if parts.next().is_some() || owner.is_empty() || count == 0 {
                return None;
            }
            Some(SubIdEntry {
                owner: owner.to_string(),
                start,
                count,
            })
        })
        .collect()
}

/// Which of the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// `/etc/subuid`.
    Uid,
    /// `/etc/subgid`.
    Gid,
}

/// Lazily loaded subid files, each read at most once per validation.
pub(crate) struct SubIdDb<'a> {
    files: &'a SubIdFiles,
    loaded: HashMap<Kind, Result<Vec<SubIdEntry>, String>>,
    uids: HashMap<String, Option<u32>>,
}

impl<'a> SubIdDb<'a> {
    /// Nothing is read until [`SubIdDb::first_range`] is asked.
    pub fn new(files: &'a SubIdFiles) -> Self {
        SubIdDb {
            files,
            loaded: HashMap::new(),
            uids: HashMap::new(),
        }
    }

    /// The path of one of the files.
    pub fn path(&self, kind: Kind) -> &'a Path {
        match kind {
            Kind::Uid => &self.files.subuid,
            Kind::Gid => &self.files.subgid,
        }
    }

    /// The first range of `user` in the file: a line whose first field is the
    /// name, or the user's numeric uid. `Err` says the file is unreadable.
    pub fn first_range(&mut self, kind: Kind, user: &str) -> Result<Option<(u32, u32)>, String> {
        let path = self.path(kind);
        let entries = self.loaded.entry(kind).or_insert_with(|| {
            std::fs::read_to_string(path)
                .map(|t| parse_subid(&t))
                .map_err(|e| e.to_string())
        });
        let entries = match entries {
            Ok(e) => e,
            Err(e) => return Err(e.clone()),
        };
        let needs_uid = entries
            .iter()
            .any(|e| e.owner.bytes().all(|b| b.is_ascii_digit()));
        let uid = if needs_uid {
            *self
                .uids
                .entry(user.to_string())
                .or_insert_with(|| lookup_uid(user))
        } else {
            None
        };
        Ok(entries
            .iter()
            .find(|e| e.owner == user || uid.is_some_and(|u| e.owner == u.to_string()))
            .map(|e| (e.start, e.count)))
    }
}

/// The uid of a user from the system's user database, if there is one.
fn lookup_uid(user: &str) -> Option<u32> {
    if user.is_empty() || user.contains('\0') {
        return None;
    }
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let text = "\
dockremap:231072:65536
# comment
  tenant2 : 296608 : 65536

1000:100000:65536
bad
bad:1
bad:x:1
bad:1:0
bad:1:2:3
:1:2
big:4294967295:1
";
        let e = parse_subid(text);
        let owners: Vec<&str> = e.iter().map(|e| e.owner.as_str()).collect();
        assert_eq!(owners, ["dockremap", "tenant2", "1000", "big"]);
        assert_eq!(
            e[0],
            SubIdEntry {
                owner: "dockremap".into(),
                start: 231072,
                count: 65536
            }
        );
        assert_eq!(e[1].start, 296608);
    }

    #[test]
    fn first_range_by_name_and_uid() {
        let dir = tempfile::tempdir().unwrap();
        let subuid = dir.path().join("subuid");
        let subgid = dir.path().join("subgid");
        std::fs::write(
            &subuid,
            "dockremap:231072:65536\ndockremap:400000:10\n0:500000:65536\n",
        )
        .unwrap();
        let files = SubIdFiles {
            subuid,
            subgid: subgid.clone(),
        };
        let mut db = SubIdDb::new(&files);
        assert_eq!(
            db.first_range(Kind::Uid, "dockremap"),
            Ok(Some((231072, 65536)))
        );
        assert_eq!(db.first_range(Kind::Uid, "nobody-here-xyz"), Ok(None));
        // root has uid 0 everywhere: the numeric line matches it by uid.
        assert_eq!(db.first_range(Kind::Uid, "root"), Ok(Some((500000, 65536))));
        let err = db.first_range(Kind::Gid, "dockremap").unwrap_err();
        assert!(!err.is_empty());
        // Read once: creating the file now does not change the answer.
        std::fs::write(&subgid, "dockremap:1:1\n").unwrap();
        assert!(db.first_range(Kind::Gid, "dockremap").is_err());
    }

    #[test]
    fn env_overrides() {
        // Only checks the defaults: setting process-wide env vars in a
        // multi-threaded test binary would race with other tests.
        let d = SubIdFiles::default();
        assert_eq!(d.subuid, PathBuf::from("/etc/subuid"));
        assert_eq!(d.subgid, PathBuf::from("/etc/subgid"));
    }
}
