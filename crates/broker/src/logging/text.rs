//! The text format's lines, written without `fmt::Arguments` where a field's
//! type allows it.
//!
//! [`Text`] produces exactly what tracing-subscriber's default `Full` format
//! produces with the settings [`super::init`] uses (timestamp, level, span
//! context, target, fields; no ANSI styling, ANSI escapes in messages
//! sanitized): `tests::same_lines_as_the_default_format` logs one set of
//! events through both and compares the text byte for byte. What it does
//! differently is only how: the line is assembled in one buffer, integers go
//! through `itoa`, floats through `ryu` where ryu's text is the same as
//! `{:?}`'s, plain strings are quoted without `str`'s `Debug`, and a message
//! is checked for the characters the default escapes instead of being
//! written through its escaping writer one `char` at a time. The per-connection
//! audit line cost about 9,850 instructions through the default format, about
//! 3,630 through this one (docs/performance.md). Anything unusual — a message with a character to
//! escape, an error value, an event forwarded from the `log` crate — goes
//! through tracing-subscriber's own code, so it cannot come out differently.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::VisitOutput;
use tracing_subscriber::fmt::format::{DefaultVisitor, Format, Full, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The text format's event formatter: tracing-subscriber's default `Full`
/// format (with its default options) with timer `T`, written faster.
pub struct Text<T> {
    timer: T,
    /// The default format, for what [`Text`] leaves to it.
    full: Format<Full, T>,
}

impl<T: FormatTime + Clone> Text<T> {
    /// The format with timer `timer`.
    pub fn new(timer: T) -> Self {
        Self {
            full: tracing_subscriber::fmt::format().with_timer(timer.clone()),
            timer,
        }
    }
}

thread_local! {
    /// The line being assembled on this thread (reused: no allocation per line).
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A line longer than this does not keep its buffer for the next one.
const KEEP_CAPACITY: usize = 16 * 1024;

impl<S, N, T> FormatEvent<S, N> for Text<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` record's level and target are in its fields (tracing-log
        // normalizes them); styled or unsanitized writers are not what
        // `init` sets up. The default format handles those.
        if event.metadata().target() == "log"
            || writer.has_ansi_escapes()
            || !writer.sanitizes_ansi_escapes()
        {
            return self.full.format_event(ctx, writer, event);
        }
        let done = LINE.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                let result = self
                    .line(ctx, &mut line, event)
                    .and_then(|()| writer.write_str(&line));
                if line.capacity() > KEEP_CAPACITY {
                    *line = String::new();
                }
                result
            }
            // Logging from inside a field's `Debug`: a line of its own.
            Err(_) => {
                let mut line = String::new();
                self.line(ctx, &mut line, event)?;
                writer.write_str(&line)
            }
        });
        match done {
            Ok(result) => result,
            // The thread is ending and its buffer is gone.
            Err(_) => self.full.format_event(ctx, writer, event),
        }
    }
}

impl<T: FormatTime> Text<T> {
    /// `event`'s line, as `Format<Full, T>::format_event` writes it.
    fn line<S, N>(
        &self,
        ctx: &FmtContext<'_, S, N>,
        line: &mut String,
        event: &Event<'_>,
    ) -> fmt::Result
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let meta = event.metadata();
        // If the clock cannot be read, the default format says so and goes on.
        if self.timer.format_time(&mut Writer::new(line)).is_err() {
            line.push_str("<unknown time>");
        }
        line.push(' ');
        // The level right-aligned to five characters, then a space.
        line.push_str(match *meta.level() {
            Level::TRACE => "TRACE ",
            Level::DEBUG => "DEBUG ",
            Level::INFO => " INFO ",
            Level::WARN => " WARN ",
            Level::ERROR => "ERROR ",
        });
        // Spans from the root, each `name{fields}:` (braces only with fields).
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                line.push_str(span.metadata().name());
                seen = true;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        line.push('{');
                        line.push_str(fields);
                        line.push('}');
                    }
                }
                line.push(':');
            }
            if seen {
                line.push(' ');
            }
        }
        line.push_str(meta.target());
        line.push_str(": ");
        let mut fields = Fields {
            line,
            is_empty: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        line.push('\n');
        Ok(())
    }
}

/// Writes an event's fields as tracing-subscriber's `DefaultVisitor` does:
/// the message first without a name, then `name=value` with values in their
/// `Debug` form, separated by spaces; `log.*` fields skipped.
struct Fields<'a> {
    line: &'a mut String,
    /// No field written yet (no separator before the next).
    is_empty: bool,
    result: fmt::Result,
}

impl Fields<'_> {
    /// Writes the separator and `name=` (nothing but the separator for the
    /// message); `false` for a field that is not shown.
    #[inline(always)]
    fn name(&mut self, field: &Field) -> bool {
        let name = field.name();
        if name.starts_with("log.") {
            return false;
        }
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.line.push(' ');
        }
        if name != "message" {
            self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
            self.line.push('=');
        }
        true
    }

    /// Hands one field to tracing-subscriber's own visitor, writing into the
    /// same line.
    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>), field: &Field) {
        let mut visitor = DefaultVisitor::new(Writer::new(self.line), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        if !field.name().starts_with("log.") {
            self.is_empty = false;
        }
    }
}

/// `true` if the default format's message sanitizing would leave `text` as
/// it is: it escapes BEL, BS, FF, ESC, DEL and the C1 controls U+0080–U+009F
/// (`0xC2 0x80..=0x9F` in UTF-8). Any control character or `0xC2` sends a
/// message the slow way (a whole-slice fold, which the compiler vectorizes).
fn sanitized_as_is(text: &[u8]) -> bool {
    !text.iter().fold(false, |odd, &b| {
        odd | (b < 0x20) | (b == 0x7f) | (b == 0xc2)
    })
}

/// `true` if `str`'s `Debug` is `text` between double quotes: printable
/// ASCII without `"` and `\`.
fn debug_as_is(text: &str) -> bool {
    text.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// `f64`'s `{:?}` through ryu, where the two agree.
struct Shortest(ryu::Buffer);

impl Shortest {
    fn new() -> Self {
        Self(ryu::Buffer::new())
    }

    /// `value` as `{:?}` writes it, or `None` where ryu's text may differ.
    /// Both write the shortest digits that read back as `value`, the closest
    /// to it if several are as short, in decimal notation from 1e-4 up to
    /// 1e16 (outside it `{:?}` writes `1e-5`, `1e16`). They differ when two
    /// are as short and as close — `value` exactly halfway between them:
    /// `{:?}` rounds the tie up, ryu to even. Exactly halfway means `value`
    /// has exactly one more decimal place than the text, and a binary
    /// fraction with `k` places has `k` decimal places: a text with `f`
    /// places is taken only if `value` has more than `f + 1`.
    fn debug(&mut self, value: f64) -> Option<&str> {
        if !(1e-4..1e16).contains(&value.abs()) {
            return None;
        }
        let bits = value.to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as i64;
        let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
        // value = mantissa × 2^(exponent − 1075).
        let places = 1075 - exponent - i64::from(mantissa.trailing_zeros());
        let text = self.0.format_finite(value);
        // In this range the text has at most 20 places (`0.000` and 17
        // digits), so a tie needs `places` ≤ 21: most values need no count.
        if places > 21 {
            return Some(text);
        }
        let shown = text.len() - text.find('.')? - 1;
        (places > shown as i64 + 1).then_some(text)
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            if sanitized_as_is(value.as_bytes()) {
                self.name(field);
                self.line.push_str(value);
            } else {
                self.by_default(|v| v.record_str(field, value), field);
            }
        } else if self.name(field) {
            if debug_as_is(value) {
                self.line.push('"');
                self.line.push_str(value);
                self.line.push('"');
            } else {
                self.result = write!(self.line, "{value:?}");
            }
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_ok() && self.name(field) {
            self.line.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.result.is_ok() && self.name(field) {
            self.line.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.result.is_ok() && self.name(field) {
            self.line.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.result.is_ok() && self.name(field) {
            match Shortest::new().debug(value) {
                Some(text) => self.line.push_str(text),
                None => self.result = write!(self.line, "{value:?}"),
            }
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_ok() {
            self.by_default(|v| v.record_error(field, value), field);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            // Written as it is; if sanitizing would change it, written again
            // by the default visitor in its place.
            let start = self.line.len();
            let was_empty = self.is_empty;
            self.name(field);
            let text = self.line.len();
            self.result = write!(self.line, "{value:?}");
            if self.result.is_ok() && !sanitized_as_is(&self.line.as_bytes()[text..]) {
                self.line.truncate(start);
                self.is_empty = was_empty;
                self.by_default(|v| v.record_debug(field, value), field);
            }
        } else if self.name(field) {
            self.result = write!(self.line, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing::{debug, error, info, info_span, trace, warn};

    use super::*;

    /// One instant for both formats.
    #[derive(Clone)]
    struct Fixed;

    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-12-05T01:02:03.004005Z")
        }
    }

    /// A clock that cannot be read, after writing half a timestamp.
    #[derive(Clone)]
    struct Broken;

    impl FormatTime for Broken {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-")?;
            Err(fmt::Error)
        }
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Outer(Inner);
    #[derive(Debug)]
    struct Inner;

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("upstream refused: \x1b[31mred\x1b[0m")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("connection refused (os error 111)")
        }
    }
    impl std::error::Error for Inner {}

    struct Loud;

    impl fmt::Debug for Loud {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            info!("from inside a Debug");
            f.write_str("loud")
        }
    }

    /// Logs a set of events like the broker's, and odd ones.
    fn events() {
        let tenant = "web-1";
        let end = "client_closed";
        // The byte relay's audit line, as `listener::log_closed` logs it.
        for (bytes, secs) in [(0u64, 0.009032778f64), (u64::MAX, 12.5), (65, 1e-7)] {
            info!(
                tenant = %tenant, pid = -1i32, uid = 100_000u32, gid = 0u32,
                bytes_upstream = bytes, bytes_downstream = 64u64,
                duration_s = secs, end = end,
                "connection closed: {}", end
            );
        }
        // The policy relay's per-request line.
        let (method, path, verdict, status, reason) =
            ("GET", "/v1.43/containers/json?all=1", "allowed", 200u16, "");
        info!(
            tenant = %tenant, pid = 7i32, uid = 0u32, gid = 0u32,
            method = %method, path = %path, verdict, status, reason,
            "request {verdict}: {method} {path} -> {status}"
        );
        // Messages the default format escapes, or not.
        info!("bell \x07 esc \x1b[2J del \x7f c1 \u{85} \u{9b}");
        info!("quotes \" and \\ and\nnewline, café, \u{a0}nbsp");
        info!(message = "as a str field \x1b]0;title\x07");
        info!(message = "as a plain str field");
        info!(message = 42u64);
        info!(message = -3i64, extra = true);
        info!(message = 0.5f64);
        info!(message = ?Some("debug"));
        info!(message = %"display \u{1b}");
        // Strings.
        for s in [
            "",
            "plain",
            "with space",
            "quote\"",
            "back\\slash",
            "tab\tnl\n",
            "café",
            "\u{301}combining",
            "emoji 🦀",
            "ctrl \x1b \u{85}",
            "it's",
        ] {
            info!(s, "str");
        }
        // Numbers.
        for i in [i64::MIN, -1, 0, 1, i64::MAX] {
            warn!(i, neg = -i128::from(i), "i64");
        }
        for u in [0u64, 7, 10, 99, 100, 12345678901234567890, u64::MAX] {
            debug!(u, wide = u128::from(u) * 1000, "u64");
        }
        for f in [
            0.0f64,
            -0.0,
            1.0,
            -1.25,
            0.1,
            0.3,
            1.0 / 3.0,
            2.0 / 3.0,
            1e-4,
            9.99e-5,
            1e-5,
            0.00012345,
            123456.789,
            1e15,
            9_999_999_999_999_998.0,
            1e16,
            1.5e300,
            5e-324,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.009032778,
            3.0e-3,
            4503599627370497.0,
            1_149_636_667_324_797.0 + 0.25,
            1.0 + 2f64.powi(-17),
        ] {
            trace!(f, "f64");
        }
        for b in [true, false] {
            error!(b, "bool");
        }
        // Debug and Display values, errors, raw identifiers, skipped `log.*`.
        let err = Outer(Inner);
        info!(value = ?vec![1, 2], opt = ?None::<u8>, shown = %"a \x1b b", "values");
        info!(error = %err, "as display");
        info!(
            error = &err as &(dyn std::error::Error + 'static),
            "as error"
        );
        info!(
            error = &Inner as &(dyn std::error::Error + 'static),
            "an error without source"
        );
        info!(r#type = "raw", "raw identifier");
        info!(log.skipped = 1, after = 2, "log field");
        info!(log.skipped = 1, "log field first, message last");
        info!(target: "custom::target", x = 1);
        info!(only = "fields", no = "message");
        info!(bytes = &b"\x00ab"[..], "bytes");
        // A value that logs while it is formatted.
        info!(v = ?Loud, "outer");
        // Inside spans: fields, none, recorded later, nested.
        let outer = info_span!("outer", tenant = %tenant, n = 3, later = tracing::field::Empty);
        let _o = outer.enter();
        info!("in outer");
        outer.record("later", "now \"quoted\"");
        let inner = tracing::debug_span!("inner");
        let _i = inner.enter();
        info!(k = 1.5, "in inner");
        let leaf = info_span!("leaf", why = ?("t", 1));
        leaf.in_scope(|| warn!("in leaf"));
        drop(_i);
        drop(_o);
        info!("after the spans");
    }

    /// The lines `events` produce through `format`.
    fn lines<E>(format: E) -> String
    where
        E: FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::DefaultFields,
            > + Send
            + Sync
            + 'static,
    {
        let capture = Capture::default();
        let out = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .event_format(format)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn same_lines_as_the_default_format() {
        let theirs = lines(tracing_subscriber::fmt::format().with_timer(Fixed));
        let ours = lines(Text::new(Fixed));
        // 82 events (none dropped for a field that failed to format; the one
        // logged while another is formatted goes nowhere), one message with
        // a newline.
        assert_eq!(theirs.lines().count(), 83, "{theirs}");
        for (a, b) in theirs.lines().zip(ours.lines()) {
            assert_eq!(a, b);
        }
        assert_eq!(theirs, ours);
        // The set covers what it is for.
        assert!(theirs.contains("bell \\x07 esc \\x1b[2J"), "{theirs}");
        assert!(theirs.contains("outer{tenant=web-1 n=3 later=\"now \\\"quoted\\\"\"}:inner:"));
    }

    #[test]
    fn an_unreadable_clock_as_the_default_format() {
        let theirs = lines(tracing_subscriber::fmt::format().with_timer(Broken));
        assert!(theirs.starts_with("2026-<unknown time>  INFO "), "{theirs}");
        assert_eq!(theirs, lines(Text::new(Broken)));
    }

    #[test]
    fn floats_as_debug() {
        let check = |v: f64| {
            if let Some(text) = Shortest::new().debug(v) {
                assert_eq!(text, format!("{v:?}"), "{:#x}", v.to_bits());
                true
            } else {
                false
            }
        };
        // Ties, where ryu alone would write `…797.2` and `…312`.
        assert_eq!(
            Shortest::new().debug(-(1_149_636_667_324_797.0 + 0.25)),
            None
        );
        assert_eq!(Shortest::new().debug(1.0 + 2f64.powi(-17)), None);
        assert_eq!(format!("{:?}", 1.0 + 2f64.powi(-17)), "1.0000076293945313");
        // Durations as the audit line has them, and a deterministic spread
        // of every kind of double: most take the fast path, none differs.
        let (mut fast, mut all) = (0, 0);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let duration = Duration::new(x % 100, (x >> 32) as u32 % 1_000_000_000);
            for v in [
                duration.as_secs_f64(),
                f64::from_bits(x),
                (x % 10_000_000) as f64 / 1e6,
                (x >> 11) as f64 / (1u64 << 53) as f64,
                (x >> 12) as f64 + 0.25,
                ((x >> 40) as f64) * 2f64.powi(-((x % 60) as i32)),
            ] {
                all += 1;
                fast += usize::from(check(v));
            }
        }
        assert!(fast > all / 2, "{fast} of {all}");
    }
}
