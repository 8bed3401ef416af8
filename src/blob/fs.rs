//! Filesystem blob backend. Keys map to paths under one root and can never leave it (the key
//! type forbids `..`, absolute paths and hidden names). Writes go to `<root>/.tmp`, are fsynced
//! and renamed into place (then the directory is fsynced), so a reader sees a whole blob or none.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::PathBuf;

use std::io::Write as _;

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{BlobError, BlobKey, BlobMeta, BlobRead, Durability};

const TMP_DIR: &str = ".tmp";
const READ_BUF: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub async fn open(root: PathBuf) -> Result<FsBlobStore, BlobError> {
        let tmp = root.join(TMP_DIR);
        fs::create_dir_all(&tmp).await.map_err(BlobError::io(format!("create {}", tmp.display())))?;
        // Temp files left by a crash are never committed; start clean.
        let mut entries = fs::read_dir(&tmp).await.map_err(BlobError::io("read temp dir"))?;
        while let Some(e) = entries.next_entry().await.map_err(BlobError::io("read temp dir"))? {
            let _ = fs::remove_file(e.path()).await;
        }
        Ok(FsBlobStore { root })
    }

    fn path_of(&self, key: &BlobKey) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(key.segments());
        p
    }

    fn temp_path(&self) -> PathBuf {
        self.root.join(TMP_DIR).join(format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>()))
    }

    pub async fn writer(&self, key: &BlobKey, hash: bool) -> Result<FsWriter, BlobError> {
        let tmp = self.temp_path();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await
            .map_err(BlobError::io("create temp blob"))?
            .into_std()
            .await;
        Ok(FsWriter {
            state: Some(WriteState { file, hasher: hash.then(Sha256::new) }),
            pending: Vec::new(),
            pending_len: 0,
            tmp,
            dest: self.path_of(key),
            written: 0,
        })
    }

    pub async fn read(&self, key: &BlobKey, range: Option<Range<u64>>) -> Result<BlobRead, BlobError> {
        let mut file = match File::open(self.path_of(key)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => {
                return Err(BlobError::from_io("open blob", e));
            }
        };
        let size = file.metadata().await.map_err(BlobError::io("stat blob"))?.len();
        let range = range.unwrap_or(0..size);
        if range.start > range.end || range.end > size {
            return Err(BlobError::RangeNotSatisfiable { start: range.start, end: range.end, size });
        }
        if range.start > 0 {
            file.seek(SeekFrom::Start(range.start)).await.map_err(BlobError::io("seek blob"))?;
        }
        let limited = file.take(range.end - range.start);
        let stream = ReaderStream::with_capacity(limited, READ_BUF).boxed();
        Ok(BlobRead { total_size: size, range, stream })
    }

    pub async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        match fs::metadata(self.path_of(key)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::from_io("stat blob", e)),
        }
    }

    pub async fn delete(&self, key: &BlobKey) -> Result<bool, BlobError> {
        match fs::remove_file(self.path_of(key)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BlobError::from_io("delete blob", e)),
        }
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, BlobError> {
        let start = if prefix.is_empty() { self.root.clone() } else { self.path_of(&BlobKey::parse(prefix)?) };
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(BlobError::from_io(format!("list {}", dir.display()), e));
                    }
                };
                for entry in entries {
                    let entry = entry.map_err(BlobError::io("list blobs"))?;
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with('.') {
                        continue; // the temp dir and anything else hidden is not a blob
                    }
                    let ty = entry.file_type().map_err(BlobError::io("list blobs"))?;
                    if ty.is_dir() {
                        stack.push(entry.path());
                    } else if ty.is_file() {
                        let rel = entry.path().strip_prefix(&root).expect("under root").to_string_lossy().into_owned();
                        // Files that are not valid keys were not written by ferry; skip them.
                        if let Ok(key) = BlobKey::parse(&rel) {
                            keys.push(key);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| BlobError::Source(e.to_string()))?
    }

    pub async fn list_children(&self, prefix: &BlobKey) -> Result<Vec<String>, BlobError> {
        let dir = self.path_of(prefix);
        blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(BlobError::from_io(format!("list {}", dir.display()), e)),
            };
            let mut names = Vec::new();
            for entry in entries {
                let name = entry.map_err(BlobError::io("list blobs"))?.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    names.push(name);
                }
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    /// Remove many blobs in one blocking call; how many existed.
    pub async fn delete_many(&self, keys: Vec<BlobKey>) -> Result<u64, BlobError> {
        let paths: Vec<PathBuf> = keys.iter().map(|k| self.path_of(k)).collect();
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            for path in paths {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(BlobError::from_io("delete blob", e));
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|e| BlobError::Source(e.to_string()))?
    }

    /// Milliseconds since the epoch at which the blob was last written, if it exists.
    pub async fn modified_ms(&self, key: &BlobKey) -> Result<Option<i64>, BlobError> {
        match fs::metadata(self.path_of(key)).await {
            Ok(m) => Ok(m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::from_io("stat blob", e)),
        }
    }

    pub async fn delete_prefix(&self, prefix: &BlobKey) -> Result<(), BlobError> {
        match fs::remove_dir_all(self.path_of(prefix)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::from_io("delete blob prefix", e)),
        }
    }

    pub async fn sync(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        let path = self.path_of(key);
        blocking(move || match std::fs::File::open(&path) {
            Ok(f) => {
                f.sync_all().map_err(BlobError::io("fsync blob"))?;
                Ok(Some(f.metadata().map_err(BlobError::io("stat blob"))?.len()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::from_io("open blob", e)),
        })
        .await
    }

    pub async fn sync_dir(&self, prefix: &BlobKey) -> Result<(), BlobError> {
        let path = self.path_of(prefix);
        blocking(move || std::fs::File::open(&path).and_then(|d| d.sync_all()).map_err(BlobError::io("fsync blob dir")))
            .await
    }

    /// Reads on the blocking pool in 1 MiB steps; the buffer is the only memory used.
    pub async fn hash_into(&self, key: &BlobKey, mut hasher: Sha256) -> Result<(Sha256, u64), BlobError> {
        let path = self.path_of(key);
        blocking(move || {
            use std::io::Read as _;
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound),
                Err(e) => return Err(BlobError::from_io("open blob", e)),
            };
            let mut buf = vec![0u8; HASH_BUF];
            let mut total = 0u64;
            loop {
                let n = f.read(&mut buf).map_err(BlobError::io("read blob"))?;
                if n == 0 {
                    return Ok((hasher, total));
                }
                hasher.update(&buf[..n]);
                total += n as u64;
            }
        })
        .await
    }

    pub async fn available(&self) -> Option<u64> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || free_bytes(&root)).await.ok().flatten()
    }

    pub async fn check(&self) -> Result<(), BlobError> {
        let probe = self.temp_path();
        fs::write(&probe, b"ferry health probe").await.map_err(BlobError::io("write probe"))?;
        let back = fs::read(&probe).await.map_err(BlobError::io("read probe"));
        let _ = fs::remove_file(&probe).await;
        match back? {
            b if b == b"ferry health probe" => Ok(()),
            _ => Err(BlobError::Source("probe read back different bytes".into())),
        }
    }
}

const HASH_BUF: usize = 1024 * 1024;

/// `write_all` for several buffers: vectored writes until every byte is written.
fn write_all_vectored(file: &mut std::fs::File, bufs: &[Bytes]) -> std::io::Result<()> {
    let (mut i, mut offset) = (0, 0);
    while i < bufs.len() {
        let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(std::io::IoSlice::new(&bufs[i][offset..]))
            .chain(bufs[i + 1..].iter().map(|b| std::io::IoSlice::new(b)))
            .take(1024)
            .collect();
        let mut n = match file.write_vectored(&slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Advance past what was written.
        while n > 0 {
            let left = bufs[i].len() - offset;
            if n >= left {
                n -= left;
                i += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| BlobError::Source(e.to_string()))?
}

/// Free bytes for an unprivileged writer on the file system holding `path` (statvfs).
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` is a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Small writes are gathered to this size before one blocking write.
const COALESCE: usize = 256 * 1024;

/// A write to a temp file that becomes the blob on `commit`. File I/O and hashing run together
/// on the blocking pool, one call per 256 KiB or more, never on the async runtime. The body's
/// frames are gathered as they are (no copy) and written with one vectored write.
pub struct FsWriter {
    state: Option<WriteState>,
    pending: Vec<Bytes>,
    pending_len: usize,
    tmp: PathBuf,
    dest: PathBuf,
    written: u64,
}

struct WriteState {
    file: std::fs::File,
    /// `None` for writers asked not to hash (a chunk whose client sent no checksum: its hash
    /// is computed later, only if someone asks).
    hasher: Option<Sha256>,
}

impl FsWriter {
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        self.written += bytes.len() as u64;
        if bytes.is_empty() {
            return Ok(());
        }
        self.pending_len += bytes.len();
        self.pending.push(bytes);
        if self.pending_len >= COALESCE {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BlobError> {
        let bufs = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let mut st = self.state.take().expect("writer used after a failed write or commit");
        let (st, res) = tokio::task::spawn_blocking(move || {
            let res = write_all_vectored(&mut st.file, &bufs);
            if res.is_ok()
                && let Some(h) = st.hasher.as_mut()
            {
                for b in &bufs {
                    h.update(b);
                }
            }
            (st, res)
        })
        .await
        .map_err(|e| BlobError::Source(e.to_string()))?;
        self.state = Some(st);
        res.map_err(BlobError::io("write blob"))
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn sha256_hex(&self) -> Option<String> {
        let mut hasher = self.state.as_ref().expect("writer in use").hasher.clone()?;
        for b in &self.pending {
            hasher.update(b);
        }
        Some(hex::encode(hasher.finalize()))
    }

    pub async fn commit(mut self, durability: Durability) -> Result<BlobMeta, BlobError> {
        if !self.pending.is_empty() {
            self.flush().await?;
        }
        let st = self.state.take().expect("writer committed twice");
        let (tmp, dest) = (self.tmp.clone(), self.dest.clone());
        let hasher = tokio::task::spawn_blocking(move || -> Result<Option<Sha256>, BlobError> {
            let WriteState { file, hasher } = st;
            match durability {
                Durability::Fsync => file.sync_all().map_err(BlobError::io("fsync blob"))?,
                Durability::Data => file.sync_data().map_err(BlobError::io("fdatasync blob"))?,
            }
            drop(file);
            let parent = dest.parent().expect("blob paths have a parent");
            std::fs::create_dir_all(parent).map_err(BlobError::io("create blob dir"))?;
            std::fs::rename(&tmp, &dest).map_err(BlobError::io("rename blob into place"))?;
            if durability == Durability::Fsync {
                // The rename is durable only once the directory entry is.
                std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(BlobError::io("fsync blob dir"))?;
            }
            Ok(hasher)
        })
        .await
        .map_err(|e| BlobError::Source(e.to_string()))??;
        // Mark done so Drop leaves the (now renamed) path alone.
        self.tmp = PathBuf::new();
        Ok(BlobMeta { size: self.written, sha256: hasher.map(|h| hex::encode(h.finalize())) })
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            // Uncommitted: the bytes must not linger. A small unlink; fine to do inline.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::BlobStore;
    use super::*;

    async fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::filesystem(dir.path().join("blobs")).await.unwrap();
        (dir, s)
    }

    async fn collect(read: BlobRead) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = read.stream;
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b.unwrap());
        }
        out
    }

    fn key(s: &str) -> BlobKey {
        BlobKey::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_put_blob_reads_back_whole_and_in_ranges_with_its_sha256() {
        let (_d, s) = store().await;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let parts: Vec<Result<Bytes, std::io::Error>> =
            data.chunks(7_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let meta = s.put_stream(&key("clips/AB/ABCDEFGHIJ"), futures_util::stream::iter(parts)).await.unwrap();
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(meta.sha256, Some(hex::encode(Sha256::digest(&data))));
        assert_eq!(collect(s.read(&key("clips/AB/ABCDEFGHIJ"), None).await.unwrap()).await, data);
        let mid = s.read(&key("clips/AB/ABCDEFGHIJ"), Some(1000..1010)).await.unwrap();
        assert_eq!(mid.total_size, data.len() as u64);
        assert_eq!(collect(mid).await, &data[1000..1010]);
        let tail = s.read(&key("clips/AB/ABCDEFGHIJ"), Some(199_990..200_000)).await.unwrap();
        assert_eq!(collect(tail).await, &data[199_990..]);
        assert!(matches!(
            s.read(&key("clips/AB/ABCDEFGHIJ"), Some(10..200_001)).await,
            Err(BlobError::RangeNotSatisfiable { .. })
        ));
        assert_eq!(s.size(&key("clips/AB/ABCDEFGHIJ")).await.unwrap(), Some(200_000));
    }

    #[tokio::test]
    async fn frames_of_every_size_are_written_in_order_with_their_hash() {
        let (_d, s) = store().await;
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let mut parts = Vec::new();
        let mut at = 0;
        for size in [1usize, 7, 100_000, 0, 262_144, 300_000, 3, 65_536].iter().cycle() {
            if at >= data.len() {
                break;
            }
            let end = (at + size).min(data.len());
            parts.push(Ok::<_, std::io::Error>(Bytes::copy_from_slice(&data[at..end])));
            at = end;
        }
        let meta = s.put_stream(&key("v/1"), futures_util::stream::iter(parts)).await.unwrap();
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(meta.sha256, Some(hex::encode(Sha256::digest(&data))));
        assert_eq!(collect(s.read(&key("v/1"), None).await.unwrap()).await, data);
    }

    #[tokio::test]
    async fn an_uncommitted_or_failed_write_leaves_nothing_behind() {
        let (d, s) = store().await;
        {
            let mut w = s.writer(&key("x/y")).await.unwrap();
            w.write(Bytes::from_static(b"partial")).await.unwrap();
        }
        let failing = futures_util::stream::iter(vec![Ok(Bytes::from_static(b"abc")), Err("client went away")]);
        assert!(matches!(s.put_stream(&key("x/z"), failing).await, Err(BlobError::Source(_))));
        assert!(matches!(s.read(&key("x/y"), None).await, Err(BlobError::NotFound)));
        assert!(s.list("").await.unwrap().is_empty());
        let tmp_left = std::fs::read_dir(d.path().join("blobs/.tmp")).unwrap().count();
        assert_eq!(tmp_left, 0);
    }

    #[tokio::test]
    async fn a_rewrite_replaces_atomically_and_delete_and_list_work() {
        let (_d, s) = store().await;
        for (k, v) in [("a/1", "one"), ("a/2", "two"), ("b/1", "three")] {
            let it = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(v))]);
            s.put_stream(&key(k), it).await.unwrap();
        }
        let it = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"uno"))]);
        s.put_stream(&key("a/1"), it).await.unwrap();
        assert_eq!(collect(s.read(&key("a/1"), None).await.unwrap()).await, b"uno");
        assert_eq!(s.list("").await.unwrap(), vec![key("a/1"), key("a/2"), key("b/1")]);
        assert_eq!(s.list("a").await.unwrap(), vec![key("a/1"), key("a/2")]);
        assert!(s.delete(&key("a/2")).await.unwrap());
        assert!(!s.delete(&key("a/2")).await.unwrap());
        assert_eq!(s.list("a").await.unwrap(), vec![key("a/1")]);
        s.check().await.unwrap();
    }

    #[tokio::test]
    async fn the_health_probe_fails_when_the_root_is_gone() {
        let (d, s) = store().await;
        std::fs::remove_dir_all(d.path().join("blobs")).unwrap();
        assert!(s.check().await.is_err());
    }
}
