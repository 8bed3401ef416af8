//! Newtypes parsed at the HTTP edge: raw strings and integers never travel further in. Each
//! `parse` returns a sentence fit for a validation error; generators are uniform (no modulo
//! bias) and use the OS-seeded thread RNG.

use std::fmt;
use std::time::Duration;

use rand::Rng;

const CODE_ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A clip's public code: 10 chars of `[A-Z0-9]`, or 6 for quick shares.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClipId(String);

impl ClipId {
    pub const LEN: usize = 10;
    pub const QUICK_LEN: usize = 6;

    pub fn parse(raw: &str) -> Result<ClipId, &'static str> {
        let ok_len = raw.len() == Self::LEN || raw.len() == Self::QUICK_LEN;
        if ok_len && raw.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            Ok(ClipId(raw.to_string()))
        } else {
            Err("must be 10 (or 6 for quick share) characters of A-Z and 0-9")
        }
    }

    /// A fresh random code; `quick` gives the 6-character form.
    pub fn generate(quick: bool) -> ClipId {
        let len = if quick { Self::QUICK_LEN } else { Self::LEN };
        let mut rng = rand::rng();
        // random_range draws uniformly from 0..36 (rejection sampling, no modulo bias).
        ClipId((0..len).map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_quick(&self) -> bool {
        self.0.len() == Self::QUICK_LEN
    }
}

/// An upload session id: 16 upper-case hex characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    pub fn parse(raw: &str) -> Result<UploadId, &'static str> {
        if raw.len() == 16 && raw.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)) {
            Ok(UploadId(raw.to_string()))
        } else {
            Err("must be 16 upper-case hexadecimal characters")
        }
    }

    pub fn generate() -> UploadId {
        UploadId(format!("{:016X}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(&self.0) }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { write!(f, "{}({})", stringify!($t), self.0) }
        }
    )*};
}
display_as_str!(ClipId, UploadId);

/// Zero-based chunk number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkIndex(pub u32);

impl ChunkIndex {
    pub fn parse(raw: &str) -> Result<ChunkIndex, &'static str> {
        // Plain decimal only: no sign, no leading '+', bounded length.
        if raw.is_empty() || raw.len() > 7 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be a non-negative integer");
        }
        raw.parse().map(ChunkIndex).map_err(|_| "must be a non-negative integer")
    }
}

/// The lifetimes a clip can be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expiry {
    Min5,
    Min15,
    Min30,
    Hr1,
    Hr6,
    Hr24,
}

impl Expiry {
    pub const ALL: [Expiry; 6] = [Expiry::Min5, Expiry::Min15, Expiry::Min30, Expiry::Hr1, Expiry::Hr6, Expiry::Hr24];

    pub fn parse(raw: &str) -> Result<Expiry, &'static str> {
        Expiry::ALL.into_iter().find(|e| e.as_str() == raw).ok_or("must be one of 5min 15min 30min 1hr 6hr 24hr")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Expiry::Min5 => "5min",
            Expiry::Min15 => "15min",
            Expiry::Min30 => "30min",
            Expiry::Hr1 => "1hr",
            Expiry::Hr6 => "6hr",
            Expiry::Hr24 => "24hr",
        }
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Expiry::Min5 => 5 * 60,
            Expiry::Min15 => 15 * 60,
            Expiry::Min30 => 30 * 60,
            Expiry::Hr1 => 3600,
            Expiry::Hr6 => 6 * 3600,
            Expiry::Hr24 => 24 * 3600,
        })
    }

    pub fn millis(self) -> i64 {
        self.duration().as_millis() as i64
    }
}

/// Whether a clip holds text or a file (both are opaque bytes to the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipKind {
    Text,
    File,
}

impl ClipKind {
    pub fn parse(raw: &str) -> Result<ClipKind, &'static str> {
        match raw {
            "text" => Ok(ClipKind::Text),
            "file" => Ok(ClipKind::File),
            _ => Err("must be \"text\" or \"file\""),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClipKind::Text => "text",
            ClipKind::File => "file",
        }
    }
}

/// A display filename: 1..=255 characters, no path separators, no control characters.
/// It is never used as a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filename(String);

impl Filename {
    pub fn parse(raw: &str) -> Result<Filename, &'static str> {
        let n = raw.chars().count();
        if n == 0 || n > 255 {
            return Err("must be 1 to 255 characters");
        }
        if raw.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
            return Err("must not contain path separators or control characters");
        }
        if raw == "." || raw == ".." || raw.trim().is_empty() {
            return Err("must be a file name");
        }
        Ok(Filename(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A MIME type as `type/subtype` of token characters (parameters allowed), ≤ 100 chars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MimeType(String);

impl MimeType {
    pub fn parse(raw: &str) -> Result<MimeType, &'static str> {
        let err = "must be a MIME type like text/plain (at most 100 characters)";
        if raw.is_empty() || raw.len() > 100 {
            return Err(err);
        }
        let essence = raw.split(';').next().unwrap_or("").trim();
        let token =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
        match essence.split_once('/') {
            Some((t, s)) if token(t) && token(s) && raw.bytes().all(|b| (0x20..0x7f).contains(&b)) => {
                Ok(MimeType(raw.to_string()))
            }
            _ => Err(err),
        }
    }

    pub fn octet_stream() -> MimeType {
        MimeType("application/octet-stream".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An access code as the client sends it (Qopy's PBKDF2 hex, or any 1..=256-char string).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessCode(String);

impl AccessCode {
    pub fn parse(raw: &str) -> Result<AccessCode, &'static str> {
        let n = raw.chars().count();
        if (1..=256).contains(&n) { Ok(AccessCode(raw.to_string())) } else { Err("must be 1 to 256 characters") }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessCode(***)")
    }
}

/// A download limit: 1..=10000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxDownloads(pub u32);

impl MaxDownloads {
    pub fn new(n: u64) -> Result<MaxDownloads, &'static str> {
        if (1..=10_000).contains(&n) { Ok(MaxDownloads(n as u32)) } else { Err("must be between 1 and 10000") }
    }
}

/// The encryption format a browser client declares at complete (FORMAT.md): Qopy's V3 or
/// ferry's streaming V4. Absent means 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatVersion {
    V3 = 3,
    V4 = 4,
}

impl FormatVersion {
    pub fn from_number(n: u64) -> Result<FormatVersion, &'static str> {
        match n {
            3 => Ok(FormatVersion::V3),
            4 => Ok(FormatVersion::V4),
            _ => Err("must be 3 or 4"),
        }
    }
}

/// The 28-byte header a V4 stream starts with, checked against FORMAT.md's rules: version 4,
/// flags bit 0 only, record size 2^12..=2^24, the two reserved bytes zero.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StreamHeader([u8; StreamHeader::LEN]);

impl StreamHeader {
    pub const LEN: usize = 28;

    pub fn parse(bytes: &[u8]) -> Result<StreamHeader, &'static str> {
        let header: [u8; Self::LEN] =
            bytes.get(..Self::LEN).and_then(|b| b.try_into().ok()).ok_or("the stream is shorter than a V4 header")?;
        let [version, flags, log2, reserved, ..] = header;
        if version != 4 || flags & !1 != 0 || !(12..=24).contains(&log2) || reserved != 0 || header[27] != 0 {
            return Err("chunk 0 does not begin with a V4 header");
        }
        Ok(StreamHeader(header))
    }

    /// The stream's record size as log2 (12..=24).
    pub fn record_log2(&self) -> u8 {
        self.0[2]
    }

    pub fn to_base64url(self) -> String {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, self.0)
    }
}

/// A V4 file's encrypted metadata as the client sends it: base64url without padding of
/// `0x04 ‖ nonce[12] ‖ AES-GCM(padded JSON)`. The JSON of one file is at most 4096 bytes; a ZIP
/// of several files carries the list of its entries and may take up to 64 KiB (docs/format.md),
/// so at most 65 565 bytes decoded. Opaque otherwise. (The lookup cache weighs entries by
/// their bytes, so large metadata costs cache room, never more memory than configured.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedMeta(String);

impl EncryptedMeta {
    /// 1 version byte + 12 nonce bytes + 64 KiB of padded JSON + 16 tag bytes.
    pub const MAX_DECODED: usize = 1 + 12 + 65536 + 16;

    pub fn parse(raw: &str) -> Result<EncryptedMeta, &'static str> {
        const SHAPE: &str = "must be base64url (no padding) of a V4 metadata block, at most 65565 bytes";
        if raw.len() > Self::MAX_DECODED.div_ceil(3) * 4 {
            return Err(SHAPE);
        }
        let decoded =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw).map_err(|_| SHAPE)?;
        if decoded.len() < 1 + 12 + 16 || decoded.len() > Self::MAX_DECODED || decoded[0] != 4 {
            return Err(SHAPE);
        }
        Ok(EncryptedMeta(raw.to_string()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A random secret token (hex), e.g. a delete token.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_parse_and_use_the_whole_alphabet() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let id = ClipId::generate(false);
            assert!(ClipId::parse(id.as_str()).is_ok());
            seen.extend(id.as_str().chars());
            assert!(ClipId::generate(true).is_quick());
        }
        assert_eq!(seen.len(), 36);
        assert!(UploadId::parse(UploadId::generate().as_str()).is_ok());
    }

    #[test]
    fn malformed_ids_and_values_are_refused() {
        for bad in ["", "abcdefghij", "ABCDEFGHI", "ABCDEFGHIJK", "ABCDE/GHIJ", "ÄBCDEFGHIJ"] {
            assert!(ClipId::parse(bad).is_err(), "{bad}");
        }
        assert!(UploadId::parse("0123456789abcdef").is_err());
        for bad in ["", "-1", "+1", "1.5", "99999999", " 1"] {
            assert!(ChunkIndex::parse(bad).is_err(), "{bad}");
        }
        for bad in ["", "..", "a/b", "a\\b", "a\nb", "a\0b", &"x".repeat(256)] {
            assert!(Filename::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Filename::parse("résumé 東京.pdf").is_ok());
        assert!(MimeType::parse("text/html; charset=utf-8").is_ok());
        for bad in ["text", "text/", "a b/c", "text/plain\r\nX: y"] {
            assert!(MimeType::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Expiry::parse("2hr").is_err());
        assert_eq!(Expiry::parse("24hr").unwrap().millis(), 86_400_000);
        assert!(MaxDownloads::new(0).is_err() && MaxDownloads::new(10_001).is_err());
    }

    #[test]
    fn only_format_rule_conforming_v4_headers_and_metadata_blocks_are_taken() {
        let mut good = [0u8; 28];
        good[0] = 4;
        good[2] = 16;
        assert!(StreamHeader::parse(&good).is_ok());
        assert_eq!(StreamHeader::parse(&good).unwrap().to_base64url().len(), 38);
        for (at, value) in [(0, 3), (1, 2), (2, 11), (2, 25), (3, 1), (27, 1)] {
            let mut bad = good;
            bad[at] = value;
            assert!(StreamHeader::parse(&bad).is_err(), "byte {at} = {value}");
        }
        assert!(StreamHeader::parse(&good[..27]).is_err());
        let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        let mut meta = vec![4u8; 285];
        assert!(EncryptedMeta::parse(&b64(&meta)).is_ok());
        meta[0] = 3;
        assert!(EncryptedMeta::parse(&b64(&meta)).is_err());
        assert!(EncryptedMeta::parse(&b64(&[4u8; EncryptedMeta::MAX_DECODED])).is_ok());
        assert!(EncryptedMeta::parse(&b64(&[4u8; EncryptedMeta::MAX_DECODED + 1])).is_err());
        for bad in ["", "BA", "BAAA====", "BA+/", "not base64!"] {
            assert!(EncryptedMeta::parse(bad).is_err(), "{bad}");
        }
        assert!(FormatVersion::from_number(4).is_ok() && FormatVersion::from_number(5).is_err());
    }
}
