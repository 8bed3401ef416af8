//! Log output: the process's one tracing subscriber (text or JSON; filtered by `RUST_LOG`, else
//! `log.level`; ANSI colours only on a terminal), writing through a bounded queue to one
//! background thread that owns a buffered stdout (the server) or stderr (one-shot commands,
//! whose stdout is their result). A request's thread only formats its line and hands it over:
//! when the queue is full, because whoever reads our output is slow or stuck, the line is
//! dropped and counted (`dropped_lines`, published as `ferry_log_lines_dropped_total`), never
//! waited for. Plain text is formatted by `text`, byte for byte the line tracing-subscriber's
//! own formatter writes, at less cost. This module must not block a caller on the sink, and it
//! is initialised once, by the binary's `main` (tests that build the app in process never call
//! it).

use std::io::{BufWriter, IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use tracing::Subscriber;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{Config, LogFormat};

/// Lines held between the threads that log and the writer thread. A line is ~150–250 bytes, so a
/// full queue is 3–4 MiB (plus 512 KiB of slots the channel allocates up front), against ~25 MiB
/// for tracing-appender's default of 128,000; and it is a fifth of a second of a saturated
/// server's request lines (~90k/s on two cores), or many seconds at any real traffic: enough to
/// ride out a sink's hiccup (a log shipper restarting, a terminal being scrolled) without
/// dropping, small enough that a dead reader costs little memory.
const BUFFERED_LINES: usize = 16_384;

/// Bytes the writer thread gathers before one write(2): one pipe's worth (64 KiB on Linux).
const WRITE_BUFFER: usize = 64 * 1024;

/// How long the writer thread rests after each flush before it takes the next lines. Without
/// the rest it empties the queue as fast as lines come and parks on it, so nearly every line's
/// sender pays a futex wake-up (and the writer a context switch): a sixth of a saturated
/// server's throughput on two cores. While it rests, senders only fill the queue (5 ms is under
/// a thousand lines at full load, far from `BUFFERED_LINES`); a line that comes while it is idle
/// still goes out at once.
const LINGER: Duration = Duration::from_millis(5);

/// How long shutdown waits for queued lines to reach the sink. tracing-appender's guard waits
/// at most 0.1 s to queue its shutdown message and 1 s for the writer thread to take it; but
/// when the queue is full it reports that with `println!`, which blocks for good if our stdout
/// is a pipe nobody reads. So the guard is dropped on a helper thread, and the process leaves
/// after this long whatever happened to it.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// The writer's count of dropped lines, once logging is initialised.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The server: its output is its log.
    Stdout,
    /// One-shot commands, which print their result on stdout.
    Stderr,
}

/// Keeps the writer thread alive; dropping it flushes the lines still queued (bounded by
/// `FLUSH_WAIT`). Hold it until the command has finished, including its last log line.
#[must_use = "log output stops when the guard is dropped"]
pub struct LogGuard(Option<WorkerGuard>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(worker) = self.0.take() else { return };
        let (done, finished) = std::sync::mpsc::channel();
        // If the thread cannot start, the closure (and with it the guard) is dropped here.
        let flusher = std::thread::Builder::new().name("ferry-log-flush".into()).spawn(move || {
            drop(worker);
            let _ = done.send(());
        });
        if flusher.is_ok() {
            let _ = finished.recv_timeout(FLUSH_WAIT);
        }
    }
}

/// Install the global subscriber writing to `sink`. Call once, before anything logs.
pub fn init(config: &Config, sink: Sink) -> LogGuard {
    let (ansi, out): (bool, Box<dyn Write + Send>) = match sink {
        Sink::Stdout => (std::io::stdout().is_terminal(), Box::new(std::io::stdout())),
        Sink::Stderr => (std::io::stderr().is_terminal(), Box::new(std::io::stderr())),
    };
    // The worker writes every line it finds queued into this buffer and flushes once the queue
    // is empty (tracing-appender 0.2.5, `Worker::work`: blocking `recv`, `try_recv` until
    // empty, then `flush`), so a line waits in memory only while more are arriving; an idle
    // server's lines reach the sink at once, and a busy one's in 64 KiB writes.
    let out = Linger { inner: BufWriter::with_capacity(WRITE_BUFFER, out), rest: LINGER };
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("ferry-log")
        .finish(out);
    let _ = DROPPED.set(writer.error_counter());
    // RUST_LOG wins when it is a valid filter, as tracing's own `try_from_default_env` would have it.
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| EnvFilter::try_new(s).is_ok())
        .unwrap_or_else(|| config.log.level.clone());
    // A bare level means the same to both filters, but `LevelFilter` costs nothing per span,
    // where `EnvFilter` takes a lock on every span's enter, exit, record and close.
    let bare = ["off", "error", "warn", "info", "debug", "trace"].iter().any(|l| spec.trim().eq_ignore_ascii_case(l));
    match spec.trim().parse::<LevelFilter>() {
        Ok(level) if bare => install(level, config.log.format, ansi, writer),
        _ => install(EnvFilter::new(&spec), config.log.format, ansi, writer),
    }
    LogGuard(Some(worker))
}

fn install<F>(filter: F, format: LogFormat, ansi: bool, writer: NonBlocking)
where
    F: Layer<Registry> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_target(false).with_ansi(ansi).with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter);
    // `try_init`: a subscriber installed before (ferry installs none) keeps its place.
    let _ = match format {
        // Colours come from tracing-subscriber's own formatter; `text` writes plain lines.
        LogFormat::Text if ansi => registry.with(layer).try_init(),
        LogFormat::Text => registry.with(text_layer(layer)).try_init(),
        LogFormat::Json => registry.with(layer.json()).try_init(),
    };
}

/// `layer` with the plain-text formatter.
fn text_layer<S, W>(
    layer: tracing_subscriber::fmt::Layer<
        S,
        tracing_subscriber::fmt::format::DefaultFields,
        tracing_subscriber::fmt::format::Format,
        W,
    >,
) -> tracing_subscriber::fmt::Layer<S, text::Fields, text::Line, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + 'static,
{
    layer.fmt_fields(text::Fields).event_format(text::Line)
}

/// A writer whose `flush` rests for `rest` after flushing (see `LINGER`).
struct Linger<W> {
    inner: W,
    rest: Duration,
}

impl<W: Write> Write for Linger<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()?;
        std::thread::sleep(self.rest);
        Ok(())
    }
}

/// Log lines dropped so far because the sink did not keep up; 0 when logging was never
/// initialised (as in tests that build the app in process).
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Plain text lines, the same bytes as tracing-subscriber's default formatter without colours
/// (`Format<Full>` with `DefaultFields`, target off): `<time>  INFO span{fields}: message
/// fields`. Its generic `write!` paths (a colour `Style` painted around every name, `=` and
/// level even when colours are off; a timestamp computed from scratch; every message copied
/// char by char through its escaping writer) took about a tenth of a saturated server's CPU;
/// here plain values are copied whole, and anything unusual (errors, values that need escaping)
/// takes tracing-subscriber's own path. The tests below hold the two to the same output.
mod text {
    use std::cell::Cell;
    use std::fmt::{self, Write as _};

    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::field::{RecordFields, VisitOutput};
    use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
    use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
    use tracing_subscriber::registry::LookupSpan;

    /// The event formatter.
    pub struct Line;

    /// The field formatter, for events and spans alike.
    pub struct Fields;

    thread_local! {
        /// The current second, formatted (`2026-12-03T10:11:12`), per thread.
        static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
    }

    /// RFC 3339 UTC with microseconds, as tracing-subscriber's `SystemTime` writes it.
    fn timestamp(w: &mut Writer<'_>) -> fmt::Result {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        // Before 1970 or after 9999, the years it writes differently.
        let Some(since) = since.ok().filter(|d| d.as_secs() < 253_402_300_800) else {
            return SystemTime.format_time(w);
        };
        let secs = since.as_secs();
        let (cached, mut second) = SECOND.get();
        if cached != secs {
            let Some(t) = chrono::DateTime::from_timestamp(secs as i64, 0) else { return SystemTime.format_time(w) };
            let mut s = String::with_capacity(19);
            write!(s, "{}", t.format("%Y-%m-%dT%H:%M:%S"))?;
            second.copy_from_slice(s.as_bytes());
            SECOND.set((secs, second));
        }
        let mut micros = since.subsec_micros();
        let mut tail = *b".000000Z";
        for digit in tail[1..7].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        // Both are ASCII.
        w.write_str(std::str::from_utf8(&second).map_err(|_| fmt::Error)?)?;
        w.write_str(std::str::from_utf8(&tail).map_err(|_| fmt::Error)?)
    }

    impl<S, N> FormatEvent<S, N> for Line
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
            timestamp(&mut writer)?;
            writer.write_str(match *event.metadata().level() {
                Level::TRACE => " TRACE ",
                Level::DEBUG => " DEBUG ",
                Level::INFO => "  INFO ",
                Level::WARN => "  WARN ",
                Level::ERROR => " ERROR ",
            })?;
            if let Some(scope) = ctx.event_scope() {
                let mut any = false;
                for span in scope.from_root() {
                    writer.write_str(span.metadata().name())?;
                    any = true;
                    let ext = span.extensions();
                    if let Some(fields) = ext.get::<FormattedFields<N>>()
                        && !fields.is_empty()
                    {
                        writer.write_char('{')?;
                        writer.write_str(fields)?;
                        writer.write_char('}')?;
                    }
                    writer.write_char(':')?;
                }
                if any {
                    writer.write_char(' ')?;
                }
            }
            ctx.format_fields(writer.by_ref(), event)?;
            writer.write_char('\n')
        }
    }

    impl<'w> FormatFields<'w> for Fields {
        fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
            let mut visitor = Visitor { writer, is_empty: true, result: Ok(()) };
            fields.record(&mut visitor);
            visitor.result
        }
    }

    /// `DefaultVisitor`'s output: the message bare (control characters escaped), other fields
    /// `name=value` with the value's `Debug`, a space between, `log.*` fields left out.
    struct Visitor<'a> {
        writer: Writer<'a>,
        is_empty: bool,
        result: fmt::Result,
    }

    impl Visitor<'_> {
        fn skips(&self, field: &Field) -> bool {
            self.result.is_err() || field.name().starts_with("log.")
        }

        fn pad(&mut self) -> fmt::Result {
            if std::mem::replace(&mut self.is_empty, false) { Ok(()) } else { self.writer.write_char(' ') }
        }

        /// `name=`, after the separating space.
        fn name(&mut self, field: &Field) -> fmt::Result {
            self.pad()?;
            let name = field.name();
            self.writer.write_str(name.strip_prefix("r#").unwrap_or(name))?;
            self.writer.write_char('=')
        }

        fn message(&mut self, value: &dyn fmt::Debug) -> fmt::Result {
            self.pad()?;
            let sanitize = self.writer.sanitizes_ansi_escapes();
            write!(Escaping { inner: &mut self.writer, sanitize }, "{value:?}")
        }
    }

    impl Visit for Visitor<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            if self.skips(field) {
                return;
            }
            self.result = if field.name() == "message" {
                self.message(&format_args!("{value}"))
            } else if value.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
                // `{:?}` of a string this plain is the string in quotes.
                self.name(field).and_then(|()| {
                    self.writer.write_char('"')?;
                    self.writer.write_str(value)?;
                    self.writer.write_char('"')
                })
            } else {
                self.name(field).and_then(|()| write!(self.writer, "{value:?}"))
            };
        }

        fn record_u64(&mut self, field: &Field, value: u64) {
            self.record_debug(field, &value)
        }

        fn record_i64(&mut self, field: &Field, value: i64) {
            self.record_debug(field, &value)
        }

        fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
            if self.skips(field) {
                return;
            }
            // Rare, and its source list has its own layout: tracing-subscriber writes it.
            let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
            visitor.record_error(field, value);
            self.result = visitor.finish();
            self.is_empty = false;
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if self.skips(field) {
                return;
            }
            self.result = if field.name() == "message" {
                self.message(value)
            } else {
                self.name(field).and_then(|()| write!(self.writer, "{value:?}"))
            };
        }
    }

    /// tracing-subscriber's escaping of messages (its `EscapingWriter`): characters that can
    /// drive a terminal are written as escapes; text without any is copied whole.
    struct Escaping<'a, 'w> {
        inner: &'a mut Writer<'w>,
        sanitize: bool,
    }

    impl fmt::Write for Escaping<'_, '_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            if !self.sanitize || s.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t' || b == b'\n' || b == b'\r')
            {
                return self.inner.write_str(s);
            }
            for ch in s.chars() {
                match ch {
                    '\x1b' => self.inner.write_str("\\x1b")?,
                    '\x07' => self.inner.write_str("\\x07")?,
                    '\x08' => self.inner.write_str("\\x08")?,
                    '\x0c' => self.inner.write_str("\\x0c")?,
                    '\x7f' => self.inner.write_str("\\x7f")?,
                    ch if (0x80..=0x9f).contains(&(ch as u32)) => write!(self.inner, "\\u{{{:x}}}", ch as u32)?,
                    _ => self.inner.write_char(ch)?,
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Failed(&'static str, Option<Box<Failed>>);

    impl std::fmt::Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Failed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    /// Everything the server logs, and what it might: every field type, values that need
    /// quoting or escaping, nested and late-recorded spans, every level.
    fn emit() {
        tracing::info!("listening");
        let span = tracing::info_span!(
            "request",
            method = %"GET",
            route = tracing::field::Empty,
            request_id = "0123456789abcdef",
        );
        span.record("route", "/api/clip/{id}/info");
        span.in_scope(|| {
            tracing::info!(status = 200u64, latency_ms = 0.123_f64, "finished processing request");
            tracing::warn!(delta = -3i64, ok = true, big = 1e21_f64, whole = 1.0_f64, nan = f64::NAN, "numbers");
            let inner = tracing::info_span!("inner");
            inner.in_scope(|| tracing::error!(r#type = "clip", "nested \"quoted\" \\ message"));
            tracing::debug!(text = "tab\there \"q\" \\ é \u{1b}[31m", "fields that need escaping");
        });
        tracing::info!(note = ?Some("debug"), addr = %"127.0.0.1:80", "display and debug");
        tracing::info!("control \u{1b}[2J \u{7} \u{8} \u{c} \u{7f} \u{85} characters, {} and é", 42);
        let err = Failed("outer", Some(Box::new(Failed("inner", None))));
        tracing::error!(error = &err as &(dyn std::error::Error + 'static), "failed");
        tracing::error!(error = &Failed("alone", None) as &(dyn std::error::Error + 'static));
        tracing::trace!(message = 7u64, "log.target" = "skipped", tail = "x");
        tracing::info!(empty = "", "");
    }

    fn capture(fast: bool) -> String {
        let out = Captured::default();
        let layer = tracing_subscriber::fmt::layer().with_target(false).with_ansi(false).with_writer(out.clone());
        let registry = tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::TRACE);
        if fast {
            tracing::subscriber::with_default(registry.with(super::text_layer(layer)), emit);
        } else {
            tracing::subscriber::with_default(registry.with(layer), emit);
        }
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn plain_text_lines_are_the_bytes_tracing_subscriber_writes_after_the_timestamp() {
        let (fast, reference) = (capture(true), capture(false));
        let strip = |s: &str| s.lines().map(|l| l[27..].to_owned()).collect::<Vec<_>>();
        assert_eq!(strip(&fast), strip(&reference));
        assert_eq!(fast.lines().count(), 11);
    }

    #[test]
    fn timestamps_are_utc_to_the_microsecond_and_current() {
        let before = chrono::Utc::now();
        let fast = capture(true);
        let after = chrono::Utc::now();
        for line in fast.lines() {
            let (stamp, rest) = line.split_at(27);
            assert!(rest.starts_with(' '), "{line}");
            assert_eq!(stamp.len(), "2026-12-03T10:11:12.123456Z".len());
            let t = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
            assert!(
                before.timestamp_micros() <= t.timestamp_micros() && t.timestamp_micros() <= after.timestamp_micros()
            );
        }
    }

    #[test]
    fn dropped_lines_is_zero_without_logging() {
        assert_eq!(super::dropped_lines(), 0);
    }
}
