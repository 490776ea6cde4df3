//! The ids of a tenant: its socket's owner (`uid` + `gid`, or `userns`
//! resolved through `/etc/subuid` and `/etc/subgid`) and the peers its
//! `allow` list admits.

use serde_yaml::Value;

use super::{Ctx, Scope};
use crate::config::error::{parse_unknown_field, unknown_key_message};
use crate::config::raw::{RawAllow, RawTenant, RawUsernsMap};
use crate::config::subid::{Kind, SubIdDb};
use crate::config::values::{describe, parse_id, parse_id_range, MAX_ID};
use crate::config::{AllowList, IdRange, OwnerSource};

/// The socket's owner: `uid` + `gid`, or `userns`.
pub(super) fn resolve_owner(
    ctx: &mut Ctx<'_>,
    scope: Scope<'_>,
    t: &RawTenant,
    db: &mut SubIdDb<'_>,
) -> Option<(u32, u32, OwnerSource)> {
    let uid = ctx.value(scope, "uid", t.uid.as_ref(), |v| parse_id(v, "uid"));
    let gid = ctx.value(scope, "gid", t.gid.as_ref(), |v| parse_id(v, "gid"));
    match (&t.userns, &t.uid, &t.gid) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            ctx.err(
                scope,
                Some("userns"),
                "both uid/gid and userns are set; set either uid and gid, or userns (which takes the owner \
                 from /etc/subuid and /etc/subgid), not both",
            );
            None
        }
        (Some(u), None, None) => resolve_userns(ctx, scope, u, db),
        (None, Some(_), Some(_)) => Some((uid?, gid?, OwnerSource::Ids)),
        (None, Some(_), None) => {
            ctx.err_at(
                scope,
                Some("gid"),
                &["uid"],
                "uid is set without gid; add gid (e.g. gid: 231072) next to it, or use userns instead",
            );
            None
        }
        (None, None, Some(_)) => {
            ctx.err_at(
                scope,
                Some("uid"),
                &["gid"],
                "gid is set without uid; add uid (e.g. uid: 231072) next to it, or use userns instead",
            );
            None
        }
        (None, None, None) => {
            ctx.err(
                scope,
                None,
                "no owner for the socket: set uid and gid (e.g. uid: 231072 and gid: 231072), or \
                 userns: NAME to use the first ids of NAME's ranges in /etc/subuid and /etc/subgid",
            );
            None
        }
    }
}

fn resolve_userns(
    ctx: &mut Ctx<'_>,
    scope: Scope<'_>,
    v: &Value,
    db: &mut SubIdDb<'_>,
) -> Option<(u32, u32, OwnerSource)> {
    const HINT: &str =
        "write userns: NAME (e.g. userns: dockremap) or userns: {user: NAME, uid: 0, gid: 0}";
    let (user, cuid, cgid) = match v {
        Value::String(s) => (s.trim().to_string(), Some(0), Some(0)),
        Value::Mapping(_) => match serde_yaml::from_value::<RawUsernsMap>(v.clone()) {
            Err(e) => {
                let text = e.to_string();
                match parse_unknown_field(&text) {
                    Some(u) => ctx.err_at(
                        scope,
                        Some(&format!("userns.{}", u.key)),
                        &["userns", &u.key],
                        unknown_key_message(&u.key, &u.expected, " in userns"),
                    ),
                    None => ctx.err(scope, Some("userns"), format!("{text}; {HINT}")),
                }
                return None;
            }
            Ok(m) => {
                let user = match &m.user {
                    Some(Value::String(s)) => s.trim().to_string(),
                    None => {
                        ctx.err(
                            scope,
                            Some("userns"),
                            format!("userns needs `user`; {HINT}"),
                        );
                        return None;
                    }
                    Some(other) => {
                        ctx.err(
                            scope,
                            Some("userns.user"),
                            format!("{} is not a user name; {HINT}", describe(other)),
                        );
                        return None;
                    }
                };
                let cuid = match &m.uid {
                    None => Some(0),
                    v => ctx.value(scope, "userns.uid", v.as_ref(), |v| parse_id(v, "uid")),
                };
                let cgid = match &m.gid {
                    None => Some(0),
                    v => ctx.value(scope, "userns.gid", v.as_ref(), |v| parse_id(v, "gid")),
                };
                (user, cuid, cgid)
            }
        },
        other => {
            ctx.err(
                scope,
                Some("userns"),
                format!("{} is not a user namespace owner; {HINT}", describe(other)),
            );
            return None;
        }
    };
    if user.is_empty() || user.contains(['\0', ':', '\n']) {
        ctx.err(
            scope,
            Some("userns"),
            format!("{user:?} is not a user name; {HINT}"),
        );
        return None;
    }
    let uid = map_id(ctx, scope, db, Kind::Uid, &user, cuid?);
    let gid = map_id(ctx, scope, db, Kind::Gid, &user, cgid?);
    Some((
        uid?,
        gid?,
        OwnerSource::Userns {
            user,
            container_uid: cuid?,
            container_gid: cgid?,
        },
    ))
}

/// Host id = start of `user`'s first range + the container-side id.
fn map_id(
    ctx: &mut Ctx<'_>,
    scope: Scope<'_>,
    db: &mut SubIdDb<'_>,
    kind: Kind,
    user: &str,
    container_id: u32,
) -> Option<u32> {
    let path = db.path(kind).display().to_string();
    let (what, env) = match kind {
        Kind::Uid => ("uid", "SOCKBROKER_SUBUID"),
        Kind::Gid => ("gid", "SOCKBROKER_SUBGID"),
    };
    match db.first_range(kind, user) {
        Err(e) => {
            ctx.err(
                scope,
                Some("userns"),
                format!(
                    "cannot read {path}: {e}; userns owners are resolved from it (make it readable, \
                     or set {env} to use another file)"
                ),
            );
            None
        }
        Ok(None) => {
            ctx.err(
                scope,
                Some("userns"),
                format!(
                    "user {user:?} has no range in {path}; add a line \"{user}:START:COUNT\" to it \
                     (e.g. with `usermod --add-sub{what}s START-END {user}`), or set uid and gid instead"
                ),
            );
            None
        }
        Ok(Some((start, count))) => {
            if container_id >= count {
                let key = format!("userns.{what}");
                ctx.err(
                    scope,
                    Some(&key),
                    format!(
                        "container {what} {container_id} is outside {user}'s first range in {path} \
                         ({start}:{count} maps container {what}s 0…{}); use a smaller {what}",
                        count - 1
                    ),
                );
                return None;
            }
            let host = u64::from(start) + u64::from(container_id);
            if host > u64::from(MAX_ID) {
                ctx.err(
                    scope,
                    Some("userns"),
                    format!(
                        "{user}'s range in {path} maps container {what} {container_id} to {host}, above {MAX_ID}; fix the range"
                    ),
                );
                return None;
            }
            Some(host as u32)
        }
    }
}

/// `allow`: `Some(None)` = absent (any peer); `None` = an error was recorded.
pub(super) fn resolve_allow(
    ctx: &mut Ctx<'_>,
    scope: Scope<'_>,
    raw: &Option<Option<RawAllow>>,
) -> Option<Option<AllowList>> {
    const EMPTY: &str =
        "allow lists no ids; add uids and/or gids (e.g. uids: [\"231072-296607\"]), or remove `allow` to \
         admit any peer the socket mode lets in";
    let a = match raw {
        None => return Some(None),
        Some(None) => {
            ctx.err(scope, Some("allow"), EMPTY);
            return None;
        }
        Some(Some(a)) => a,
    };
    let before = ctx.errors.len();
    let uids = id_list(ctx, scope, "uids", a.uids.as_ref());
    let gids = id_list(ctx, scope, "gids", a.gids.as_ref());
    if ctx.errors.len() != before {
        return None;
    }
    if uids.is_empty() && gids.is_empty() {
        ctx.err(scope, Some("allow"), EMPTY);
        return None;
    }
    Some(Some(AllowList { uids, gids }))
}

fn id_list(ctx: &mut Ctx<'_>, scope: Scope<'_>, which: &str, v: Option<&Value>) -> Vec<IdRange> {
    let key = format!("allow.{which}");
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match parse_id_range(item) {
                    Ok(r) => out.push(r),
                    Err(m) => ctx.err(scope, Some(&key), format!("entry {}: {m}", i + 1)),
                }
            }
            out
        }
        Some(other) => {
            ctx.err(
                scope,
                Some(&key),
                format!(
                    "{} is not a list; write a list of ids and ranges, e.g. {which}: [1000, \"231072-296607\"]",
                    describe(other)
                ),
            );
            Vec::new()
        }
    }
}
