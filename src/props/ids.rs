//! Properties of the newtypes in `domain::types` that client text is parsed into: clip and
//! upload ids (what the code generates parses back; any other text is refused, never taken in
//! part), chunk indexes, expiries, kinds, filenames, MIME types, access codes, download limits,
//! format versions, the V4 stream header and the encrypted metadata block, and the blob keys
//! an upload id becomes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

use crate::domain::types::{
    AccessCode, ChunkIndex, ClipId, ClipKind, EncryptedMeta, Expiry, Filename, FormatVersion, MaxDownloads, MimeType,
    StreamHeader, UploadId,
};
use crate::domain::uploads::{chunk_prefix, clip_blob_key};

/// Text that often looks like an id: the alphabets ids use, their lower-case and neighbours,
/// lengths around the valid ones, and anything at all.
fn id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z0-9]{5,11}",
        "[A-Fa-f0-9]{15,17}",
        "[A-Z0-9a-z/%. +-]{0,18}",
        "[0-9]{0,9}",
        "\\PC{0,20}",
        ".{0,20}",
    ]
}

fn token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn generated_clip_and_upload_ids_parse_back_to_themselves(quick in any::<bool>()) {
        let id = ClipId::generate(quick);
        prop_assert_eq!(ClipId::parse(id.as_str()), Ok(id.clone()));
        prop_assert_eq!(id.is_quick(), quick);
        let upload = UploadId::generate();
        prop_assert_eq!(UploadId::parse(upload.as_str()), Ok(upload.clone()));
        // The keys a generated id becomes are valid (the code `expect`s it).
        prop_assert!(clip_blob_key(upload.as_str()).as_str().ends_with(upload.as_str()));
    }

    #[test]
    fn a_clip_id_is_exactly_ten_or_six_of_a_to_z_and_0_to_9(raw in id_like()) {
        let shaped = (raw.len() == 10 || raw.len() == 6)
            && raw.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        match ClipId::parse(&raw) {
            Ok(id) => {
                prop_assert!(shaped, "{:?} taken", raw);
                prop_assert_eq!(id.as_str(), raw.as_str());
                prop_assert_eq!(id.is_quick(), raw.len() == 6);
            }
            Err(msg) => prop_assert!(!shaped && !msg.is_empty(), "{:?} refused", raw),
        }
    }

    #[test]
    fn an_upload_id_is_exactly_sixteen_upper_case_hex_digits_and_makes_a_valid_chunk_prefix(raw in id_like()) {
        let shaped = raw.len() == 16 && raw.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        match UploadId::parse(&raw) {
            Ok(id) => {
                prop_assert!(shaped, "{:?} taken", raw);
                prop_assert_eq!(id.as_str(), raw.as_str());
                // Client-given ids reach chunk_prefix, which must not panic on them.
                let expected = format!("chunks/{raw}");
                let prefix = chunk_prefix(id.as_str());
                prop_assert_eq!(prefix.as_str(), expected.as_str());
            }
            Err(_) => prop_assert!(!shaped, "{:?} refused", raw),
        }
    }

    #[test]
    fn chunk_indexes_round_trip_and_only_plain_short_decimals_are_taken(n in 0u32..10_000_000, raw in id_like()) {
        prop_assert_eq!(ChunkIndex::parse(&n.to_string()), Ok(ChunkIndex(n)));
        let shaped = (1..=7).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit());
        match ChunkIndex::parse(&raw) {
            Ok(ChunkIndex(i)) => {
                prop_assert!(shaped, "{:?} taken", raw);
                prop_assert_eq!(Ok(i), raw.parse::<u32>());
            }
            Err(_) => prop_assert!(!shaped, "{:?} refused", raw),
        }
    }

    #[test]
    fn expiries_and_kinds_take_only_their_own_names(raw in "[0-9a-z]{0,6}|\\PC{0,8}", pick in 0usize..6) {
        let e = Expiry::ALL[pick];
        prop_assert_eq!(Expiry::parse(e.as_str()), Ok(e));
        prop_assert_eq!(Expiry::parse(&raw).is_ok(), Expiry::ALL.iter().any(|e| e.as_str() == raw));
        if let Ok(parsed) = Expiry::parse(&raw) {
            prop_assert_eq!(parsed.as_str(), raw.as_str());
        }
        // Longer names live longer, and millis agree with the duration.
        for pair in Expiry::ALL.windows(2) {
            prop_assert!(pair[0].duration() < pair[1].duration());
        }
        prop_assert_eq!(e.millis() as u128, e.duration().as_millis());
        for kind in [ClipKind::Text, ClipKind::File] {
            prop_assert_eq!(ClipKind::parse(kind.as_str()), Ok(kind));
        }
        prop_assert_eq!(ClipKind::parse(&raw).is_ok(), raw == "text" || raw == "file");
    }

    #[test]
    fn a_filename_is_one_to_255_characters_without_separators_or_controls(
        raw in prop_oneof!["\\PC{0,12}", ".{0,12}", "[./\\\\ ]{0,3}", "[a-z]{250,260}"],
    ) {
        let n = raw.chars().count();
        let shaped = (1..=255).contains(&n)
            && !raw.chars().any(|c| c.is_control() || c == '/' || c == '\\')
            && raw != "."
            && raw != ".."
            && !raw.trim().is_empty();
        match Filename::parse(&raw) {
            Ok(name) => {
                prop_assert!(shaped, "{:?} taken", raw);
                prop_assert_eq!(name.as_str(), raw.as_str());
            }
            Err(_) => prop_assert!(!shaped, "{:?} refused", raw),
        }
    }

    #[test]
    fn a_mime_type_taken_is_visible_ascii_fit_for_a_header_and_well_formed_ones_round_trip(
        t in "[a-z0-9.+-]{1,20}",
        sub in "[a-z0-9.+-]{1,20}",
        params in "(; [a-z]{1,8}=[a-z0-9-]{1,10}){0,2}",
        raw in "[ -~]{0,30}|\\PC{0,30}|[a-z]{1,5}/[a-z]{1,5}[\\r\\n\\x00\\x7f][ -~]{0,5}",
    ) {
        let good = format!("{t}/{sub}{params}");
        if good.len() <= 100 {
            prop_assert_eq!(MimeType::parse(&good).map(|m| m.as_str().to_string()), Ok(good.clone()));
        }
        if let Ok(m) = MimeType::parse(&raw) {
            prop_assert!(m.as_str().len() <= 100 && m.as_str().bytes().all(|b| (0x20..0x7f).contains(&b)));
            prop_assert!(axum::http::HeaderValue::from_str(m.as_str()).is_ok());
            let essence = raw.split(';').next().unwrap_or("").trim();
            let (a, b) = essence.split_once('/').expect("a slash");
            prop_assert!(token(a) && token(b), "{:?}", raw);
        }
    }

    #[test]
    fn access_codes_take_one_to_256_characters_and_download_limits_one_to_10000(
        raw in prop_oneof!["\\PC{0,10}", ".{250,260}"],
        n in prop_oneof![0u64..=10_001, any::<u64>()],
    ) {
        let chars = raw.chars().count();
        match AccessCode::parse(&raw) {
            Ok(code) => {
                prop_assert!((1..=256).contains(&chars));
                prop_assert_eq!(code.expose(), raw.as_str());
                // The code never prints.
                prop_assert_eq!(format!("{code:?}"), "AccessCode(***)");
            }
            Err(_) => prop_assert!(!(1..=256).contains(&chars)),
        }
        match MaxDownloads::new(n) {
            Ok(MaxDownloads(m)) => prop_assert!((1..=10_000).contains(&n) && u64::from(m) == n),
            Err(_) => prop_assert!(!(1..=10_000).contains(&n)),
        }
        let format = FormatVersion::from_number(n);
        prop_assert_eq!(format.is_ok(), n == 3 || n == 4);
        if let Ok(f) = format {
            prop_assert_eq!(f as u64, n);
        }
    }

    #[test]
    fn a_v4_stream_header_is_taken_only_when_it_follows_the_format_rules(
        mut bytes in prop::collection::vec(any::<u8>(), 0..40),
        conform in any::<bool>(),
        log2 in 12u8..=24,
        flags in 0u8..=1,
    ) {
        if conform && bytes.len() >= StreamHeader::LEN {
            bytes[0] = 4;
            bytes[1] = flags;
            bytes[2] = log2;
            bytes[3] = 0;
            bytes[27] = 0;
        }
        let follows = bytes.len() >= StreamHeader::LEN
            && bytes[0] == 4
            && bytes[1] & !1 == 0
            && (12..=24).contains(&bytes[2])
            && bytes[3] == 0
            && bytes[27] == 0;
        match StreamHeader::parse(&bytes) {
            Ok(header) => {
                prop_assert!(follows);
                // What is kept is the first 28 bytes, and it decodes back to them.
                let kept = URL_SAFE_NO_PAD.decode(header.to_base64url()).expect("base64url");
                prop_assert_eq!(kept.as_slice(), &bytes[..StreamHeader::LEN]);
            }
            Err(_) => prop_assert!(!follows),
        }
    }

    #[test]
    fn encrypted_metadata_is_base64url_of_a_version_4_block_of_29_to_4125_bytes(
        len in prop_oneof![0usize..40, 4100usize..4140],
        first in prop_oneof![Just(4u8), any::<u8>()],
        fill in any::<u8>(),
        raw in "[A-Za-z0-9_=+/-]{0,60}|\\PC{0,30}",
    ) {
        let mut block = vec![fill; len];
        if let Some(b) = block.first_mut() {
            *b = first;
        }
        let encoded = URL_SAFE_NO_PAD.encode(&block);
        let fits = (29..=EncryptedMeta::MAX_DECODED).contains(&len) && first == 4;
        match EncryptedMeta::parse(&encoded) {
            Ok(meta) => {
                prop_assert!(fits);
                prop_assert_eq!(meta.into_string(), encoded);
            }
            Err(_) => prop_assert!(!fits),
        }
        if let Ok(meta) = EncryptedMeta::parse(&raw) {
            let decoded = URL_SAFE_NO_PAD.decode(meta.into_string()).expect("taken metadata decodes");
            prop_assert!(decoded.len() >= 29 && decoded.len() <= EncryptedMeta::MAX_DECODED && decoded[0] == 4);
        }
    }
}
