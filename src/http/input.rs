//! Request input at the edge: JSON bodies read into a map and checked field by field (so wrong
//! types, loose booleans and out-of-range numbers become 400 validation errors naming the
//! field, never 500), path ids parsed into newtypes, and the client's base URL.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::domain::{DomainError, FieldError, Location};

/// A JSON object body. An empty body reads as `{}`; anything but an object is a 400.
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<crate::app::AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &crate::app::AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config().server.json_body_limit.bytes();
        // A declared length past the limit is refused before any of the body is read.
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::PayloadTooLarge);
        }
        let limited = http_body_util::Limited::new(req.into_body(), usize::try_from(limit).unwrap_or(usize::MAX));
        let bytes: Bytes = match limited.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(ApiError::PayloadTooLarge),
            Err(e) => return Err(ApiError::BadJson(format!("failed to read the body: {e}"))),
        };
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(JsonObject(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::BadJson("the body must be a JSON object".into())),
            Err(e) => Err(ApiError::BadJson(format!("malformed JSON at line {} column {}", e.line(), e.column()))),
        }
    }
}

/// Field-by-field reader that collects every problem before failing.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    pub errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Fields<'a> {
        Fields { map, errors: Vec::new() }
    }

    fn fail(&mut self, name: &str, msg: &str) {
        self.errors.push(FieldError::new(name, msg, Location::Body));
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// A string field, parsed by `parse`.
    pub fn parsed<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, &'static str>) -> Option<T> {
        match self.present(name)? {
            Value::String(s) => parse(s).map_err(|m| self.fail(name, m)).ok(),
            _ => {
                self.fail(name, "must be a string");
                None
            }
        }
    }

    /// A string field that must be there.
    pub fn required<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, &'static str>) -> Option<T> {
        if self.present(name).is_none() {
            self.fail(name, "is required");
            return None;
        }
        self.parsed(name, parse)
    }

    /// A boolean: JSON true/false or the strings "true"/"false"; anything else is an error.
    pub fn boolean(&mut self, name: &str) -> bool {
        match self.present(name) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" => true,
            Some(Value::String(s)) if s == "false" => false,
            Some(_) => {
                self.fail(name, "must be true or false");
                false
            }
        }
    }

    /// A non-negative integer (JSON number, or a string of digits) up to `max`.
    pub fn integer(&mut self, name: &str, max: u64) -> Option<u64> {
        let n = match self.present(name)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()
            }
            _ => None,
        };
        match n {
            Some(n) if n <= max => Some(n),
            _ => {
                self.fail(name, &format!("must be an integer between 0 and {max}"));
                None
            }
        }
    }

    /// An integer field, parsed by `parse` (which names the allowed range in its message).
    pub fn number<T>(&mut self, name: &str, parse: impl FnOnce(u64) -> Result<T, &'static str>) -> Option<T> {
        let n = self.integer(name, u64::MAX)?;
        parse(n).map_err(|m| self.fail(name, m)).ok()
    }

    pub fn finish(self) -> Result<(), DomainError> {
        if self.errors.is_empty() { Ok(()) } else { Err(DomainError::Validation(self.errors)) }
    }
}

/// Parse a path segment into a newtype or answer a 400 naming the parameter.
pub fn param<T>(name: &str, raw: &str, parse: impl FnOnce(&str) -> Result<T, &'static str>) -> Result<T, ApiError> {
    parse(raw).map_err(|msg| DomainError::invalid(name, msg, Location::Params).into())
}

/// The base of links in responses: the configured public URL, else the request's Host.
pub struct BaseUrl(pub String);

impl FromRequestParts<crate::app::AppState> for BaseUrl {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &crate::app::AppState) -> Result<Self, Self::Rejection> {
        if let Some(base) = state.config().public_base() {
            return Ok(BaseUrl(base.to_string()));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .filter(|h| !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
            .unwrap_or("localhost");
        Ok(BaseUrl(format!("http://{host}")))
    }
}

/// A header's value as text, if present and visible ASCII/UTF-8.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The declared body length, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok())
}
