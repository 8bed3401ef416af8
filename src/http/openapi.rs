//! The OpenAPI 3.1 description of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types they send (`wire`), served at `GET /api/openapi.json`. A test
//! holds it to the router: every route the router has is described, and nothing else.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use super::{admin, clips, download, health, metrics, oneshot, pages, thumbnails, upload};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferry",
        description = "Temporary clip and file sharing, wire-compatible with Qopy. Browser clips are \
            encrypted before upload (the key stays in the link's fragment); curl uploads are stored as sent. \
            Every error answer is `{error, message, code}`.",
        license(name = "MIT")
    ),
    paths(
        upload::initiate, upload::chunk, upload::complete, upload::status, upload::cancel,
        oneshot::put, oneshot::put_without_name, oneshot::post,
        clips::info, clips::read, clips::read_with_code, clips::delete, clips::file_info, clips::file_get,
        clips::client_config,
        thumbnails::get, thumbnails::post,
        download::download, download::raw, download::raw_named,
        admin::auth, admin::stats, admin::clips, admin::system, admin::performance, admin::jobs, admin::job,
        admin::retry_job,
        health::health, health::api_health, health::ping, health::livez, health::readyz, metrics::render,
        openapi_json,
        pages::shell, pages::shell_clip, pages::shell_file, pages::service_worker, pages::robots, pages::share_target, pages::asset,
    ),
    tags(
        (name = "uploads", description = "Three-step chunked uploads (Qopy's) and one-request uploads"),
        (name = "clips", description = "Clip metadata, access codes, early delete, thumbnails"),
        (name = "downloads", description = "Content, with Range; one-time and limited clips count here"),
        (name = "admin", description = "With the admin token (disabled, 404, when none is configured)"),
        (name = "health", description = "Probes and metrics (never rate limited)"),
        (name = "ui", description = "The browser UI's pages and assets"),
    )
)]
pub struct ApiDoc;

/// The document as JSON, made once.
pub fn document() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().expect("the OpenAPI document serialises").into_bytes())
}

/// GET /api/openapi.json
#[utoipa::path(get, path = "/api/openapi.json", tag = "health",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], document()).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A route's first argument: a string literal, or a `const` of the router's file (or
    /// `hot::INFO_ROUTE`).
    fn resolve(arg: &str, router: &str, hot: &str) -> String {
        let arg = arg.trim();
        if let Some(lit) = arg.strip_prefix('"') {
            return lit.trim_end_matches('"').to_string();
        }
        let (source, name) = match arg.strip_prefix("hot::") {
            Some(name) => (hot, name),
            None => (router, arg),
        };
        let decl = format!("const {name}: &str = \"");
        let start = source.find(&decl).unwrap_or_else(|| panic!("no const {arg}")) + decl.len();
        source[start..].split('"').next().unwrap().to_string()
    }

    /// Every (method, path) the router in mod.rs registers, read from its source.
    fn router_routes() -> BTreeSet<(String, String)> {
        let router = include_str!("mod.rs");
        let hot = include_str!("hot.rs");
        let mut routes = BTreeSet::new();
        for piece in router.split(".route(").skip(1) {
            // The call's arguments end at the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = piece
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .expect("balanced route call");
            let (path, handlers) = piece[..end].split_once(',').expect("path, handler");
            let path = resolve(path, router, hot).replace("{*", "{");
            for method in ["get", "post", "put", "delete", "patch"] {
                // `get(..)`, `.post(..)`, `axum::routing::delete(..)`; not `forget(..)`.
                let call = format!("{method}(");
                let named = handlers.match_indices(&call).any(|(at, _)| {
                    !handlers[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if named {
                    routes.insert((method.to_string(), path.clone()));
                }
            }
        }
        routes
    }

    #[test]
    fn the_document_describes_every_route_the_router_has_and_no_other() {
        let doc: serde_json::Value = serde_json::from_slice(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut described = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                described.insert((method.clone(), path.clone()));
            }
        }
        let routed = router_routes();
        assert!(routed.len() >= 40, "the router's routes were read: {routed:?}");
        let missing: Vec<_> = routed.difference(&described).collect();
        let extra: Vec<_> = described.difference(&routed).collect();
        assert!(missing.is_empty(), "routes without a description: {missing:?}");
        assert!(extra.is_empty(), "described routes the router does not have: {extra:?}");
    }

    #[test]
    fn the_clip_read_routes_document_every_code_a_missing_clip_answers() {
        let doc: serde_json::Value = serde_json::from_slice(document()).unwrap();
        for (method, path) in [
            ("get", "/api/clip/{id}/info"),
            ("get", "/api/clip/{id}"),
            ("post", "/api/clip/{id}"),
            ("get", "/api/file/{id}/info"),
            ("post", "/api/file/{id}"),
            ("get", "/raw/{id}"),
        ] {
            let not_found = doc["paths"][path][method]["responses"]["404"]["description"].as_str().unwrap_or_default();
            for code in ["clip_expired", "clip_consumed", "clip_deleted", "clip_not_found"] {
                assert!(not_found.contains(code), "{method} {path}: 404 does not name {code}: {not_found:?}");
            }
        }
        let code = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["description"].to_string();
        assert!(code.contains("clip_consumed"), "{code}");
    }

    #[test]
    fn every_operation_documents_its_answers_and_errors_share_one_schema() {
        let doc: serde_json::Value = serde_json::from_slice(document()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{method} {path}");
                for (status, r) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let schema = &r["content"]["application/json"]["schema"];
                        let target = schema["$ref"].as_str().unwrap_or_default();
                        assert!(
                            target.ends_with("/ErrorBody")
                                || target.ends_with("/Health")
                                || target.ends_with("/Readiness"),
                            "{method} {path} {status}: {schema}"
                        );
                    }
                }
            }
        }
    }
}
