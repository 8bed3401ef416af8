//! Properties of multipart/form-data as the upload routes read it (axum's `Multipart`, the
//! extractor `http::oneshot` and `http::upload` use): any body under any boundary parses to an
//! end without panicking, a well-formed form gives back every part as written, the one-request
//! upload (`POST /api/clips`) stores exactly its `file` part, and a mangled form to either
//! upload route answers a 4xx or success, never a 5xx.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart};
use axum::http::{Request, StatusCode, header};
use proptest::prelude::*;

use super::{Part, form_body, server};
use crate::domain::types::Filename;

/// Boundaries: RFC 2046 bchars, 1 to 70 of them, not ending in a space.
fn boundary() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_-]{1,40}", "[A-Za-z0-9'()+_,./:=? -]{0,69}[A-Za-z0-9]"]
}

/// The Content-Type carrying a boundary: quoted, or bare when it is a token.
fn content_type(boundary: &str, quote: bool) -> String {
    let token = boundary.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+'".contains(&b));
    if quote || !token {
        format!("multipart/form-data; boundary=\"{boundary}\"")
    } else {
        format!("multipart/form-data; boundary={boundary}")
    }
}

/// Text that can stand in a quoted Content-Disposition parameter and comes back as written.
fn param_text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9_.-]{1,12}", "[^\"\\\\\\p{C}]{1,8}"]
        .prop_filter("the parser looks for `name` inside the header", |s| !s.contains("name"))
}

fn part() -> impl Strategy<Value = Part> {
    (
        param_text(),
        prop::option::of(param_text()),
        prop::option::of("[a-z]{1,8}/[a-z0-9.+-]{1,12}"),
        prop_oneof![prop::collection::vec(any::<u8>(), 0..300), "\\PC{0,40}".prop_map(String::into_bytes)],
    )
        .prop_map(|(name, filename, content_type, data)| Part { name, filename, content_type, data })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Pieces a hostile body is made of: boundary lines, headers, line ends and noise.
fn fragment(boundary: String) -> impl Strategy<Value = Vec<u8>> {
    let b = boundary;
    prop_oneof![
        Just(format!("--{b}\r\n").into_bytes()),
        Just(format!("\r\n--{b}--").into_bytes()),
        Just(format!("--{b}").into_bytes()),
        Just(b"\r\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n".to_vec()),
        Just(b"Content-Disposition: form-data; name=chunk\r\n".to_vec()),
        Just(b"Content-Type: text/plain\r\n".to_vec()),
        "[ -~]{0,30}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

/// A field as read: name, file name, content type and bytes.
type Field = (Option<String>, Option<String>, Option<String>, Vec<u8>);

/// Read a whole form as the upload handlers do: every field, every byte, until the end or
/// the first error. The fields read, or the error.
fn read_form(content_type: Option<&str>, body: Vec<u8>) -> Result<Vec<Field>, String> {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    rt.block_on(async {
        let mut req = Request::post("/api/clips");
        if let Some(t) = content_type {
            req = req.header(header::CONTENT_TYPE, t);
        }
        let req = req.body(Body::from(body)).map_err(|e| e.to_string())?;
        let mut form = Multipart::from_request(req, &()).await.map_err(|e| e.body_text())?;
        let mut fields = Vec::new();
        while let Some(mut field) = form.next_field().await.map_err(|e| e.body_text())? {
            let name = field.name().map(str::to_string);
            let filename = field.file_name().map(str::to_string);
            let content_type = field.content_type().map(str::to_string);
            let mut data = Vec::new();
            while let Some(bytes) = field.chunk().await.map_err(|e| e.body_text())? {
                data.extend_from_slice(&bytes);
            }
            fields.push((name, filename, content_type, data));
        }
        Ok(fields)
    })
}

fn post_form(uri: &str, content_type: &str, body: Vec<u8>) -> super::Reply {
    server().send(
        Request::post(uri)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, "application/json")
            .body(Body::from(body))
            .expect("a request"),
    )
}

/// Ways to break a well-formed form.
#[derive(Debug, Clone)]
enum Mangle {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    DropCrlf(prop::sample::Index),
}

fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mangle::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mangle::Flip(i, b)),
        (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mangle::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mangle::DropCrlf),
    ]
}

fn apply(mut body: Vec<u8>, how: &Mangle) -> Vec<u8> {
    if body.is_empty() {
        return body;
    }
    match how {
        Mangle::Truncate(i) => body.truncate(i.index(body.len())),
        Mangle::Flip(i, b) => {
            let at = i.index(body.len());
            body[at] ^= b.max(&1);
        }
        Mangle::Insert(i, bytes) => {
            let at = i.index(body.len());
            body.splice(at..at, bytes.iter().copied());
        }
        Mangle::DropCrlf(i) => {
            let ends: Vec<usize> = body.windows(2).enumerate().filter(|(_, w)| w == b"\r\n").map(|(k, _)| k).collect();
            if !ends.is_empty() {
                let at = ends[i.index(ends.len())];
                body.drain(at..at + 2);
            }
        }
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn any_body_under_any_boundary_parses_to_an_end_without_panicking(
        (b, pieces) in boundary().prop_flat_map(|b| (Just(b.clone()), prop::collection::vec(fragment(b), 0..14))),
        header_boundary in prop_oneof![
            3 => Just(None),
            1 => Just(Some(String::new())),
            1 => "[ -~]{0,80}".prop_map(Some),
        ],
        quote in any::<bool>(),
    ) {
        let body: Vec<u8> = pieces.concat();
        let declared = match &header_boundary {
            None => content_type(&b, quote),
            Some(other) => format!("multipart/form-data; boundary={other}"),
        };
        // Errors are expected; a panic or a hang is the failure.
        let _ = read_form(Some(&declared), body);
    }

    #[test]
    fn a_well_formed_form_gives_back_every_part_as_written(
        b in boundary(),
        parts in prop::collection::vec(part(), 0..5),
        quote in any::<bool>(),
    ) {
        let delimiter = format!("\r\n--{b}");
        prop_assume!(!parts.iter().any(|p| contains(&p.data, delimiter.as_bytes())
            || p.data.starts_with(format!("--{b}").as_bytes())));
        let fields = read_form(Some(&content_type(&b, quote)), form_body(&b, &parts));
        let expected: Vec<_> = parts
            .iter()
            .map(|p| (Some(p.name.clone()), p.filename.clone(), p.content_type.clone(), p.data.clone()))
            .collect();
        prop_assert_eq!(fields, Ok(expected));
    }

    #[test]
    fn a_one_request_form_upload_stores_exactly_its_file_part(
        b in "[A-Za-z0-9_-]{8,40}",
        before in prop::collection::vec(part(), 0..3),
        after in prop::collection::vec(part(), 0..2),
        name in prop::option::of(param_text()),
        data in prop::collection::vec(any::<u8>(), 0..3000),
    ) {
        let delimiter = format!("\r\n--{b}");
        let noise = || before.iter().chain(after.iter());
        prop_assume!(!noise().any(|p| p.name == "file" || contains(&p.data, delimiter.as_bytes())));
        prop_assume!(!contains(&data, delimiter.as_bytes()));
        let file = Part { name: "file".into(), filename: name.clone(), content_type: None, data: data.clone() };
        let parts: Vec<Part> = before.iter().cloned().chain([file]).chain(after.iter().cloned()).collect();
        let reply = post_form("/api/clips", &content_type(&b, false), form_body(&b, &parts));
        let stored_name = name.unwrap_or_else(|| "upload.bin".into());
        if Filename::parse(&stored_name).is_err() {
            prop_assert_eq!(reply.status, StatusCode::BAD_REQUEST);
            return Ok(());
        }
        prop_assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
        let json = reply.json();
        prop_assert_eq!(json["filename"].as_str(), Some(stored_name.as_str()));
        prop_assert_eq!(json["size"].as_u64(), Some(data.len() as u64));
        let code = json["clipId"].as_str().expect("a clip id");
        let raw = server().send(Request::get(format!("/raw/{code}")).body(Body::empty()).expect("a request"));
        prop_assert_eq!(raw.status, StatusCode::OK);
        prop_assert!(raw.body.as_ref() == data.as_slice(), "the clip is not the file part");
    }

    #[test]
    fn a_mangled_form_to_either_upload_route_answers_4xx_or_success_never_5xx(
        b in boundary(),
        parts in prop::collection::vec(part(), 0..4),
        file in prop::option::of(prop::collection::vec(any::<u8>(), 0..2100)),
        how in prop::collection::vec(mangle(), 0..3),
        to_chunk in any::<bool>(),
    ) {
        let mut parts = parts;
        if let Some(data) = file {
            let name = if to_chunk { "chunk" } else { "file" };
            parts.push(Part { name: name.into(), filename: Some("f.bin".into()), content_type: None, data });
        }
        let body = how.iter().fold(form_body(&b, &parts), apply);
        let uri = if to_chunk {
            format!("/api/upload/chunk/{}/0", server().initiate_open(1))
        } else {
            "/api/clips".to_string()
        };
        let reply = post_form(&uri, &content_type(&b, true), body);
        prop_assert!(
            reply.status.is_success() || reply.status.is_client_error(),
            "{} {}", reply.status, String::from_utf8_lossy(&reply.body)
        );
    }
}
