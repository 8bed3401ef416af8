//! Properties of the upload inputs: the path parameters of the upload and clip routes (any
//! text, any percent-escape) and the id the info hot path reads from a path, chunk bodies sent raw or as a multipart field with or without a
//! checksum (taken whole up to the limit, reported back by status with their size and SHA-256,
//! and assembled into exactly the bytes sent), and the options of the one-request upload read
//! from headers or the query.

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::{CHUNK, Part, form_body, server};
use crate::domain::types::{AccessCode, ChunkIndex, ClipId, Expiry, Filename, MaxDownloads, UploadId};
use crate::domain::{DomainError, FieldError, Location};
use crate::http::error::ApiError;

/// The most a chunk may hold: the chunk size plus the encryption slack.
const CHUNK_LIMIT: usize = (CHUNK + crate::domain::Limits::CHUNK_SLACK) as usize;

/// A path segment: ids, near-ids, and any text.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9A-F]{16}",
        "[A-Z0-9]{10}|[A-Z0-9]{6}",
        "[0-9]{1,8}",
        "[0-9A-Za-z]{5,17}",
        "\\PC{0,12}",
        Just("..".to_string()),
        Just("-1".to_string()),
    ]
}

/// The routes that take an upload id or a clip id, with the name a refusal gives the parameter.
const ID_ROUTES: [(&str, &str, &str); 8] = [
    ("GET", "/api/upload/{}/status", "uploadId"),
    ("POST", "/api/upload/complete/{}", "uploadId"),
    ("DELETE", "/api/upload/{}", "uploadId"),
    ("GET", "/raw/{}", "clipId"),
    ("POST", "/api/file/{}", "clipId"),
    ("GET", "/api/clip/{}", "clipId"),
    ("GET", "/api/clip/{}/info", "clipId"),
    ("DELETE", "/api/clip/{}", "clipId"),
];

fn send(method: &str, uri: &str, content_type: &str, body: Vec<u8>) -> Option<super::Reply> {
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("a method"))
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .ok()?;
    Some(server().send(req))
}

fn refusal_names(reply: &super::Reply) -> Vec<String> {
    reply.json()["details"]
        .as_array()
        .map(|d| d.iter().filter_map(|e| e["path"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// How a chunk is sent and what is claimed about it.
#[derive(Debug, Clone)]
struct Send {
    index: usize,
    data: Vec<u8>,
    checksum: Checksum,
    multipart: bool,
    declare_length: bool,
}

#[derive(Debug, Clone)]
enum Checksum {
    None,
    Right,
    RightUpperCase,
    Wrong,
    Garbage(Vec<u8>),
}

fn chunk_send(total: usize) -> impl Strategy<Value = Send> {
    (
        0..total + 1,
        prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..200),
            1 => prop::collection::vec(any::<u8>(), CHUNK_LIMIT - 2..CHUNK_LIMIT + 3),
            1 => prop::collection::vec(any::<u8>(), 0..2200),
        ],
        prop_oneof![
            3 => Just(Checksum::None),
            2 => Just(Checksum::Right),
            1 => Just(Checksum::RightUpperCase),
            1 => Just(Checksum::Wrong),
            1 => prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..70)
                .prop_map(Checksum::Garbage),
        ],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(index, data, checksum, multipart, declare_length)| Send {
            index,
            data,
            checksum,
            multipart,
            declare_length,
        })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn post_chunk(upload: &str, send: &Send, boundary: &str, noise: &[Part]) -> super::Reply {
    let mut req = Request::post(format!("/api/upload/chunk/{upload}/{}", send.index));
    let sha = match &send.checksum {
        Checksum::None => None,
        Checksum::Right => Some(sha256_hex(&send.data).into_bytes()),
        Checksum::RightUpperCase => Some(sha256_hex(&send.data).to_uppercase().into_bytes()),
        Checksum::Wrong => Some(sha256_hex(b"something else").into_bytes()),
        Checksum::Garbage(g) => Some(g.clone()),
    };
    if let Some(sha) = sha {
        req = req.header("x-chunk-sha256", HeaderValue::from_bytes(&sha).expect("a header value"));
    }
    let body = if send.multipart {
        req = req.header(header::CONTENT_TYPE, format!("multipart/form-data; boundary=\"{boundary}\""));
        let mut parts = noise.to_vec();
        let at = parts.len() / 2;
        parts.insert(
            at,
            Part { name: "chunk".into(), filename: Some("blob".into()), content_type: None, data: send.data.clone() },
        );
        form_body(boundary, &parts)
    } else {
        req = req.header(header::CONTENT_TYPE, "application/octet-stream");
        if send.declare_length {
            req = req.header(header::CONTENT_LENGTH, send.data.len());
        }
        send.data.clone()
    };
    server().send(req.body(Body::from(body)).expect("a request"))
}

/// Fields other than `chunk` that clients send along (ignored by the server).
fn noise() -> impl Strategy<Value = Vec<Part>> {
    prop::collection::vec(
        ("[a-z]{1,8}", prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(name, data)| Part {
            name: if name == "chunk" { "other".into() } else { name },
            filename: None,
            content_type: None,
            data,
        }),
        0..3,
    )
}

/// An option's value: good ones, near misses, and bytes a header may carry but no text can.
fn option_value(good: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(good).prop_map(|s| s.as_bytes().to_vec()),
        1 => "[ -~]{0,10}".prop_map(String::into_bytes),
        1 => "\\PC{1,6}".prop_map(String::into_bytes),
        1 => prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff], 1..8),
    ]
}

/// Where an option is given: nowhere, as a header, or under one of its query names.
fn option_place(query_names: &'static [&'static str]) -> impl Strategy<Value = Option<Option<&'static str>>> {
    prop_oneof![Just(None), Just(Some(None)), prop::sample::select(query_names).prop_map(|q| Some(Some(q))),]
}

const EXPIRE_QUERY: &[&str] = &["expire", "expiration"];
const ONE_TIME_QUERY: &[&str] = &["oneTime", "one-time", "one_time"];
const MAX_DOWNLOADS_QUERY: &[&str] = &["maxDownloads", "max-downloads", "max_downloads"];
const ACCESS_CODE_QUERY: &[&str] = &["accessCode", "access-code"];

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn path_ids_are_parsed_into_their_types_or_refused_with_a_400_naming_the_parameter(
        seg in segment(),
        index in segment(),
        route in 0usize..ID_ROUTES.len() + 1,
    ) {
        let encode = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let (method, uri, param, value) = match ID_ROUTES.get(route) {
            Some((method, pattern, param)) => (*method, pattern.replace("{}", &encode(&seg)), *param, seg.clone()),
            None => {
                // The chunk route: the upload id first, then the chunk number.
                let uri = format!("/api/upload/chunk/{}/{}", encode(&seg), encode(&index));
                let param = if UploadId::parse(&seg).is_ok() { "chunkNumber" } else { "uploadId" };
                let value = if param == "uploadId" { seg.clone() } else { index.clone() };
                ("POST", uri, param, value)
            }
        };
        let reply = send(method, &uri, "application/octet-stream", Vec::new()).expect("an encoded path is a URI");
        prop_assert!(reply.status.is_client_error(), "{} {} gave {}", method, uri, reply.status);
        let well_formed = match param {
            "uploadId" => UploadId::parse(&value).is_ok(),
            "clipId" => ClipId::parse(&value).is_ok(),
            _ => ChunkIndex::parse(&value).is_ok(),
        };
        if seg.is_empty() || (route == ID_ROUTES.len() && index.is_empty()) {
            // An empty segment matches no route (or a different one): any 4xx.
        } else if well_formed {
            // A well-formed id of nothing stored.
            prop_assert_eq!(reply.status, StatusCode::NOT_FOUND, "{} {}", method, uri);
        } else {
            prop_assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{} {}", method, uri);
            prop_assert_eq!(refusal_names(&reply), vec![param.to_string()]);
        }
    }

    #[test]
    fn the_info_hot_path_takes_only_plain_ids_and_exactly_the_ids_the_router_would_see(
        seg in prop_oneof!["[A-Za-z0-9]{0,12}", "[A-Za-z0-9%/._-]{0,12}", "\\PC{0,8}"],
        prefix in prop_oneof![4 => Just("/api/clip/".to_string()), 1 => "/api/clips?/|/api//clip/|/API/clip/"],
        suffix in prop_oneof![4 => Just("/info".to_string()), 1 => "/info/|/inf|/info\\?x=1|"],
    ) {
        let path = format!("{prefix}{seg}{suffix}");
        let plain = !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric());
        let routed = prefix == "/api/clip/" && suffix == "/info";
        prop_assert_eq!(crate::http::hot::info_id(&path), (plain && routed).then_some(seg.as_str()), "{:?}", path);
    }

    #[test]
    fn raw_path_bytes_with_any_percent_escapes_never_earn_a_5xx(
        a in "[A-Za-z0-9%._~+-]{0,20}",
        b in "[A-Za-z0-9%._~+-]{0,12}",
        hex in "(%[0-9A-Fa-f]{2}){0,4}",
        route in 0usize..ID_ROUTES.len() + 1,
    ) {
        let seg = format!("{a}{hex}");
        let (method, uri) = match ID_ROUTES.get(route) {
            Some((method, pattern, _)) => (*method, pattern.replace("{}", &seg)),
            None => ("POST", format!("/api/upload/chunk/{seg}/{b}")),
        };
        if let Some(reply) = send(method, &uri, "application/octet-stream", Vec::new()) {
            prop_assert!(reply.status.is_client_error(), "{} {} gave {}", method, uri, reply.status);
        }
    }

    #[test]
    fn chunk_bodies_are_taken_whole_up_to_the_limit_reported_by_status_and_assembled_as_sent(
        (total, sends) in (1usize..4).prop_flat_map(|t| (Just(t), prop::collection::vec(chunk_send(t), 1..5))),
        boundary in "[A-Za-z0-9'()+_,./:=?-]{1,30}[A-Za-z0-9]",
        noise in noise(),
    ) {
        let delimiter = format!("\r\n--{boundary}");
        prop_assume!(!sends.iter().any(|s| s.data.windows(delimiter.len()).any(|w| w == delimiter.as_bytes())));
        let s = server();
        let upload = s.initiate_open(total);
        let mut kept: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        for send in &sends {
            let reply = post_chunk(&upload, send, &boundary, &noise);
            let checksum_ok = match &send.checksum {
                Checksum::None | Checksum::Right | Checksum::RightUpperCase => true,
                Checksum::Wrong => false,
                Checksum::Garbage(g) => g.eq_ignore_ascii_case(sha256_hex(&send.data).as_bytes()),
            };
            let expected = if send.index >= total {
                StatusCode::BAD_REQUEST
            } else if send.data.len() > CHUNK_LIMIT {
                StatusCode::PAYLOAD_TOO_LARGE
            } else if !checksum_ok {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            prop_assert_eq!(reply.status, expected, "{:?}: {}", send, String::from_utf8_lossy(&reply.body));
            if expected == StatusCode::OK {
                kept.insert(send.index, send.data.clone());
                prop_assert_eq!(reply.json()["chunkNumber"].as_u64(), Some(send.index as u64));
                prop_assert_eq!(reply.json()["uploadedChunks"].as_u64(), Some(kept.len() as u64));
            } else if send.index >= total {
                prop_assert_eq!(refusal_names(&reply), vec!["chunkNumber".to_string()]);
            }
        }
        let status_uri = format!("/api/upload/{upload}/status");
        let status = s.send(Request::get(status_uri).body(Body::empty()).expect("a request"));
        prop_assert_eq!(status.status, StatusCode::OK);
        let listed: Vec<(u64, u64, String)> = status.json()["chunks"]
            .as_array()
            .expect("chunks")
            .iter()
            .map(|c| {
                let number = |k: &str| c[k].as_u64().unwrap_or(u64::MAX);
                (number("index"), number("size"), c["sha256"].as_str().unwrap_or("").to_string())
            })
            .collect();
        let expected: Vec<(u64, u64, String)> =
            kept.iter().map(|(i, d)| (*i as u64, d.len() as u64, sha256_hex(d))).collect();
        prop_assert_eq!(listed, expected);
        if kept.len() == total {
            let done = s.post_json(&format!("/api/upload/complete/{upload}"), &serde_json::json!({}));
            prop_assert_eq!(done.status, StatusCode::OK, "{}", String::from_utf8_lossy(&done.body));
            let whole: Vec<u8> = kept.values().flatten().copied().collect();
            let (json, sha) = (done.json(), sha256_hex(&whole));
            prop_assert_eq!(json["sha256"].as_str(), Some(sha.as_str()));
            let code = done.json()["clipId"].as_str().expect("a clip id").to_string();
            let raw = s.send(Request::get(format!("/raw/{code}")).body(Body::empty()).expect("a request"));
            prop_assert_eq!(raw.status, StatusCode::OK);
            prop_assert!(raw.body.as_ref() == whole.as_slice(), "the clip is not the chunks sent");
        }
    }

    #[test]
    fn one_request_options_parse_like_their_fields_and_an_unreadable_header_is_refused(
        expire in (option_place(EXPIRE_QUERY), option_value(&["5min", "1hr", "24hr", "2hr"])),
        one_time in (option_place(ONE_TIME_QUERY), option_value(&["true", "false", "TRUE", "1"])),
        max_downloads in (option_place(MAX_DOWNLOADS_QUERY), option_value(&["1", "10000", "10001", "0", "+5", "-1"])),
        access_code in (option_place(ACCESS_CODE_QUERY), option_value(&["secret", "0123456789abcdef"])),
        length in prop::option::of(any::<u64>()),
    ) {
        let mut headers = HeaderMap::new();
        let mut query = HashMap::new();
        // What each option should come to: its value as text, or None when it cannot be read.
        let mut given: Vec<(&str, Location, Option<String>)> = Vec::new();
        for (header_name, (place, value)) in [
            ("expire", expire),
            ("one-time", one_time),
            ("max-downloads", max_downloads),
            ("access-code", access_code),
        ] {
            match place {
                None => {}
                Some(None) => {
                    headers.insert(header_name, HeaderValue::from_bytes(&value).expect("a header value"));
                    let readable = value.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\t');
                    let text = readable.then(|| String::from_utf8(value).expect("ascii"));
                    given.push((header_name, Location::Header, text));
                }
                Some(Some(q)) => {
                    let text = String::from_utf8_lossy(&value).into_owned();
                    query.insert(q.to_string(), text.clone());
                    given.push((q, Location::Query, Some(text)));
                }
            }
        }
        let option = |header: &str| given.iter().find(|g| match header {
            "expire" => g.0 == "expire" || EXPIRE_QUERY.contains(&g.0),
            "one-time" => g.0 == "one-time" || ONE_TIME_QUERY.contains(&g.0),
            "max-downloads" => g.0 == "max-downloads" || MAX_DOWNLOADS_QUERY.contains(&g.0),
            _ => g.0 == "access-code" || ACCESS_CODE_QUERY.contains(&g.0),
        });
        let mut errors: Vec<String> = Vec::new();
        let mut check = |header: &str, ok: &dyn Fn(&str) -> bool| {
            if let Some((name, _, value)) = option(header)
                && !value.as_deref().is_some_and(ok)
            {
                errors.push(name.to_string());
            }
        };
        check("expire", &|v| Expiry::parse(v).is_ok());
        check("one-time", &|v| v == "true" || v == "false");
        check("max-downloads", &|v| v.parse::<u64>().ok().is_some_and(|n| MaxDownloads::new(n).is_ok()));
        check("access-code", &|v| AccessCode::parse(v).is_ok());

        let filename = Filename::parse("props.bin").expect("a name");
        match crate::http::oneshot::request(&headers, &query, filename, None, length) {
            Ok(req) => {
                prop_assert!(errors.is_empty(), "taken despite {:?}", errors);
                let text = |h: &str| option(h).and_then(|g| g.2.clone());
                prop_assert_eq!(req.expiry, text("expire").map_or(Expiry::Hr24, |v| Expiry::parse(&v).expect("valid")));
                prop_assert_eq!(req.one_time, text("one-time").as_deref() == Some("true"));
                let limit = text("max-downloads").map(|v| v.parse::<u64>().expect("valid"));
                prop_assert_eq!(req.max_downloads.map(|m| m.0 as u64), limit);
                prop_assert_eq!(req.access_code.map(|c| c.expose().to_string()), text("access-code"));
                prop_assert_eq!(req.content_length, length);
            }
            Err(ApiError::Domain(DomainError::Validation(details))) => {
                let named: Vec<String> = details.iter().map(|d: &FieldError| d.path.clone()).collect();
                prop_assert_eq!(named, errors);
                for d in &details {
                    let (_, location, _) = given.iter().find(|g| g.0 == d.path).expect("a given option");
                    prop_assert_eq!(d.location, *location);
                }
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
