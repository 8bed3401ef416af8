//! Properties of the Content-Disposition downloads carry (`http::download::content_disposition`):
//! for any name the value is a valid header without CR, LF or NUL; bidirectional-text controls
//! never reach it (they could make `evil\u{202E}fdp.exe` display as `evilexe.pdf`); the
//! `filename*` parameter decodes back to the name without them and the ASCII fallback keeps
//! every printable character it can. Checked on the function and on real downloads of clips
//! stored under the name.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use proptest::prelude::*;

use super::server;
use crate::domain::types::Filename;
use crate::http::download::content_disposition;

/// The characters that reorder displayed text.
const BIDI: [char; 12] = [
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
    '\u{200E}', '\u{200F}', '\u{061C}',
];

/// Names with bidi controls, quotes, percent signs, controls and any text mixed in.
fn name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => "[a-zA-Z0-9 ._-]{1,6}",
        2 => prop::sample::select(BIDI.to_vec()).prop_map(String::from),
        1 => prop::sample::select(vec!["\"", "\\", "%", "%22", ";", "'", "\r", "\n", "\0", "\t", "\u{7f}"])
            .prop_map(String::from),
        1 => "\\PC{1,4}",
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

/// `(fallback, decoded filename*)` of a value this code writes.
fn read_back(value: &str) -> Option<(String, String)> {
    let rest = value.strip_prefix("attachment; filename=\"")?;
    let end = rest.find('"')?;
    let (fallback, rest) = rest.split_at(end);
    let encoded = rest.strip_prefix("\"; filename*=UTF-8''")?;
    let attr_chars = encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~%".contains(&b));
    if !attr_chars {
        return None;
    }
    let decoded = percent_decode_str(encoded).decode_utf8().ok()?.into_owned();
    Some((fallback.to_string(), decoded))
}

fn without_bidi(name: &str) -> String {
    name.chars().filter(|c| !BIDI.contains(c)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn the_content_disposition_of_any_name_is_a_valid_header_without_cr_lf_or_nul(
        name in prop_oneof![name(), any::<String>()],
    ) {
        let value = content_disposition(&name);
        prop_assert!(!value.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
        let text = value.to_str().expect("visible ASCII");
        prop_assert!(axum::http::HeaderValue::from_str(text).is_ok());
        prop_assert!(text.starts_with("attachment"));
    }

    #[test]
    fn bidi_controls_never_reach_a_download_name_and_filename_star_decodes_to_the_rest(name in name()) {
        let value = content_disposition(&name);
        let (fallback, decoded) = read_back(value.to_str().expect("visible ASCII")).expect("the shape written");
        prop_assert!(!decoded.chars().any(|c| BIDI.contains(&c)), "{:?}", decoded);
        let kept = without_bidi(&name);
        let expected = if kept.is_empty() { "download".to_string() } else { kept };
        prop_assert_eq!(&decoded, &expected);
        // The fallback is the same name with each character it cannot carry as `_`.
        prop_assert_eq!(fallback.chars().count(), expected.chars().count());
        for (f, c) in fallback.chars().zip(expected.chars()) {
            let carried = (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '%');
            prop_assert_eq!(f, if carried { c } else { '_' });
        }
    }

    #[test]
    fn a_clip_stored_under_any_name_downloads_under_that_name_without_bidi_controls(name in name()) {
        let s = server();
        let path = format!("/api/clips/{}", utf8_percent_encode(&name, NON_ALPHANUMERIC));
        let reply = s.send(
            Request::put(path)
                .header(header::ACCEPT, "application/json")
                .body(Body::from("x"))
                .expect("a request"),
        );
        if name.is_empty() {
            // No name: another route, which asks for one.
            prop_assert!(reply.status.is_client_error());
            return Ok(());
        }
        if Filename::parse(&name).is_err() {
            prop_assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", name);
            return Ok(());
        }
        prop_assert_eq!(reply.status, StatusCode::OK, "{:?}: {}", name, String::from_utf8_lossy(&reply.body));
        let code = reply.json()["clipId"].as_str().expect("a clip id").to_string();
        let raw = s.send(Request::get(format!("/raw/{code}")).body(Body::empty()).expect("a request"));
        prop_assert_eq!(raw.status, StatusCode::OK);
        let value = raw.header("content-disposition").expect("a download names its file");
        let (_, decoded) = read_back(value).expect("the shape written");
        let kept = without_bidi(&name);
        prop_assert_eq!(decoded, if kept.is_empty() { "download".to_string() } else { kept });
    }
}
