//! Response compression (gzip, brotli, zstd via tower-http) for JSON, text and static assets
//! above a small size; never for stored blobs (downloads carry Content-Disposition), range
//! responses, or types that are already compressed.

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
        if h.contains_key(header::CONTENT_DISPOSITION) || h.contains_key(header::CONTENT_RANGE) {
            return false;
        }
        let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        ct.starts_with("application/json")
            || ct.starts_with("text/")
            || ct.starts_with("application/javascript")
            || ct.starts_with("image/svg+xml")
    }
}

pub fn layer() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new().compress_when(SizeAbove::new(512).and(TextualNotBlobs))
}
