//! Properties of `Range` and `If-Range`: the header parser (`domain::range`) on any text, the
//! round trip of every single range it takes, its refusal of what it must ignore, the resolution
//! against a size, and what `GET /raw/<id>` serves for any Range/If-Range pair against clips
//! stored as one blob and as parts (where a range maps onto several part blobs).

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use proptest::prelude::*;

use super::server;
use crate::domain::range::{RangeHeader, RangeSpec};

/// The largest number the parser takes (19 digits; 20 could overflow u64).
const MAX_POS: u64 = 9_999_999_999_999_999_999;

fn position() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..4000, 1 => 0u64..=MAX_POS, 1 => Just(MAX_POS)]
}

fn spec() -> impl Strategy<Value = RangeSpec> {
    prop_oneof![
        (position(), position()).prop_map(|(a, b)| RangeSpec::FromTo(a.min(b), a.max(b))),
        position().prop_map(RangeSpec::From),
        position().prop_map(RangeSpec::Suffix),
    ]
}

/// Optional whitespace where the parser tolerates it.
fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just("\t"), 1 => Just("  ")]
}

/// A number written with leading zeros up to the 19 digits the parser reads.
fn write_num(n: u64, zeros: usize) -> String {
    let digits = n.to_string();
    let pad = zeros.min(19usize.saturating_sub(digits.len()));
    format!("{}{digits}", "0".repeat(pad))
}

/// `spec` as a client may write it, with the padding chosen by `style`.
fn write_spec(spec: RangeSpec, style: (&str, &str, &str, &str, usize)) -> String {
    let (outer, inner, around_dash, tail, zeros) = style;
    let body = match spec {
        RangeSpec::FromTo(a, b) => {
            format!("{}{around_dash}-{around_dash}{}", write_num(a, zeros), write_num(b, zeros))
        }
        RangeSpec::From(a) => format!("{}{around_dash}-", write_num(a, zeros)),
        RangeSpec::Suffix(n) => format!("-{around_dash}{}", write_num(n, zeros)),
    };
    format!("{outer}bytes={inner}{body}{tail}{outer}")
}

/// What RFC 9110 makes of a single range against `size` bytes: the half-open byte range, or
/// `None` when it is unsatisfiable. Written apart from the code under test.
fn rfc_range(spec: RangeSpec, size: u64) -> Option<(u64, u64)> {
    match spec {
        RangeSpec::FromTo(first, last) if first < size => Some((first, last.min(size - 1) + 1)),
        RangeSpec::From(first) if first < size => Some((first, size)),
        RangeSpec::Suffix(n) if n > 0 && size > 0 => Some((size - n.min(size), size)),
        _ => None,
    }
}

/// Clips on the test server: their bytes, code and entity tag.
struct Fixture {
    content: Vec<u8>,
    code: String,
    etag: String,
}

fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let s = server();
        let bytes = |n: usize| (0..n).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>();
        // (content, how it is cut: None is one request, one blob).
        let made: [(Vec<u8>, Option<&[usize]>); 6] = [
            (bytes(0), Some(&[0])),
            (bytes(1), Some(&[1])),
            (bytes(1000), Some(&[1000])),
            (bytes(2500), Some(&[1024, 1024, 452])),
            (bytes(2000), Some(&[700, 0, 1, 1024, 275])),
            (bytes(1500), None),
        ];
        made.into_iter()
            .map(|(content, cuts)| {
                let code = match cuts {
                    Some(cuts) => s.upload(&content, cuts),
                    None => s.put(&content),
                };
                let info = s.send(Request::get(format!("/raw/{code}")).body(Body::empty()).expect("a request"));
                assert_eq!(info.status, StatusCode::OK);
                assert_eq!(info.body.as_ref(), content.as_slice());
                let etag = info.header("etag").expect("downloads carry an ETag").to_string();
                Fixture { content, code, etag }
            })
            .collect()
    })
}

/// How an If-Range header is sent: absent, the current tag, or something that is not it.
#[derive(Debug, Clone)]
enum IfRange {
    Absent,
    Current,
    Weak,
    Unquoted,
    Other(String),
    /// Bytes a header may carry but that are not text (obs-text).
    NotText(Vec<u8>),
}

fn if_range() -> impl Strategy<Value = IfRange> {
    prop_oneof![
        3 => Just(IfRange::Absent),
        3 => Just(IfRange::Current),
        1 => Just(IfRange::Weak),
        1 => Just(IfRange::Unquoted),
        1 => Just(IfRange::Other("Wed, 21 Oct 2015 07:28:00 GMT".into())),
        1 => "\"[0-9a-f]{64}\"".prop_map(IfRange::Other),
        1 => "[ -~]{0,40}".prop_map(IfRange::Other),
        1 => (prop::collection::vec(0x20u8..0x7f, 0..4), prop::collection::vec(0x80u8..=0xff, 1..4))
            .prop_map(|(text, high)| IfRange::NotText([text, high].concat())),
    ]
}

/// A header value the client may send: printable text, with some non-ASCII now and then.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "bytes=[0-9, \t=-]{0,30}",
        2 => "[a-zA-Z ]{0,6}=?[0-9-]{0,8}",
        1 => "[ -~]{0,40}",
        1 => "[ -~\u{80}-\u{10FFFF}]{0,20}",
    ]
}

fn get_raw(fixture: &Fixture, range: Option<&str>, if_range: Option<&[u8]>) -> super::Reply {
    let mut req = Request::get(format!("/raw/{}/props.bin", fixture.code));
    if let Some(r) = range {
        req = req.header(header::RANGE, r);
    }
    if let Some(t) = if_range {
        req = req.header(header::IF_RANGE, HeaderValue::from_bytes(t).expect("a header value"));
    }
    server().send(req.body(Body::empty()).expect("a request"))
}

/// `bytes <first>-<last>/<size>` read back.
fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.strip_prefix("bytes ")?;
    let (span, size) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?, size.parse().ok()?))
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn parsing_any_range_text_never_panics_and_a_bounded_range_is_ordered(raw in "\\PC*|bytes=[0-9 ,-]{0,44}") {
        if let RangeHeader::Single(RangeSpec::FromTo(a, b)) = RangeHeader::parse(&raw) {
            prop_assert!(a <= b);
        }
    }

    #[test]
    fn a_single_range_as_clients_write_it_parses_back_to_the_same_spec(
        spec in spec(),
        style in (ws(), ws(), ws(), ws(), 0usize..4),
    ) {
        let written = write_spec(spec, style);
        prop_assert_eq!(RangeHeader::parse(&written), RangeHeader::Single(spec), "{:?}", written);
    }

    #[test]
    fn several_ranges_other_units_reversed_or_malformed_specs_are_ignored_never_misread(
        specs in prop::collection::vec(spec(), 2..5),
        unit in "[a-z]{1,8}",
        (a, b) in (1u64..=MAX_POS, 0u64..=MAX_POS),
        junk in "[+a-zA-Z._]{1,3}",
        long in 20usize..30,
        which in 0usize..7,
    ) {
        let style = ("", "", "", "", 0);
        let raw = match which {
            0 => format!("bytes={}", specs.iter().map(|s| write_spec(*s, style)["bytes=".len()..].to_string())
                .collect::<Vec<_>>().join(",")),
            1 if unit != "bytes" => write_spec(specs[0], style).replacen("bytes", &unit, 1),
            2 if a > b => format!("bytes={a}-{b}"),
            3 => format!("bytes={a}{junk}-"),
            4 => format!("bytes=-{junk}{b}"),
            5 => format!("bytes={}-", "1".repeat(long)),
            _ => "bytes=-".to_string(),
        };
        prop_assert_eq!(RangeHeader::parse(&raw), RangeHeader::Ignore, "{:?}", raw);
    }

    #[test]
    fn a_resolved_range_is_never_empty_and_lies_inside_the_content(spec in spec(), size in position()) {
        let resolved = spec.resolve(size);
        if let Some(r) = &resolved {
            prop_assert!(r.start < r.end && r.end <= size, "{:?} of {} gave {:?}", spec, size, r);
        }
        prop_assert_eq!(resolved.map(|r| (r.start, r.end)), rfc_range(spec, size));
    }

    #[test]
    fn raw_downloads_serve_the_exact_slice_a_range_asks_for_while_if_range_matches(
        which in 0usize..6,
        spec in spec(),
        style in (ws(), ws(), ws(), ws(), 0usize..3),
        if_range in if_range(),
    ) {
        let f = &fixtures()[which];
        let size = f.content.len() as u64;
        let tag = match &if_range {
            IfRange::Absent => None,
            IfRange::Current => Some(f.etag.clone().into_bytes()),
            IfRange::Weak => Some(format!("W/{}", f.etag).into_bytes()),
            IfRange::Unquoted => Some(f.etag.trim_matches('"').as_bytes().to_vec()),
            IfRange::Other(t) => Some(t.clone().into_bytes()),
            IfRange::NotText(bytes) => Some(bytes.clone()),
        };
        let reply = get_raw(f, Some(&write_spec(spec, style)), tag.as_deref());
        // Only the current strong tag (or no If-Range) lets the range through (RFC 9110 13.1.5).
        let applies = tag.as_deref().is_none_or(|t| t == f.etag.as_bytes());
        match (applies, rfc_range(spec, size)) {
            (true, Some((start, end))) => {
                prop_assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
                prop_assert_eq!(reply.body.as_ref(), &f.content[start as usize..end as usize]);
                let expected = format!("bytes {start}-{}/{size}", end - 1);
                prop_assert_eq!(reply.header("content-range"), Some(expected.as_str()));
                let expected_length = (end - start).to_string();
                prop_assert_eq!(reply.header("content-length"), Some(expected_length.as_str()));
            }
            (true, None) => {
                prop_assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
                let expected = format!("bytes */{size}");
                prop_assert_eq!(reply.header("content-range"), Some(expected.as_str()));
            }
            (false, _) => {
                prop_assert_eq!(reply.status, StatusCode::OK);
                prop_assert_eq!(reply.body.as_ref(), f.content.as_slice());
                prop_assert!(reply.header("content-range").is_none());
            }
        }
    }

    #[test]
    fn any_range_and_if_range_text_answers_200_206_or_416_with_bytes_that_agree(
        which in 0usize..6,
        range in prop::option::of(header_text()),
        if_range in prop::option::of(prop_oneof![header_text(), Just(String::new())]),
        use_tag in any::<bool>(),
    ) {
        let f = &fixtures()[which];
        let size = f.content.len() as u64;
        let if_range = if use_tag { Some(f.etag.clone()) } else { if_range };
        let reply = get_raw(f, range.as_deref(), if_range.as_deref().map(str::as_bytes));
        match reply.status {
            StatusCode::OK => {
                prop_assert_eq!(reply.body.as_ref(), f.content.as_slice());
                prop_assert!(reply.header("content-range").is_none());
            }
            StatusCode::PARTIAL_CONTENT => {
                let (first, last, total) = reply.header("content-range").and_then(content_range)
                    .expect("a 206 says which bytes");
                prop_assert_eq!(total, size);
                prop_assert!(first <= last && last < size);
                prop_assert_eq!(reply.body.as_ref(), &f.content[first as usize..=last as usize]);
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let expected = format!("bytes */{size}");
                prop_assert_eq!(reply.header("content-range"), Some(expected.as_str()));
            }
            other => prop_assert!(false, "{} for Range {:?} If-Range {:?}", other, range, if_range),
        }
        if reply.status != StatusCode::OK {
            // Only a Range the parser took, under an If-Range that matches (or none), is served
            // partially or refused.
            let parsed = range.as_deref().map(RangeHeader::parse);
            prop_assert!(matches!(parsed, Some(RangeHeader::Single(_))));
            prop_assert!(if_range.as_deref().is_none_or(|t| t == f.etag));
        }
    }
}
