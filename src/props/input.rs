//! Properties of JSON input (`http::input`): the field readers (`Fields`: strings through their
//! parsers, loose booleans, bounded integers, required fields) against a model written here,
//! and the `JsonObject` extractor behind a real route: any body answers a 4xx or success, never
//! a 5xx, and a validation error names exactly the fields that were wrong. Also the `Host`
//! header `BaseUrl` turns into the base of links.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::server;
use crate::domain::types::{ClipKind, Expiry, Filename, MaxDownloads, MimeType};
use crate::domain::{FieldError, Location};
use crate::http::input::Fields;

/// Any JSON value, with the shapes field readers meet often (digit strings, "true") weighted in.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..2000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[0-9]{0,22}".prop_map(Value::from),
        prop_oneof![Just("true"), Just("false"), Just("TRUE"), Just(" true"), Just("1"), Just("")]
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What `Fields::integer` should make of a value, written apart from it.
fn integer_model(value: Option<&Value>, max: u64) -> Result<Option<u64>, ()> {
    let n = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().ok()
        }
        Some(_) => None,
    };
    n.filter(|n| *n <= max).map(Some).ok_or(())
}

fn boolean_model(value: Option<&Value>) -> Result<bool, ()> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(_) => Err(()),
    }
}

fn string_model<T>(value: Option<&Value>, parse: impl FnOnce(&str) -> Result<T, &'static str>) -> Result<(), ()> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => parse(s).map(|_| ()).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

/// The fields of `POST /api/upload/initiate` and whether a value is acceptable for each.
const INITIATE_FIELDS: [&str; 11] = [
    "filename",
    "filesize",
    "totalChunks",
    "mimeType",
    "expiration",
    "oneTime",
    "hasPassword",
    "quickShare",
    "isTextContent",
    "contentType",
    "maxDownloads",
];

fn initiate_field_ok(name: &str, value: Option<&Value>) -> bool {
    match name {
        "filename" => value.is_some_and(|v| !v.is_null()) && string_model(value, Filename::parse).is_ok(),
        "filesize" => integer_model(value, i64::MAX as u64).is_ok(),
        "totalChunks" => integer_model(value, 1_000_000).is_ok(),
        "mimeType" => string_model(value, MimeType::parse).is_ok(),
        "expiration" => string_model(value, Expiry::parse).is_ok(),
        "contentType" => string_model(value, ClipKind::parse).is_ok(),
        "maxDownloads" => integer_model(value, u64::MAX).is_ok_and(|n| n.is_none_or(|n| MaxDownloads::new(n).is_ok())),
        _ => boolean_model(value).is_ok(),
    }
}

/// A value for one initiate field: often a good one, otherwise anything.
fn initiate_value(name: &'static str) -> BoxedStrategy<Value> {
    let good: BoxedStrategy<Value> = match name {
        "filename" => "[a-zA-Z0-9 ._-]{1,20}".prop_map(Value::from).boxed(),
        "filesize" => (0u64..40_000).prop_map(Value::from).boxed(),
        "totalChunks" => (1u64..60).prop_map(Value::from).boxed(),
        "mimeType" => Just(Value::from("text/plain")).boxed(),
        "expiration" => prop::sample::select(Expiry::ALL.to_vec()).prop_map(|e| Value::from(e.as_str())).boxed(),
        "contentType" => prop_oneof![Just(json!("text")), Just(json!("file"))].boxed(),
        "maxDownloads" => (1u64..=10_000).prop_map(Value::from).boxed(),
        _ => prop_oneof![Just(json!(true)), Just(json!(false)), Just(json!("true"))].boxed(),
    };
    prop_oneof![3 => good, 1 => json_value()].boxed()
}

fn initiate_body() -> impl Strategy<Value = Map<String, Value>> {
    let fields: Vec<_> =
        INITIATE_FIELDS.iter().map(|name| prop::option::weighted(0.6, initiate_value(name)).boxed()).collect();
    (fields, prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..2)).prop_map(|(values, extra)| {
        let mut map: Map<String, Value> = extra.into_iter().collect();
        for (name, value) in INITIATE_FIELDS.iter().zip(values) {
            match value {
                Some(v) => map.insert(name.to_string(), v),
                None => map.remove(*name),
            };
        }
        map
    })
}

fn post_raw(uri: &str, content_type: Option<&str>, body: Vec<u8>) -> super::Reply {
    let mut req = Request::post(uri);
    if let Some(t) = content_type {
        req = req.header(header::CONTENT_TYPE, t);
    }
    server().send(req.body(Body::from(body)).expect("a request"))
}

fn detail_paths(reply: &super::Reply) -> BTreeSet<String> {
    reply.json()["details"]
        .as_array()
        .map(|d| d.iter().filter_map(|e| e["path"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn body_errors(errors: &[FieldError], name: &str) -> bool {
    errors.len() == 1 && errors[0].path == name && errors[0].location == Location::Body && !errors[0].msg.is_empty()
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn an_integer_field_takes_non_negative_integers_up_to_its_maximum_and_names_itself_otherwise(
        value in prop::option::of(json_value()),
        max in prop_oneof![Just(u64::MAX), Just(i64::MAX as u64), 0u64..3000],
    ) {
        let mut map = Map::new();
        if let Some(v) = value.clone() {
            map.insert("n".into(), v);
        }
        let mut f = Fields::new(&map);
        let got = f.integer("n", max);
        match integer_model(value.as_ref(), max) {
            Ok(expected) => {
                prop_assert_eq!(got, expected);
                prop_assert!(f.errors.is_empty());
            }
            Err(()) => {
                prop_assert_eq!(got, None);
                prop_assert!(body_errors(&f.errors, "n"), "{:?}", f.errors);
            }
        }
        prop_assert_eq!(f.finish().is_ok(), integer_model(value.as_ref(), max).is_ok());
    }

    #[test]
    fn a_boolean_field_takes_true_and_false_as_json_or_text_and_nothing_else(value in prop::option::of(json_value())) {
        let mut map = Map::new();
        if let Some(v) = value.clone() {
            map.insert("b".into(), v);
        }
        let mut f = Fields::new(&map);
        let got = f.boolean("b");
        match boolean_model(value.as_ref()) {
            Ok(expected) => prop_assert!(got == expected && f.errors.is_empty()),
            Err(()) => prop_assert!(!got && body_errors(&f.errors, "b"), "{:?}", f.errors),
        }
    }

    #[test]
    fn a_string_field_reaches_its_parser_only_as_a_string_and_a_required_one_must_be_there(
        value in prop::option::of(json_value()),
    ) {
        let mut map = Map::new();
        if let Some(v) = value.clone() {
            map.insert("s".into(), v);
        }
        let mut f = Fields::new(&map);
        let mut seen = None;
        let got = f.parsed("s", |s| {
            seen = Some(s.to_string());
            Filename::parse(s)
        });
        match value.as_ref() {
            Some(Value::String(s)) => {
                prop_assert_eq!(seen.as_deref(), Some(s.as_str()));
                prop_assert_eq!(got.is_some(), Filename::parse(s).is_ok());
                prop_assert_eq!(f.errors.is_empty(), got.is_some());
            }
            None | Some(Value::Null) => prop_assert!(got.is_none() && seen.is_none() && f.errors.is_empty()),
            Some(_) => prop_assert!(got.is_none() && seen.is_none() && body_errors(&f.errors, "s")),
        }
        let mut f = Fields::new(&map);
        let required = f.required("s", Filename::parse);
        let present = value.as_ref().is_some_and(|v| !v.is_null());
        prop_assert_eq!(required.is_some(), string_model(value.as_ref(), Filename::parse).is_ok() && present);
        prop_assert_eq!(f.errors.is_empty(), required.is_some());
    }

    #[test]
    fn every_wrong_field_is_collected_before_the_reader_fails(body in initiate_body()) {
        let mut f = Fields::new(&body);
        f.required("filename", Filename::parse);
        f.integer("filesize", i64::MAX as u64);
        f.integer("totalChunks", 1_000_000);
        f.parsed("mimeType", MimeType::parse);
        f.parsed("expiration", Expiry::parse);
        for b in ["oneTime", "hasPassword", "quickShare", "isTextContent"] {
            f.boolean(b);
        }
        f.parsed("contentType", ClipKind::parse);
        f.number("maxDownloads", MaxDownloads::new);
        let named: BTreeSet<&str> = f.errors.iter().map(|e| e.path.as_str()).collect();
        let wrong: BTreeSet<&str> =
            INITIATE_FIELDS.iter().copied().filter(|n| !initiate_field_ok(n, body.get(*n))).collect();
        prop_assert_eq!(named, wrong);
    }

    #[test]
    fn any_initiate_object_succeeds_or_gets_a_400_naming_exactly_its_wrong_fields(body in initiate_body()) {
        let text = Value::Object(body.clone()).to_string();
        let reply = post_raw("/api/upload/initiate", Some("application/json"), text.into_bytes());
        let wrong: BTreeSet<String> =
            INITIATE_FIELDS.iter().filter(|n| !initiate_field_ok(n, body.get(**n))).map(|n| n.to_string()).collect();
        let named = detail_paths(&reply);
        if wrong.is_empty() {
            // Right types can still break the upload rules (sizes, quick share with a password).
            let rules: BTreeSet<String> = ["filesize", "totalChunks", "hasPassword"].map(String::from).into();
            let broke_a_rule = reply.status == StatusCode::BAD_REQUEST && named.is_subset(&rules) && !named.is_empty();
            prop_assert!(
                reply.status == StatusCode::OK || broke_a_rule,
                "{} {}", reply.status, String::from_utf8_lossy(&reply.body)
            );
            if reply.status == StatusCode::OK {
                let id = reply.json()["uploadId"].as_str().map(str::to_string);
                prop_assert!(id.is_some_and(|id| crate::domain::types::UploadId::parse(&id).is_ok()));
            }
        } else {
            prop_assert_eq!(reply.status, StatusCode::BAD_REQUEST);
            prop_assert_eq!(named, wrong);
        }
    }

    #[test]
    fn any_body_to_the_json_routes_answers_a_4xx_or_success_never_a_5xx(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            json_value().prop_map(|v| v.to_string().into_bytes()),
            "[ \t\r\n]{0,4}".prop_map(String::into_bytes),
            "\\{\"[a-zA-Z]{1,12}\": ?[0-9a-z\"\\[\\]{},.:-]{0,16}\\}?".prop_map(String::into_bytes),
            (17_000usize..17_100).prop_map(|n| format!("{{\"filename\":\"{}\"}}", "a".repeat(n)).into_bytes()),
        ],
        route in prop::sample::select(vec![
            "/api/upload/initiate",
            "/api/upload/complete/0123456789ABCDEF",
            "/api/file/ABCDEFGHJK",
            "/api/clip/ABCDEFGHJK",
        ]),
        content_type in prop::option::of(prop_oneof![Just("application/json".to_string()), "[ -~]{0,20}"]),
    ) {
        let len = body.len();
        let text = String::from_utf8(body.clone()).ok();
        let reply = post_raw(route, content_type.as_deref(), body);
        prop_assert!(
            reply.status.is_client_error() || reply.status.is_success(),
            "{} {}", reply.status, String::from_utf8_lossy(&reply.body)
        );
        if len > 16 << 10 {
            prop_assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        }
        let parsed = text.as_deref().map(serde_json::from_str::<Value>);
        let blank = text.as_deref().is_some_and(|t| t.trim_matches(|c: char| c.is_ascii_whitespace()).is_empty());
        let object = matches!(parsed, Some(Ok(Value::Object(_))));
        if len <= 16 << 10 && !blank && !object {
            prop_assert_eq!(reply.status, StatusCode::BAD_REQUEST);
            let json = reply.json();
            prop_assert_eq!(json["code"].as_str(), Some("invalid_json"));
        }
    }

    #[test]
    fn a_host_header_is_the_base_of_links_only_when_it_is_a_plain_authority(
        host in prop_oneof![
            "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
            "[ -~]{0,30}",
            prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..20)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ],
    ) {
        let Ok(value) = axum::http::HeaderValue::from_str(&host) else { return Ok(()) };
        let reply = server().send(
            Request::put("/api/clips/host.txt").header(header::HOST, value).body(Body::from("x")).expect("a request"),
        );
        prop_assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
        let line = std::str::from_utf8(&reply.body).expect("a text answer");
        let plain = !host.is_empty() && host.len() <= 255 && host.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        let base = format!("http://{}/", if plain { host.as_str() } else { "localhost" });
        prop_assert!(line.starts_with(&base), "{:?} gave {:?}", host, line);
        prop_assert!(line.ends_with('\n') && line.matches('\n').count() == 1 && !line.contains('\r'));
    }
}
