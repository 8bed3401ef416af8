//! Response compression (gzip, brotli, zstd via tower-http) for JSON and text above a small
//! size; never for stored blobs (downloads carry Content-Disposition), range responses, types
//! that are already compressed, or answers with an ETag (the UI's assets are compressed at
//! build time, each form with its own tag).

use axum::http::{Response, header};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{Predicate, SizeAbove};

/// Compress only our own textual responses.
#[derive(Clone, Copy)]
pub struct TextualNotBlobs;

impl Predicate for TextualNotBlobs {
    fn should_compress<B>(&self, response: &Response<B>) -> bool
    where
        B: http_body::Body,
    {
        let h = response.headers();
        // A strong ETag names these exact bytes (the UI's assets come precompressed, each form
        // with its own tag): re-encoding would break it.
        if h.contains_key(header::CONTENT_DISPOSITION)
            || h.contains_key(header::CONTENT_RANGE)
            || h.contains_key(header::ETAG)
        {
            return false;
        }
        let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        ct.starts_with("application/json")
            || ct.starts_with("text/")
            || ct.starts_with("application/javascript")
            || ct.starts_with("image/svg+xml")
    }
}

fn predicate() -> impl Predicate {
    SizeAbove::new(512).and(TextualNotBlobs)
}

pub fn layer() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new().compress_when(predicate())
}

/// Whether `response` would be compressed for a client that accepts it; such a response
/// varies by Accept-Encoding even when sent to one that does not.
pub fn varies<B: http_body::Body>(response: &Response<B>) -> bool {
    !response.headers().contains_key(header::CONTENT_ENCODING) && predicate().should_compress(response)
}

/// Whether the compression layer can answer a request with this Accept-Encoding. It cannot
/// when the header refuses the identity coding (`identity;q=0`, or `*;q=0` with no identity of
/// its own) and accepts none of gzip, br or zstd: the layer would then replace the status with
/// 406 after the handler ran — after a one-time download was already spent. Such a request is
/// answered without a content coding instead, which RFC 9110 §12.5.3 allows.
pub fn negotiable(accept_encoding: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(accept_encoding) else { return false };
    let (mut identity, mut star, mut supported) = (None, None, false);
    for item in text.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let accepted = q > 0.0;
        match coding.as_str() {
            "identity" => identity = Some(accepted),
            "*" => star = Some(accepted),
            "gzip" | "x-gzip" | "br" | "zstd" => supported |= accepted,
            _ => {}
        }
    }
    let identity_ok = identity.or(star).unwrap_or(true);
    identity_ok || supported || star == Some(true)
}

#[cfg(test)]
mod tests {
    use super::negotiable;

    #[test]
    fn only_headers_refusing_every_coding_we_have_are_not_negotiable() {
        for ok in ["gzip", "br, zstd", "identity", "*", "identity;q=0, gzip", "*;q=0, br;q=0.5", "", "deflate"] {
            assert!(negotiable(ok.as_bytes()), "{ok}");
        }
        for refused in ["identity;q=0", "*;q=0", "identity;q=0, deflate", "*;q=0, gzip;q=0", "IDENTITY;Q=0"] {
            assert!(!negotiable(refused.as_bytes()), "{refused}");
        }
    }
}
