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
}
