//! A clip's content as the blob layer sees it: one blob, or an ordered list of part blobs under
//! one prefix (the chunks of a three-step upload, left where they landed). Owns the text form
//! of the part list kept in the clip row and the ranged read across parts, which opens one part
//! at a time so a download of any size holds one read buffer. Knows nothing of uploads or SQL.

use std::ops::Range;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};

use super::{BlobError, BlobKey, BlobRead, BlobStore};

/// One part: its key below the prefix and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub leaf: String,
    pub size: u64,
}

/// Where a clip's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Single(BlobKey),
    /// The content is the parts, in order, each at `prefix/leaf`.
    Parts {
        prefix: BlobKey,
        parts: Vec<Part>,
    },
}

impl Content {
    /// From a clip row: `blob_key` and the `parts` column (`leaf:size` joined by commas;
    /// NULL for a single blob).
    pub fn from_row(blob_key: &str, parts: Option<&str>) -> Result<Content, BlobError> {
        let key = BlobKey::parse(blob_key)?;
        let Some(list) = parts else {
            return Ok(Content::Single(key));
        };
        let parts = list
            .split(',')
            .map(|item| {
                let (leaf, size) =
                    item.split_once(':').ok_or_else(|| BlobError::InvalidKey(format!("part {item:?} has no size")))?;
                let size = size.parse().map_err(|_| BlobError::InvalidKey(format!("part {item:?} has a bad size")))?;
                BlobKey::parse(leaf)?;
                Ok(Part { leaf: leaf.to_string(), size })
            })
            .collect::<Result<Vec<_>, BlobError>>()?;
        Ok(Content::Parts { prefix: key, parts })
    }

    /// The `parts` column for this content.
    pub fn parts_column(&self) -> Option<String> {
        match self {
            Content::Single(_) => None,
            Content::Parts { parts, .. } => {
                Some(parts.iter().map(|p| format!("{}:{}", p.leaf, p.size)).collect::<Vec<_>>().join(","))
            }
        }
    }

    pub fn part_key(prefix: &BlobKey, leaf: &str) -> BlobKey {
        BlobKey::parse(&format!("{}/{leaf}", prefix.as_str())).expect("a valid prefix and leaf make a valid key")
    }
}

/// The pieces of `range` that fall in each part: (key, range within the part).
fn pieces(prefix: &BlobKey, parts: &[Part], range: &Range<u64>) -> Vec<(BlobKey, Range<u64>)> {
    let mut out = Vec::new();
    if range.start >= range.end {
        return out;
    }
    let mut offset = 0u64;
    for p in parts {
        let (start, end) = (offset, offset + p.size);
        offset = end;
        if end <= range.start || p.size == 0 {
            continue;
        }
        if start >= range.end {
            break;
        }
        let from = range.start.max(start) - start;
        let to = range.end.min(end) - start;
        out.push((Content::part_key(prefix, &p.leaf), from..to));
    }
    out
}

pub(super) async fn read_parts(
    blobs: &BlobStore,
    content: &Content,
    range: Option<Range<u64>>,
) -> Result<BlobRead, BlobError> {
    let Content::Parts { prefix, parts } = content else {
        unreachable!("read_parts is only called with parts");
    };
    let size: u64 = parts.iter().map(|p| p.size).sum();
    let range = range.unwrap_or(0..size);
    if range.start > range.end || range.end > size {
        return Err(BlobError::RangeNotSatisfiable { start: range.start, end: range.end, size });
    }
    let mut pieces = pieces(prefix, parts, &range).into_iter();
    let Some((first_key, first_range)) = pieces.next() else {
        return Ok(BlobRead { total_size: size, range, stream: futures_util::stream::empty().boxed() });
    };
    let want = first_range.end - first_range.start;
    let first = blobs.read(&first_key, Some(first_range)).await?;
    let first = exact(first.stream, want);
    let blobs = blobs.clone();
    let rest = futures_util::stream::iter(pieces)
        .then(move |(key, r)| {
            let blobs = blobs.clone();
            async move {
                let want = r.end - r.start;
                match blobs.read(&key, Some(r)).await {
                    Ok(read) => Ok(exact(read.stream, want)),
                    Err(e) => Err(std::io::Error::other(format!("part {key}: {e}"))),
                }
            }
        })
        .try_flatten();
    Ok(BlobRead { total_size: size, range, stream: first.chain(rest).boxed() })
}

/// A part that yields fewer bytes than its recorded size would shift every later byte: fail
/// the stream instead.
fn exact(inner: BoxStream<'static, std::io::Result<Bytes>>, want: u64) -> BoxStream<'static, std::io::Result<Bytes>> {
    futures_util::stream::unfold((inner, 0u64, false), move |(mut inner, seen, done)| async move {
        if done {
            return None;
        }
        match inner.next().await {
            Some(Ok(b)) => {
                let seen = seen + b.len() as u64;
                Some((Ok(b), (inner, seen, false)))
            }
            Some(Err(e)) => Some((Err(e), (inner, seen, true))),
            None if seen == want => None,
            None => {
                let e = std::io::Error::other(format!("part ended after {seen} of {want} bytes"));
                Some((Err(e), (inner, seen, true)))
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(sizes: &[u64]) -> Vec<Part> {
        sizes.iter().enumerate().map(|(i, s)| Part { leaf: format!("{i}.ab"), size: *s }).collect()
    }

    #[test]
    fn the_parts_column_round_trips_and_refuses_garbage() {
        let c = Content::Parts { prefix: BlobKey::parse("chunks/ABC").unwrap(), parts: parts(&[5, 0, 7]) };
        let col = c.parts_column().unwrap();
        assert_eq!(col, "0.ab:5,1.ab:0,2.ab:7");
        assert_eq!(Content::from_row("chunks/ABC", Some(&col)).unwrap(), c);
        assert!(matches!(Content::from_row("clips/AB/x", None).unwrap(), Content::Single(_)));
        for bad in ["0.ab", "0.ab:x", "../x:5", "0.ab:5,"] {
            assert!(Content::from_row("chunks/ABC", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_range_maps_onto_the_parts_it_touches() {
        let prefix = BlobKey::parse("p").unwrap();
        let ps = parts(&[10, 10, 10]);
        let got = |r: Range<u64>| {
            pieces(&prefix, &ps, &r).into_iter().map(|(k, r)| (k.as_str().to_string(), r)).collect::<Vec<_>>()
        };
        assert_eq!(got(0..30), vec![("p/0.ab".into(), 0..10), ("p/1.ab".into(), 0..10), ("p/2.ab".into(), 0..10)]);
        assert_eq!(got(10..20), vec![("p/1.ab".into(), 0..10)]);
        assert_eq!(got(9..11), vec![("p/0.ab".into(), 9..10), ("p/1.ab".into(), 0..1)]);
        assert_eq!(got(25..30), vec![("p/2.ab".into(), 5..10)]);
        assert_eq!(got(5..5), vec![]);
    }
}
