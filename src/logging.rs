//! Log output: the process's one tracing subscriber (text or JSON; filtered by `RUST_LOG`, else
//! `log.level`; ANSI colours only on a terminal), writing into memory that one background
//! thread moves to buffered stdout (the server) or stderr (one-shot commands, whose stdout is
//! their result). A thread that logs appends its line to one of a few buffers and goes on:
//! when the buffers are full, because whoever reads our output is slow or stuck, the line is
//! dropped and counted (`dropped_lines`, published as `ferry_log_lines_dropped_total`), never
//! waited for. Every request's line (`request_line`) is written straight into those buffers by
//! a formatter of its own, the same bytes tracing would write for it at a fraction of the cost;
//! other lines go through tracing-subscriber with `text`'s plain formatter. This module must
//! not block a caller on the sink, and it is initialised once, by the binary's `main` (tests
//! that build the app in process never call it; their request lines go to tracing, which has
//! no subscriber there).

use std::cell::RefCell;
use std::io::{BufWriter, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{Config, LogFormat};

/// Buffers lines are appended to. Request lines (`request_line`) use all but the first, a thread
/// keeping to one, so threads rarely meet on a lock; every other line goes to the first, so
/// those keep their order (and are written after the request lines taken with them: the last
/// line, "shutdown complete", stays last). Lines of different threads may otherwise come out up
/// to `LINGER` apart from the order they were logged in; their timestamps say when.
const SHARDS: usize = 8;

/// Bytes one buffer holds before its lines are dropped: 8 x 512 KiB is ~16 000 request lines,
/// a tenth of a second of a saturated server's (~120k/s on two cores), many seconds at any real
/// traffic: enough to ride out a sink's hiccup (a log shipper restarting, a terminal being
/// scrolled) without dropping, small enough that a dead reader costs little memory.
const SHARD_BYTES: usize = 512 * 1024;

/// Bytes the writer thread gathers before one write(2): one pipe's worth (64 KiB on Linux).
const WRITE_BUFFER: usize = 64 * 1024;

/// How long the writer thread rests after writing before it takes the next lines. Lines keep
/// piling into the buffers meanwhile and go out together; a line that comes while the writer is
/// idle still goes out at once.
const LINGER: Duration = Duration::from_millis(5);

/// How long shutdown waits for buffered lines to reach the sink (a sink nobody reads would
/// otherwise hold the process forever).
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The server: its output is its log.
    Stdout,
    /// One-shot commands, which print their result on stdout.
    Stderr,
}

/// Lines waiting for the writer thread.
struct Lines {
    shards: [Mutex<Vec<u8>>; SHARDS],
    dropped: AtomicU64,
    /// The writer found nothing to write and waits to be told.
    parked: AtomicBool,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            shards: std::array::from_fn(|_| Mutex::new(Vec::new())),
            dropped: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    /// Append one request line to this thread's buffer.
    fn push_request(&self, line: &[u8]) {
        thread_local! {
            static SHARD: usize = {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                1 + NEXT.fetch_add(1, Ordering::Relaxed) % (SHARDS - 1)
            };
        }
        self.push(SHARD.with(|s| *s), line);
    }

    /// Append one whole line to buffer `index` (or drop it, counted, when the buffer is full).
    fn push(&self, index: usize, line: &[u8]) {
        let shard = &self.shards[index];
        {
            let mut buf = shard.lock().unwrap_or_else(|p| p.into_inner());
            if buf.len() + line.len() > SHARD_BYTES {
                drop(buf);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            buf.extend_from_slice(line);
        }
        if self.parked.load(Ordering::Acquire) {
            let _held = self.stop.lock().unwrap_or_else(|p| p.into_inner());
            self.wake.notify_one();
        }
    }

    /// Move every buffered line to `out`; whether there were any.
    fn drain(&self, out: &mut dyn Write, spare: &mut [Vec<u8>]) -> bool {
        let mut wrote = false;
        // Request lines first, then the others (see `SHARDS`).
        for i in (1..SHARDS).chain([0]) {
            std::mem::swap(&mut *self.shards[i].lock().unwrap_or_else(|p| p.into_inner()), &mut spare[i]);
            if !spare[i].is_empty() {
                // A reader that went away must not stop us from draining (and dropping).
                let _ = out.write_all(&spare[i]);
                spare[i].clear();
                wrote = true;
            }
        }
        if wrote {
            let _ = out.flush();
        }
        wrote
    }

    /// The writer thread: move lines to `out` until told to stop, then write what is left.
    fn write_out(&self, out: &mut dyn Write) {
        let mut spare: Vec<Vec<u8>> = (0..SHARDS).map(|_| Vec::new()).collect();
        loop {
            if self.drain(out, &mut spare) {
                std::thread::sleep(LINGER);
                continue;
            }
            let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner());
            if *stop {
                drop(stop);
                // Lines pushed after the pass above, before the stop was set.
                self.drain(out, &mut spare);
                return;
            }
            self.parked.store(true, Ordering::Release);
            // A line pushed between the last look and `parked` waits at most this long.
            let (stop, _) = self.wake.wait_timeout(stop, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner());
            self.parked.store(false, Ordering::Release);
            drop(stop);
        }
    }
}

/// The sink, once logging is initialised.
static LINES: OnceLock<Arc<Lines>> = OnceLock::new();

/// Set when request lines take the fast path: plain text, no colours, and the filter wants
/// them (decided once, after the subscriber is installed: the filter never changes).
static FAST_REQUESTS: AtomicBool = AtomicBool::new(false);

/// Hands tracing-subscriber writers that append to `Lines`.
#[derive(Clone)]
struct ToLines(Arc<Lines>);

/// One event's line: tracing-subscriber formats it whole, then writes it at once.
struct LineWriter<'a>(&'a Lines);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for ToLines {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter(&self.0)
    }
}

/// Keeps the writer thread going; dropping it writes the lines still buffered (waiting at most
/// `FLUSH_WAIT`). Hold it until the command has finished, including its last log line.
#[must_use = "log output stops when the guard is dropped"]
pub struct LogGuard {
    lines: Arc<Lines>,
    finished: Option<std::sync::mpsc::Receiver<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        *self.lines.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.lines.wake.notify_one();
        if let Some(finished) = self.finished.take() {
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
    let lines = LINES.get_or_init(|| Arc::new(Lines::new())).clone();
    let (done, finished) = std::sync::mpsc::channel();
    let writer = lines.clone();
    let started = std::thread::Builder::new().name("ferry-log".into()).spawn(move || {
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, out);
        writer.write_out(&mut out);
        let _ = out.flush();
        let _ = done.send(());
    });
    // RUST_LOG wins when it is a valid filter, as tracing's own `try_from_default_env` would have it.
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| EnvFilter::try_new(s).is_ok())
        .unwrap_or_else(|| config.log.level.clone());
    // A bare level means the same to both filters, but `LevelFilter` costs nothing per span,
    // where `EnvFilter` takes a lock on every span's enter, exit, record and close.
    let bare = ["off", "error", "warn", "info", "debug", "trace"].iter().any(|l| spec.trim().eq_ignore_ascii_case(l));
    let to = ToLines(lines.clone());
    match spec.trim().parse::<LevelFilter>() {
        Ok(level) if bare => install(level, config.log.format, ansi, to),
        _ => install(EnvFilter::new(&spec), config.log.format, ansi, to),
    }
    let wanted = tracing::enabled!(target: "ferry::http::edge", tracing::Level::INFO);
    FAST_REQUESTS.store(config.log.format == LogFormat::Text && !ansi && wanted, Ordering::Relaxed);
    LogGuard { lines, finished: started.ok().map(|_| finished) }
}

fn install<F>(filter: F, format: LogFormat, ansi: bool, writer: ToLines)
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

/// Log lines dropped so far because the sink did not keep up; 0 when logging was never
/// initialised (as in tests that build the app in process).
pub fn dropped_lines() -> u64 {
    LINES.get().map_or(0, |l| l.dropped.load(Ordering::Relaxed))
}

/// A value that `{:?}` prints as itself in quotes (no escaping needed).
fn plain(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// The line every request gets: exactly what
/// `tracing::info!(method, route, request_id, status, latency_ms, "finished processing request")`
/// writes in plain text, built here without tracing's machinery, which cost a request line
/// three times as much (most of a tenth of a saturated server's throughput). Anything unusual
/// (JSON or coloured output, values that need escaping, a filter that does not want the line,
/// logging not initialised) goes through tracing itself.
pub fn request_line(method: &str, route: &str, request_id: &str, status: u16, latency_ms: f64) {
    thread_local! {
        static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let fast = FAST_REQUESTS.load(Ordering::Relaxed) && plain(method) && plain(route) && plain(request_id);
    let lines = LINES.get().filter(|_| fast);
    let slow = || {
        let latency_ms = Millis(latency_ms);
        tracing::info!(target: "ferry::http::edge", method, route, request_id, status, ?latency_ms, "finished processing request");
    };
    let Some(lines) = lines else { return slow() };
    LINE.with_borrow_mut(|line| {
        line.clear();
        let mut stamp = [0u8; 27];
        if !text::timestamp_bytes(&mut stamp) {
            return slow();
        }
        write_request_line(line, &stamp, method, route, request_id, status, latency_ms);
        lines.push_request(line);
    });
}

/// `request_line`'s bytes (every value plain: see `plain`).
fn write_request_line(
    line: &mut Vec<u8>,
    stamp: &[u8; 27],
    method: &str,
    route: &str,
    request_id: &str,
    status: u16,
    latency_ms: f64,
) {
    line.extend_from_slice(stamp);
    line.extend_from_slice(b"  INFO finished processing request method=\"");
    line.extend_from_slice(method.as_bytes());
    line.extend_from_slice(b"\" route=\"");
    line.extend_from_slice(route.as_bytes());
    line.extend_from_slice(b"\" request_id=\"");
    line.extend_from_slice(request_id.as_bytes());
    line.extend_from_slice(b"\" status=");
    push_digits(line, u64::from(status));
    line.extend_from_slice(b" latency_ms=");
    Millis(latency_ms).push(line);
    line.push(b'\n');
}

/// Milliseconds to the microsecond, written `12.345`: what a request line needs, cheaper to
/// write than a float's shortest form.
struct Millis(f64);

impl Millis {
    fn micros(&self) -> u64 {
        (self.0 * 1000.0).round().max(0.0) as u64
    }

    fn push(&self, out: &mut Vec<u8>) {
        let micros = self.micros();
        push_digits(out, micros / 1000);
        out.push(b'.');
        let frac = micros % 1000;
        out.extend_from_slice(&[b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8]);
    }
}

impl std::fmt::Debug for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = self.micros();
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

/// `n` in decimal.
fn push_digits(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
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

    /// Now as RFC 3339 UTC with microseconds (`2026-12-03T10:11:12.123456Z`), as
    /// tracing-subscriber's `SystemTime` writes it; `false` for the years it writes differently
    /// (before 1970, after 9999).
    pub(super) fn timestamp_bytes(out: &mut [u8; 27]) -> bool {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let Some(since) = since.ok().filter(|d| d.as_secs() < 253_402_300_800) else { return false };
        let secs = since.as_secs();
        let (cached, mut second) = SECOND.get();
        if cached != secs {
            let Some(t) = chrono::DateTime::from_timestamp(secs as i64, 0) else { return false };
            let mut s = String::with_capacity(19);
            if write!(s, "{}", t.format("%Y-%m-%dT%H:%M:%S")).is_err() || s.len() != 19 {
                return false;
            }
            second.copy_from_slice(s.as_bytes());
            SECOND.set((secs, second));
        }
        out[..19].copy_from_slice(&second);
        out[19..].copy_from_slice(b".000000Z");
        let mut micros = since.subsec_micros();
        for digit in out[20..26].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        true
    }

    fn timestamp(w: &mut Writer<'_>) -> fmt::Result {
        let mut stamp = [0u8; 27];
        if !timestamp_bytes(&mut stamp) {
            return SystemTime.format_time(w);
        }
        // ASCII by construction.
        w.write_str(std::str::from_utf8(&stamp).map_err(|_| fmt::Error)?)
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
    fn a_request_line_is_the_bytes_tracing_writes_for_the_same_fields() {
        let out = Captured::default();
        let layer = tracing_subscriber::fmt::layer().with_target(false).with_ansi(false).with_writer(out.clone());
        let registry = tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::INFO);
        let cases = [
            ("GET", "/api/clip/{id}/info", "0123456789abcdef", 200u16, 0.123_f64),
            ("POST", "/api/upload/chunk/{upload_id}/{chunk}", "trace-me-123", 413, 1234.5),
            ("DELETE", "unmatched", "-", 404, 1e-7),
            ("GET", "/health", "x", 200, 0.0005),
            ("GET", "/health", "y", 200, 98765.4321),
        ];
        tracing::subscriber::with_default(registry.with(layer), || {
            for (method, route, request_id, status, latency_ms) in cases {
                let latency_ms = super::Millis(latency_ms);
                tracing::info!(method, route, request_id, status, ?latency_ms, "finished processing request");
            }
        });
        let reference = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let stamp = *b"2026-12-03T10:11:12.123456Z";
        for ((method, route, id, status, latency), want) in cases.into_iter().zip(reference.lines()) {
            let mut line = Vec::new();
            super::write_request_line(&mut line, &stamp, method, route, id, status, latency);
            let line = String::from_utf8(line).unwrap();
            assert_eq!(line.trim_end()[27..], want[27..]);
        }
    }

    #[test]
    fn a_full_buffer_drops_and_counts_lines_and_the_writer_empties_the_rest() {
        let lines = super::Lines::new();
        let line = [b'x'; 1000];
        for _ in 0..(super::SHARD_BYTES / 1000 + 10) {
            lines.push(0, &line);
        }
        assert_eq!(lines.dropped.load(std::sync::atomic::Ordering::Relaxed), 10);
        *lines.stop.lock().unwrap() = true;
        let mut out = Vec::new();
        lines.write_out(&mut out);
        assert_eq!(out.len(), super::SHARD_BYTES / 1000 * 1000);
    }

    #[test]
    fn dropped_lines_is_zero_without_logging() {
        assert_eq!(super::dropped_lines(), 0);
    }
}
