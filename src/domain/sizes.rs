//! What the configured maximums mean for encrypted clips: `limits.max_upload_size` and
//! `limits.max_text_size` (advertised as `maxUploadSize` / `maxTextSize`) count the plaintext
//! a browser encrypts, not the ciphertext it sends. Owns the arithmetic between the two for
//! the client formats (each layout restated on its constants below; `static/js/crypto/` writes
//! them): the plaintext length of a V4 stream, the largest V3 text blob, and the largest
//! ciphertext a plaintext of the maximum can become, which is what initiate allows before it
//! knows the format. Pure functions; no I/O, no configuration.

use super::types::ClipKind;

/// A V4 stream starts with a 28-byte header: version, flags, log2 of the record size, a zero
/// byte, a 16-byte salt, a 7-byte nonce prefix and a zero byte.
pub const V4_HEADER: u64 = 1 + 1 + 1 + 1 + 16 + 7 + 1;
/// Each V4 record is its plaintext plus a 16-byte AES-GCM tag.
pub const V4_TAG: u64 = 16;
/// The smallest record size readers accept (2^12): the most records, so the most tags, for a
/// given plaintext, so the longest stream.
pub const V4_MIN_LOG2: u8 = 12;

/// A V3 blob wraps its payload in 61 bytes: the version byte, a 32-byte salt, a 12-byte IV,
/// and the 16-byte AES-GCM tag.
pub const V3_OVERHEAD: u64 = 1 + 32 + 12 + 16;
/// A V3 text under 10 240 bytes is padded to exactly 10 244: `data ‖ filler ‖ u32be len`.
pub const V3_PADDED_TEXT: u64 = 10_240 + 4;
/// A longer text whose last four bytes a reader would take for a length gets a trailer of
/// one filler byte and its u32be length.
pub const V3_TEXT_TRAILER: u64 = 1 + 4;

/// The V4 stream length of `plain` plaintext bytes in records of 2^`log2` bytes:
/// `28 + s + 16·max(1, ceil(s/rs))` (an empty file is one empty record). Saturates.
pub fn v4_stream_len(plain: u64, log2: u8) -> u64 {
    let records = plain.div_ceil(1 << log2).max(1);
    V4_HEADER.saturating_add(plain).saturating_add(records.saturating_mul(V4_TAG))
}

/// The plaintext length of a V4 stream `len` bytes long in records of 2^`log2` bytes; `None`
/// when no V4 stream has that length (shorter than a header and one tag, or ending in a
/// fragment shorter than a tag).
pub fn v4_plaintext_len(len: u64, log2: u8) -> Option<u64> {
    let body = len.checked_sub(V4_HEADER)?;
    let record = (1u64 << log2) + V4_TAG;
    let records = body.div_ceil(record);
    let last = body.checked_sub(records.checked_sub(1)? * record)?;
    (last >= V4_TAG).then(|| body - records * V4_TAG)
}

/// The longest V3 blob a text of at most `max_text` bytes can make: padded to 10 244 bytes
/// when short, with the 5-byte trailer when long, plus the 61 bytes around the payload.
pub fn v3_text_max_blob(max_text: u64) -> u64 {
    V3_OVERHEAD.saturating_add(V3_PADDED_TEXT.max(max_text.saturating_add(V3_TEXT_TRAILER)))
}

/// The most bytes an upload of `kind` may declare and send before its format is known: the
/// longest ciphertext a plaintext of `max` bytes can become as a browser writes it (a file as
/// V4 at the smallest record size, a text as a V3 blob). Complete then holds the stored
/// bytes to the exact rule of the format the client declares.
pub fn ciphertext_ceiling(kind: ClipKind, max: u64) -> u64 {
    match kind {
        ClipKind::File => v4_stream_len(max, V4_MIN_LOG2),
        ClipKind::Text => v3_text_max_blob(max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v4_plaintext_of_every_stream_length_is_the_size_that_made_it() {
        for log2 in [12u8, 13, 16] {
            let rs = 1u64 << log2;
            for plain in (0..3 * rs + 3).chain([10 * rs - 1, 10 * rs, 10 * rs + 1]) {
                let len = v4_stream_len(plain, log2);
                assert_eq!(v4_plaintext_len(len, log2), Some(plain), "rs {rs}, {plain} bytes");
            }
        }
        // FORMAT's examples: an empty file is a header and one tag; a multiple of the record
        // size has no extra empty record.
        assert_eq!(v4_stream_len(0, 16), 44);
        assert_eq!(v4_stream_len(65_536, 16), 28 + 65_536 + 16);
        assert_eq!(v4_stream_len(65_537, 16), 28 + 65_537 + 32);
    }

    #[test]
    fn lengths_no_v4_stream_has_are_refused() {
        for len in [0, 27, 28, 43] {
            assert_eq!(v4_plaintext_len(len, 12), None, "{len}");
        }
        // One full record, then a fragment shorter than a tag.
        let full = 28 + 4096 + 16;
        for extra in 1..16 {
            assert_eq!(v4_plaintext_len(full + extra, 12), None, "{extra}");
        }
        assert_eq!(v4_plaintext_len(full + 16, 12), Some(4096), "an empty final record adds nothing");
    }

    #[test]
    fn the_smallest_record_size_makes_the_longest_stream() {
        for plain in [0u64, 1, 4095, 4096, 1 << 20, (1 << 30) + 7] {
            let longest = ciphertext_ceiling(ClipKind::File, plain);
            for log2 in 12..=24 {
                assert!(v4_stream_len(plain, log2) <= longest, "{plain} bytes at 2^{log2}");
            }
            assert_eq!(longest, v4_stream_len(plain, 12));
        }
        assert_eq!(ciphertext_ceiling(ClipKind::File, 1 << 20), (1 << 20) + 28 + 16 * 256);
    }

    #[test]
    fn a_text_blob_may_be_padded_or_carry_the_trailer() {
        assert_eq!(V3_OVERHEAD, 61);
        assert_eq!(v3_text_max_blob(0), 10_305);
        assert_eq!(v3_text_max_blob(10_239), 10_305);
        assert_eq!(v3_text_max_blob(10_240), 10_306);
        assert_eq!(v3_text_max_blob(1 << 20), (1 << 20) + 66);
        assert_eq!(ciphertext_ceiling(ClipKind::Text, 4096), 10_305);
        assert_eq!(v3_text_max_blob(u64::MAX), u64::MAX);
    }
}
