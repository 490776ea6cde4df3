//! A best-effort locator of keys in block-style YAML source text.
//!
//! serde keeps no spans for values that deserialized fine but fail semantic
//! validation later, so to give such errors a `line:column` this scans the
//! source: `tenants:` → `  NAME:` → `    FIELD:`. It understands indentation,
//! comments, blank lines and quoted keys; anything it cannot follow (flow
//! style `{...}`, complex keys) simply yields `None` for the deeper parts, and
//! callers fall back to the nearest enclosing key that was found.

/// Where a key was found: 1-based line and column of the key's first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

#[derive(Debug)]
struct Line {
    /// Leading spaces.
    indent: usize,
    /// Whether the line carries YAML content (not blank, not only a comment,
    /// not a document marker).
    content: bool,
    /// The mapping key the line starts with, if any.
    key: Option<String>,
    /// Whether the line is a block sequence item (`- value` or `-`).
    item: bool,
}

/// Locates keys by path in YAML text. Build once per file with [`Locator::new`].
#[derive(Debug)]
pub(crate) struct Locator {
    lines: Vec<Line>,
}

impl Locator {
    /// Pre-scan `text` line by line.
    pub fn new(text: &str) -> Self {
        let lines = text
            .lines()
            .enumerate()
            .map(|(i, raw)| {
                let raw = if i == 0 {
                    raw.trim_start_matches('\u{feff}')
                } else {
                    raw
                };
                let raw = raw.trim_end_matches('\r');
                let indent = raw.len() - raw.trim_start_matches(' ').len();
                let rest = &raw[indent..];
                let trimmed = rest.trim();
                let marker = trimmed == "---"
                    || trimmed == "..."
                    || trimmed.starts_with("--- ")
                    || trimmed.starts_with("... ");
                let content = !(trimmed.is_empty() || trimmed.starts_with('#') || marker);
                let key = if content { leading_key(rest) } else { None };
                let item = content && (rest.starts_with("- ") || rest.trim_end() == "-");
                Line {
                    indent,
                    content,
                    key,
                    item,
                }
            })
            .collect();
        Locator { lines }
    }

    /// The span of the key at `path` (e.g. `["tenants", "ci-runner", "mode"]`),
    /// if every step of the path is found in block style.
    pub fn find(&self, path: &[&str]) -> Option<Span> {
        let (i, _) = self.block(path)?;
        let line = i?;
        Some(Span {
            line: line + 1,
            column: self.lines[line].indent + 1,
        })
    }

    /// The span of the deepest prefix of `path` that can be found: the key
    /// itself, or failing that its parent, and so on. `None` only if not even
    /// the first key is found.
    pub fn find_nearest(&self, path: &[&str]) -> Option<Span> {
        (1..=path.len()).rev().find_map(|n| self.find(&path[..n]))
    }

    /// The span of block-sequence item `index` (0-based) of the list under the
    /// key at `path`: the `- ` lines indented below the key, or at the key's
    /// own indentation right after it (YAML allows both). `None` for a flow
    /// list (`[a, b]`) or when there is no such item.
    pub fn find_item(&self, path: &[&str], index: usize) -> Option<Span> {
        let (Some(key_line), range) = self.block(path)? else {
            return None;
        };
        let key_indent = self.lines[key_line].indent;
        let items: Vec<usize> = match self.child_indent(range.clone(), Some(key_indent)) {
            Some(indent) => range
                .filter(|&i| {
                    let l = &self.lines[i];
                    l.content && l.indent == indent && l.item
                })
                .collect(),
            None => (key_line + 1..self.lines.len())
                .filter(|&i| self.lines[i].content)
                .take_while(|&i| self.lines[i].indent == key_indent && self.lines[i].item)
                .collect(),
        };
        let line = *items.get(index)?;
        Some(Span {
            line: line + 1,
            column: self.lines[line].indent + 1,
        })
    }

    /// The key (name) of the `tenants:` entry whose block contains the 1-based
    /// `line`, if any.
    pub fn tenant_at_line(&self, line: usize) -> Option<String> {
        let (Some(start), range) = self.block(&["tenants"])? else {
            return None;
        };
        let target = line.checked_sub(1)?;
        if target <= start || target >= range.end {
            return None;
        }
        let child_indent = self.child_indent(range.clone(), Some(self.lines[start].indent))?;
        (range.start..=target)
            .rev()
            .map(|i| &self.lines[i])
            .find(|l| l.content && l.indent <= child_indent)
            .filter(|l| l.indent == child_indent)
            .and_then(|l| l.key.clone())
    }

    /// Walk `path`; returns the index of the line of the last key (`None` for
    /// an empty path) and the range of lines that make up its block.
    fn block(&self, path: &[&str]) -> Option<(Option<usize>, std::ops::Range<usize>)> {
        let mut range = 0..self.lines.len();
        let mut parent_indent: Option<usize> = None;
        let mut at = None;
        for key in path {
            let indent = self.child_indent(range.clone(), parent_indent)?;
            let i = range.clone().find(|&i| {
                let l = &self.lines[i];
                l.content && l.indent == indent && l.key.as_deref() == Some(key)
            })?;
            let end = (i + 1..range.end)
                .find(|&j| self.lines[j].content && self.lines[j].indent <= indent)
                .unwrap_or(range.end);
            range = i + 1..end;
            parent_indent = Some(indent);
            at = Some(i);
        }
        Some((at, range))
    }

    /// The indentation of the first content line in `range` deeper than `parent`.
    fn child_indent(&self, range: std::ops::Range<usize>, parent: Option<usize>) -> Option<usize> {
        range
            .map(|i| &self.lines[i])
            .find(|l| l.content && !matches!(parent, Some(p) if l.indent <= p))
            .map(|l| l.indent)
    }
}

/// The mapping key a line (without its indentation) starts with: `key:`,
/// `"key":` or `'key':`, the colon followed by a space or the end of the line.
fn leading_key(rest: &str) -> Option<String> {
    let first = rest.chars().next()?;
    match first {
        '"' | '\'' => {
            let body = &rest[1..];
            let mut key = String::new();
            let mut chars = body.char_indices();
            while let Some((i, c)) = chars.next() {
                if c == first {
                    // '' inside single quotes is an escaped quote.
                    if first == '\'' && body[i + 1..].starts_with('\'') {
                        key.push('\'');
                        chars.next();
                        continue;
                    }
                    let after = body[i + 1..].trim_start_matches([' ', '\t']);
                    let after = after.strip_prefix(':')?;
                    return (after.is_empty() || after.starts_with([' ', '\t'])).then_some(key);
                }
                if c == '\\' && first == '"' {
                    if let Some((_, escaped)) = chars.next() {
                        key.push(escaped);
                    }
                    continue;
                }
                key.push(c);
            }
            None
        }
        '-' | '[' | '{' | '?' | '|' | '>' | '&' | '*' | '!' | '%' | '@' | '`' | '#' => {
            // Sequence items, flow collections, complex keys, block scalars,
            // anchors, aliases, tags, directives: not a plain key.
            if first == '-' && !rest.starts_with("- ") && rest != "-" {
                plain_key(rest)
            } else {
                None
            }
        }
        _ => plain_key(rest),
    }
}

fn plain_key(rest: &str) -> Option<String> {
    let bytes = rest.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            return None;
        }
        if b == b':' && matches!(bytes.get(i + 1), None | Some(b' ' | b'\t')) {
            let key = rest[..i].trim_end();
            return (!key.is_empty()).then(|| key.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# sockbroker
metrics:
  listen: 127.0.0.1:9477

defaults:
  mode: \"0660\"   # comment: with colon
  drain_timeout: 30s

tenants:
  ci-runner:
    listen: /run/sockbroker/ci-runner/docker.sock
    uid: 231072
    gid: 231072
    mode: 660
  \"portainer.v2\":
    # a comment at odd indentation
        # another
    listen: /run/sockbroker/portainer/docker.sock
    userns:
      user: dockremap
      uid: 0
    allow:
      uids:
      - \"231072-296607\"
      gids: [1]
  flow: {listen: /x, uid: 1, gid: 1}
  'single''q':
    mode: 0o660
";

    fn at(line: usize, column: usize) -> Option<Span> {
        Some(Span { line, column })
    }

    #[test]
    fn finds_nested_keys() {
        let l = Locator::new(TEXT);
        assert_eq!(l.find(&["metrics"]), at(2, 1));
        assert_eq!(l.find(&["metrics", "listen"]), at(3, 3));
        assert_eq!(l.find(&["defaults", "mode"]), at(6, 3));
        assert_eq!(l.find(&["defaults", "drain_timeout"]), at(7, 3));
        assert_eq!(l.find(&["tenants"]), at(9, 1));
        assert_eq!(l.find(&["tenants", "ci-runner"]), at(10, 3));
        assert_eq!(l.find(&["tenants", "ci-runner", "mode"]), at(14, 5));
        assert_eq!(l.find(&["tenants", "portainer.v2", "listen"]), at(18, 5));
        assert_eq!(
            l.find(&["tenants", "portainer.v2", "userns", "uid"]),
            at(21, 7)
        );
        assert_eq!(
            l.find(&["tenants", "portainer.v2", "allow", "gids"]),
            at(25, 7)
        );
        assert_eq!(l.find(&["tenants", "single'q", "mode"]), at(28, 5));
    }

    #[test]
    fn missing_keys_and_fallbacks() {
        let l = Locator::new(TEXT);
        // `uid` exists under another tenant and under userns, not directly here.
        assert_eq!(l.find(&["tenants", "portainer.v2", "uid"]), None);
        // A key of a sibling block is not found in this one.
        assert_eq!(l.find(&["defaults", "listen"]), None);
        assert_eq!(l.find(&["tenants", "nope"]), None);
        // Flow style: the tenant is found, its fields are not.
        assert_eq!(l.find(&["tenants", "flow", "uid"]), None);
        assert_eq!(l.find_nearest(&["tenants", "flow", "uid"]), at(26, 3));
        assert_eq!(l.find_nearest(&["tenants", "ci-runner", "gidd"]), at(10, 3));
        assert_eq!(l.find_nearest(&["nothing", "here"]), None);
        assert_eq!(l.find(&[]), None);
    }

    #[test]
    fn list_items() {
        let text = "\
tenants:
  a:
    access:
      allow:
        - GET /x
        # a comment
        - GOT /y
      deny:
      - GET /z
      -   GET /w
      preset: full
    flow: [1, 2]
";
        let l = Locator::new(text);
        let a = ["tenants", "a", "access", "allow"];
        assert_eq!(l.find_item(&a, 0), at(5, 9));
        assert_eq!(l.find_item(&a, 1), at(7, 9));
        assert_eq!(l.find_item(&a, 2), None);
        let d = ["tenants", "a", "access", "deny"];
        assert_eq!(l.find_item(&d, 0), at(9, 7));
        assert_eq!(l.find_item(&d, 1), at(10, 7));
        assert_eq!(l.find_item(&d, 2), None);
        assert_eq!(l.find_item(&["tenants", "a", "flow"], 0), None);
        assert_eq!(l.find_item(&["tenants", "b"], 0), None);
    }

    #[test]
    fn tenant_of_a_line() {
        let l = Locator::new(TEXT);
        assert_eq!(l.tenant_at_line(9), None); // `tenants:` itself
        assert_eq!(l.tenant_at_line(3), None); // metrics
        assert_eq!(l.tenant_at_line(10).as_deref(), Some("ci-runner"));
        assert_eq!(l.tenant_at_line(14).as_deref(), Some("ci-runner"));
        assert_eq!(l.tenant_at_line(16).as_deref(), Some("portainer.v2"));
        assert_eq!(l.tenant_at_line(24).as_deref(), Some("portainer.v2"));
        assert_eq!(l.tenant_at_line(26).as_deref(), Some("flow"));
        assert_eq!(l.tenant_at_line(28).as_deref(), Some("single'q"));
        assert_eq!(l.tenant_at_line(999), None);
        assert_eq!(l.tenant_at_line(0), None);
    }

    #[test]
    fn keys_of_lines() {
        assert_eq!(leading_key("listen: /x").as_deref(), Some("listen"));
        assert_eq!(leading_key("listen:").as_deref(), Some("listen"));
        assert_eq!(leading_key("listen:/x"), None);
        assert_eq!(leading_key("a:b: c").as_deref(), Some("a:b"));
        assert_eq!(leading_key("\"a: b\": c").as_deref(), Some("a: b"));
        assert_eq!(leading_key("'it''s': c").as_deref(), Some("it's"));
        assert_eq!(leading_key("\"esc\\\"q\": 1").as_deref(), Some("esc\"q"));
        assert_eq!(leading_key("- 1"), None);
        assert_eq!(leading_key("-weird: 1").as_deref(), Some("-weird"));
        assert_eq!(leading_key("text # x: y"), None);
        assert_eq!(leading_key("{a: 1}"), None);
        assert_eq!(leading_key("\"unterminated: 1"), None);
        assert_eq!(leading_key(": x"), None);
    }

    #[test]
    fn odd_input_does_not_panic() {
        for text in [
            "",
            "\u{feff}tenants:\n  a:\n    mode: 1",
            "tenants:\r\n  a:\r\n    mode: 1\r\n",
            "\t\ttenants:\n",
            "é: ü\n  ö:\n",
            "---\ntenants:\n  a:\n...\n",
            "\"",
            "'",
        ] {
            let l = Locator::new(text);
            let _ = l.find(&["tenants", "a", "mode"]);
            let _ = l.find_nearest(&["tenants", "a", "mode"]);
            for line in 0..6 {
                let _ = l.tenant_at_line(line);
            }
        }
        let l = Locator::new("\u{feff}tenants:\r\n  a:\r\n    mode: 1\r\n");
        assert_eq!(l.find(&["tenants", "a", "mode"]), at(3, 5));
    }
}
