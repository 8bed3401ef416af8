//! The browser UI, embedded at build time (build.rs): the app shell for `/`, `/clip/{id}` and
//! `/file/{id}`, the service worker at the root scope (`/sw.js`, so it may serve the streamed
//! downloads of every page), and the assets under `/assets/<version>/`. Each answer carries a
//! strong ETag per representation (304 on `If-None-Match`), the brotli or gzip form compressed
//! at build time when the client takes it, immutable caching for the current asset version and
//! `no-cache` for everything else, and the page security policy. Holds none of the UI's logic.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::wire;

mod embedded {
    /// One file of `static/`, as build.rs embedded it.
    pub struct StaticFile {
        /// Relative to `static/`, `/`-separated.
        pub path: &'static str,
        pub content_type: &'static str,
        /// Hash of the identity bytes; each representation's ETag is derived from it.
        pub tag: &'static str,
        pub identity: &'static [u8],
        pub br: Option<&'static [u8]>,
        pub gzip: Option<&'static [u8]>,
    }
    include!(concat!(env!("OUT_DIR"), "/static_files.rs"));
}

use embedded::{FILES, StaticFile, VERSION};

/// The policy of every UI response: this origin's scripts, styles and connections only, no
/// inline code, no plugins, never framed. The service worker's own response carries it too:
/// a worker runs under the policy its script was served with.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; worker-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

fn file(path: &str) -> Option<&'static StaticFile> {
    FILES.iter().find(|f| f.path == path)
}

/// Whether Accept-Encoding takes `coding` (q > 0, by name or by `*`).
fn accepts(accept: &str, coding: &str) -> bool {
    let mut star = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case(coding) {
            return q > 0.0;
        }
        if name == "*" {
            star = Some(q > 0.0);
        }
    }
    star.unwrap_or(false)
}

/// Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 §13.1.2).
fn matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The answer for `f`: the best representation the client takes, or 304.
fn serve(f: &'static StaticFile, headers: &HeaderMap, cache: &'static str) -> Response {
    let accept = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (bytes, coding) = match (f.br, f.gzip) {
        (Some(br), _) if accepts(accept, "br") => (br, Some("br")),
        (_, Some(gz)) if accepts(accept, "gzip") => (gz, Some("gzip")),
        _ => (f.identity, None),
    };
    let etag = match coding {
        Some(c) => format!("\"{}-{c}\"", f.tag),
        None => format!("\"{}\"", f.tag),
    };
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| matches(v, &etag));
    let mut res = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { Response::new(Body::from(bytes)) };
    let h = res.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(f.content_type));
        if let Some(c) = coding {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
        }
    }
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex tags are valid header values"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if f.br.is_some() || f.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    res
}

/// `/`, `/clip/{id}`, `/file/{id}`: the app shell. Its title names no clip; the page reads the
/// id from its own URL.
#[utoipa::path(get, path = "/", tag = "ui", responses((status = 200, description = "The browser UI", content_type = "text/html", body = String), (status = 304, description = "Not modified")))]
pub async fn shell(headers: HeaderMap) -> Response {
    let mut res = serve(file("index.html").expect("static/index.html is embedded"), &headers, REVALIDATE);
    let h = res.headers_mut();
    h.insert(HeaderName::from_static("x-robots-tag"), HeaderValue::from_static("noindex, nofollow"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    );
    res
}

/// `/clip/{id}`: the shell, which opens the clip.
#[utoipa::path(get, path = "/clip/{id}", tag = "ui", params(("id" = String, Path, description = "Read by the page, never by the server")),
    responses((status = 200, description = "The browser UI, which opens the clip", content_type = "text/html", body = String), (status = 304, description = "Not modified")))]
pub async fn shell_clip(headers: HeaderMap) -> Response {
    shell(headers).await
}

/// `/file/{id}`: the shell, which opens the file.
#[utoipa::path(get, path = "/file/{id}", tag = "ui", params(("id" = String, Path, description = "Read by the page, never by the server")),
    responses((status = 200, description = "The browser UI, which opens the file", content_type = "text/html", body = String), (status = 304, description = "Not modified")))]
pub async fn shell_file(headers: HeaderMap) -> Response {
    shell(headers).await
}

/// `/sw.js`: the service worker, revalidated on every update check.
#[utoipa::path(get, path = "/sw.js", tag = "ui", responses((status = 200, description = "The service worker", content_type = "text/javascript", body = String), (status = 304, description = "Not modified")))]
pub async fn service_worker(headers: HeaderMap) -> Response {
    serve(file("sw.js").expect("static/sw.js is embedded"), &headers, REVALIDATE)
}

/// Bytes of a share that reached the server read and dropped before it answers; past this, it
/// answers at once and closes the connection (a browser may then show a reset, not the page).
const SHARE_DRAIN: usize = 32 << 20;

/// `POST /share-target`: where the web app manifest's share target posts what a phone shares
/// to ferry. The service worker takes that request in the browser; one that reaches the server
/// found no worker to take it, so the files are not here. The answer sends the page to say so
/// (`/?shared=lost`). The body is read and dropped (never kept) up to SHARE_DRAIN, so the
/// browser gets to read the answer; a larger one is cut off.
#[utoipa::path(post, path = "/share-target", tag = "ui",
    responses((status = 303, description = "To the page, which asks for the files again")))]
pub async fn share_target(body: Body) -> Response {
    use futures_util::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    let mut whole = false;
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(bytes) if seen + bytes.len() <= SHARE_DRAIN => seen += bytes.len(),
            _ => break,
        }
    }
    if seen <= SHARE_DRAIN && stream.next().await.is_none() {
        whole = true;
    }
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/?shared=lost"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !whole {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// `/robots.txt`: shared links are capabilities; nothing here is for indexing.
#[utoipa::path(get, path = "/robots.txt", tag = "ui", responses((status = 200, description = "Disallow everything", content_type = "text/plain", body = String), (status = 304, description = "Not modified")))]
pub async fn robots(headers: HeaderMap) -> Response {
    serve(file("robots.txt").expect("static/robots.txt is embedded"), &headers, REVALIDATE)
}

/// `/assets/{version}/{*path}`: immutable under the current version; an older page asking for
/// its version gets today's file, revalidated, rather than a broken page.
#[utoipa::path(get, path = "/assets/{version}/{path}", tag = "ui",
    params(("version" = String, Path, description = "The build's asset version"), ("path" = String, Path, description = "The file under static/")),
    responses((status = 200, description = "A file of the browser UI", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "Not modified"), (status = 404, description = "No such file", body = wire::ErrorBody)))]
pub async fn asset(Path((version, path)): Path<(String, String)>, headers: HeaderMap) -> Result<Response, ApiError> {
    let root_only = ["index.html", "sw.js", "robots.txt"];
    let f = file(&path).filter(|f| !root_only.contains(&f.path)).ok_or(ApiError::NotFound)?;
    Ok(serve(f, &headers, if version == VERSION { IMMUTABLE } else { REVALIDATE }))
}

/// The URL prefix of this build's assets.
pub fn assets_base() -> String {
    format!("/assets/{VERSION}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_is_read_with_q_values_and_wildcards() {
        assert!(accepts("gzip, deflate, br, zstd", "br"));
        assert!(accepts("gzip;q=0.5", "gzip"));
        assert!(!accepts("gzip;q=0, br", "gzip"));
        assert!(accepts("*", "br"));
        assert!(!accepts("*, br;q=0", "br"));
        assert!(!accepts("identity", "gzip"));
        assert!(!accepts("", "br"));
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists() {
        assert!(matches("\"a\"", "\"a\""));
        assert!(matches("W/\"a\"", "\"a\""));
        assert!(matches("\"x\", \"a\"", "\"a\""));
        assert!(matches("*", "\"a\""));
        assert!(!matches("\"a-br\"", "\"a\""));
    }

    #[test]
    fn every_embedded_file_has_a_type_and_the_shell_points_at_this_version() {
        assert!(!FILES.is_empty());
        let shell = std::str::from_utf8(file("index.html").unwrap().identity).unwrap();
        assert!(shell.contains(&assets_base()), "index.html links {}", assets_base());
        assert!(!shell.contains("{{ASSETS}}"));
        for f in FILES {
            assert!(!f.content_type.is_empty() && !f.identity.is_empty(), "{}", f.path);
        }
    }
}
