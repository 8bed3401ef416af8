//! Byte ranges: the parsed form of a single `Range: bytes=` spec and its resolution against a
//! blob's size. Multiple ranges are not served (the caller falls back to the whole body).

use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `a-b` (inclusive end)
    FromTo(u64, u64),
    /// `a-`
    From(u64),
    /// `-n` (the last n bytes)
    Suffix(u64),
}

/// What a Range header asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeHeader {
    /// One well-formed range.
    Single(RangeSpec),
    /// Several ranges, or a unit other than bytes, or syntax we ignore: serve the whole body
    /// (RFC 9110 lets a server ignore Range).
    Ignore,
}

impl RangeHeader {
    pub fn parse(raw: &str) -> RangeHeader {
        let Some(spec) = raw.trim().strip_prefix("bytes=") else {
            return RangeHeader::Ignore;
        };
        if spec.contains(',') {
            return RangeHeader::Ignore;
        }
        let Some((a, b)) = spec.trim().split_once('-') else {
            return RangeHeader::Ignore;
        };
        let num = |s: &str| -> Option<u64> {
            if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) { None } else { s.parse().ok() }
        };
        match (a.trim(), b.trim()) {
            ("", n) => num(n).map_or(RangeHeader::Ignore, |n| RangeHeader::Single(RangeSpec::Suffix(n))),
            (a, "") => num(a).map_or(RangeHeader::Ignore, |a| RangeHeader::Single(RangeSpec::From(a))),
            (a, b) => match (num(a), num(b)) {
                (Some(a), Some(b)) if a <= b => RangeHeader::Single(RangeSpec::FromTo(a, b)),
                _ => RangeHeader::Ignore,
            },
        }
    }
}

impl RangeSpec {
    /// The half-open byte range within `size`, or `None` when unsatisfiable.
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            RangeSpec::FromTo(a, b) if a < size => Some(a..(b.saturating_add(1)).min(size)),
            RangeSpec::From(a) if a < size => Some(a..size),
            RangeSpec::Suffix(n) if n > 0 && size > 0 => Some(size.saturating_sub(n)..size),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_parse_and_resolve_like_rfc_9110() {
        use RangeHeader::*;
        use RangeSpec::*;
        assert_eq!(RangeHeader::parse("bytes=0-9"), Single(FromTo(0, 9)));
        assert_eq!(RangeHeader::parse("bytes=5-"), Single(From(5)));
        assert_eq!(RangeHeader::parse("bytes=-5"), Single(Suffix(5)));
        for ignored in
            ["bytes=0-1,4-5", "items=0-1", "bytes=9-1", "bytes=a-b", "bytes=-", "bytes=99999999999999999999-"]
        {
            assert_eq!(RangeHeader::parse(ignored), Ignore, "{ignored}");
        }
        assert_eq!(FromTo(0, 9).resolve(100), Some(0..10));
        assert_eq!(FromTo(90, 200).resolve(100), Some(90..100));
        assert_eq!(From(100).resolve(100), None);
        assert_eq!(Suffix(5).resolve(100), Some(95..100));
        assert_eq!(Suffix(500).resolve(100), Some(0..100));
        assert_eq!(Suffix(0).resolve(100), None);
        assert_eq!(From(0).resolve(0), None);
    }
}
