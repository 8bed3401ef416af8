//! What the store hands back and takes in: plain records, one owned parameter type that both
//! drivers can bind, and one row-reading trait so each record is decoded by a single function
//! whichever backend produced the row.

use super::StoreError;

/// A bound parameter, owned so it can move onto SQLite's blocking thread.
#[derive(Debug, Clone)]
pub enum P {
    I64(i64),
    I32(i32),
    Bool(bool),
    Text(String),
    OptText(Option<String>),
    OptI64(Option<i64>),
    OptI32(Option<i32>),
}

impl tokio_postgres::types::ToSql for P {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            P::I64(v) => v.to_sql(ty, out),
            P::I32(v) => v.to_sql(ty, out),
            P::Bool(v) => v.to_sql(ty, out),
            P::Text(v) => v.to_sql(ty, out),
            P::OptText(v) => v.to_sql(ty, out),
            P::OptI64(v) => v.to_sql(ty, out),
            P::OptI32(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

impl rusqlite::ToSql for P {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            P::I64(v) => v.to_sql(),
            P::I32(v) => v.to_sql(),
            P::Bool(v) => v.to_sql(),
            P::Text(v) => v.to_sql(),
            P::OptText(v) => v.to_sql(),
            P::OptI64(v) => v.to_sql(),
            P::OptI32(v) => v.to_sql(),
        }
    }
}

/// Column access common to both drivers.
pub trait RowLike {
    fn i64(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_i64(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn i32(&self, col: &str) -> Result<i32, StoreError>;
    fn opt_i32(&self, col: &str) -> Result<Option<i32>, StoreError>;
    fn bool(&self, col: &str) -> Result<bool, StoreError>;
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
}

macro_rules! row_like {
    ($row:ty, $get:ident) => {
        impl RowLike for $row {
            fn i64(&self, col: &str) -> Result<i64, StoreError> {
                Ok(self.$get(col)?)
            }
            fn opt_i64(&self, col: &str) -> Result<Option<i64>, StoreError> {
                Ok(self.$get(col)?)
            }
            fn i32(&self, col: &str) -> Result<i32, StoreError> {
                Ok(self.$get(col)?)
            }
            fn opt_i32(&self, col: &str) -> Result<Option<i32>, StoreError> {
                Ok(self.$get(col)?)
            }
            fn bool(&self, col: &str) -> Result<bool, StoreError> {
                Ok(self.$get(col)?)
            }
            fn text(&self, col: &str) -> Result<String, StoreError> {
                Ok(self.$get(col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
                Ok(self.$get(col)?)
            }
        }
    };
}
row_like!(tokio_postgres::Row, try_get);
row_like!(rusqlite::Row<'_>, get);

/// Decodes one record from a row.
pub type Decode<T> = fn(&dyn RowLike) -> Result<T, StoreError>;

/// A clip as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClipRecord {
    pub id: i64,
    pub code: String,
    pub kind: String,
    pub blob_key: String,
    pub filename: Option<String>,
    pub mime_type: Option<String>,
    pub size: i64,
    pub sha256: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub one_time: bool,
    pub max_downloads: Option<i32>,
    pub download_count: i32,
    pub access_code_hash: Option<String>,
    pub quick_share: bool,
    pub delete_token_hash: String,
    pub consumed_at: Option<i64>,
    /// Entries cached in Redis by an older build have no such field.
    #[serde(default)]
    pub client: Option<ClientFormat>,
    /// The parts column (blob::Content): `None` when `blob_key` is the one blob.
    #[serde(default)]
    pub parts: Option<String>,
    /// The clip's thumbnail, once its job made one.
    #[serde(default)]
    pub thumbnail: Option<ThumbnailRef>,
}

/// Where a clip's thumbnail is: its blob key, content type and size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThumbnailRef {
    pub key: String,
    pub content_type: String,
    pub size: i64,
}

/// What the sweep knows of a clip it removed: where its bytes were, and what a webhook
/// receiver is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoneClip {
    pub id: i64,
    pub code: String,
    pub kind: String,
    pub size: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub blob_key: String,
    pub parts: Option<String>,
    pub thumb_key: Option<String>,
}

impl GoneClip {
    pub fn decode(r: &dyn RowLike) -> Result<GoneClip, StoreError> {
        Ok(GoneClip {
            id: r.i64("id")?,
            code: r.text("code")?,
            kind: r.text("kind")?,
            size: r.i64("size")?,
            created_at: r.i64("created_at")?,
            expires_at: r.i64("expires_at")?,
            blob_key: r.text("blob_key")?,
            parts: r.opt_text("parts")?,
            thumb_key: r.opt_text("thumb_key")?,
        })
    }
}

/// Why a clip stopped being live, as its tombstone remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneReason {
    /// Its lifetime ran out.
    Expired,
    /// Its one-time download, or the last of its permitted downloads, was taken.
    Consumed,
    /// Its sender deleted it with the delete token.
    Deleted,
}

impl GoneReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GoneReason::Expired => "expired",
            GoneReason::Consumed => "consumed",
            GoneReason::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Result<GoneReason, StoreError> {
        match s {
            "expired" => Ok(GoneReason::Expired),
            "consumed" => Ok(GoneReason::Consumed),
            "deleted" => Ok(GoneReason::Deleted),
            other => Err(StoreError::Task(format!("tombstone reason {other:?}"))),
        }
    }
}

/// What is remembered of a clip that stopped being live: why and when (ms since the epoch),
/// and nothing of what it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    pub reason: GoneReason,
    pub at: i64,
}

impl Tombstone {
    pub fn decode(r: &dyn RowLike) -> Result<Tombstone, StoreError> {
        Ok(Tombstone { reason: GoneReason::parse(&r.text("reason")?)?, at: r.i64("gone_at")? })
    }
}

/// What a browser client declared about its encryption at complete (FORMAT.md): format 3 or
/// 4, the encrypted metadata and, for V4, the stream's 28-byte header (base64url). `None` for
/// Qopy clients and curl, which means format 3 and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientFormat {
    pub format: u8,
    pub meta: Option<String>,
    pub stream_header: Option<String>,
}

#[cfg(test)]
impl ClipRecord {
    /// A live, unprotected file clip with `code` and otherwise neutral fields, for unit tests
    /// to adjust with struct update syntax.
    pub(crate) fn sample(code: &str) -> ClipRecord {
        ClipRecord {
            id: 1,
            code: code.into(),
            kind: "file".into(),
            blob_key: String::new(),
            filename: None,
            mime_type: None,
            size: 0,
            sha256: String::new(),
            created_at: 0,
            expires_at: i64::MAX,
            one_time: false,
            max_downloads: None,
            download_count: 0,
            access_code_hash: None,
            quick_share: false,
            delete_token_hash: String::new(),
            consumed_at: None,
            client: None,
            parts: None,
            thumbnail: None,
        }
    }
}

impl ClipRecord {
    pub fn decode(r: &dyn RowLike) -> Result<ClipRecord, StoreError> {
        Ok(ClipRecord {
            id: r.i64("id")?,
            code: r.text("code")?,
            kind: r.text("kind")?,
            blob_key: r.text("blob_key")?,
            filename: r.opt_text("filename")?,
            mime_type: r.opt_text("mime_type")?,
            size: r.i64("size")?,
            sha256: r.text("sha256")?,
            created_at: r.i64("created_at")?,
            expires_at: r.i64("expires_at")?,
            one_time: r.bool("one_time")?,
            max_downloads: r.opt_i32("max_downloads")?,
            download_count: r.i32("download_count")?,
            access_code_hash: r.opt_text("access_code_hash")?,
            quick_share: r.bool("quick_share")?,
            delete_token_hash: r.text("delete_token_hash")?,
            consumed_at: r.opt_i64("consumed_at")?,
            client: match r.opt_i32("format")? {
                Some(format) => Some(ClientFormat {
                    format: u8::try_from(format).map_err(|_| StoreError::Task(format!("format {format}")))?,
                    meta: r.opt_text("meta")?,
                    stream_header: r.opt_text("stream_header")?,
                }),
                None => None,
            },
            parts: r.opt_text("parts")?,
            thumbnail: match (r.opt_text("thumb_key")?, r.opt_text("thumb_type")?) {
                (Some(key), Some(content_type)) => {
                    Some(ThumbnailRef { key, content_type, size: r.opt_i64("thumb_size")?.unwrap_or(0) })
                }
                _ => None,
            },
        })
    }
}

/// A clip to insert.
#[derive(Debug, Clone)]
pub struct NewClip {
    pub code: String,
    pub kind: String,
    pub blob_key: String,
    pub filename: Option<String>,
    pub mime_type: Option<String>,
    pub size: i64,
    pub sha256: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub one_time: bool,
    pub max_downloads: Option<i32>,
    pub access_code_hash: Option<String>,
    pub quick_share: bool,
    pub delete_token_hash: String,
    pub upload_id: Option<String>,
    pub client: Option<ClientFormat>,
    pub parts: Option<String>,
}

/// An upload session as stored.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    pub id: String,
    pub filename: String,
    pub filesize: Option<i64>,
    pub total_chunks: i32,
    pub chunk_size: i64,
    pub mime_type: Option<String>,
    pub kind: String,
    pub expiry_ms: i64,
    pub one_time: bool,
    pub has_password: bool,
    pub quick_share: bool,
    pub is_text: bool,
    pub max_downloads: Option<i32>,
    pub status: String,
    pub clip_code: Option<String>,
    pub created_at: i64,
    pub last_activity: i64,
    pub delete_token: String,
}

impl UploadRecord {
    pub fn decode(r: &dyn RowLike) -> Result<UploadRecord, StoreError> {
        Ok(UploadRecord {
            id: r.text("id")?,
            filename: r.text("filename")?,
            filesize: r.opt_i64("filesize")?,
            total_chunks: r.i32("total_chunks")?,
            chunk_size: r.i64("chunk_size")?,
            mime_type: r.opt_text("mime_type")?,
            kind: r.text("kind")?,
            expiry_ms: r.i64("expiry_ms")?,
            one_time: r.bool("one_time")?,
            has_password: r.bool("has_password")?,
            quick_share: r.bool("quick_share")?,
            is_text: r.bool("is_text")?,
            max_downloads: r.opt_i32("max_downloads")?,
            status: r.text("status")?,
            clip_code: r.opt_text("clip_code")?,
            created_at: r.i64("created_at")?,
            last_activity: r.i64("last_activity")?,
            delete_token: r.text("delete_token")?,
        })
    }
}

/// One received chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    pub index: i32,
    pub size: i64,
    pub sha256: Option<String>,
    /// The chunk's blob below `chunks/<upload id>/` (`<index>` for rows of an older build).
    pub leaf: String,
}

impl ChunkRecord {
    pub fn decode(r: &dyn RowLike) -> Result<ChunkRecord, StoreError> {
        let index = r.i32("chunk_index")?;
        Ok(ChunkRecord {
            index,
            size: r.i64("size")?,
            sha256: r.opt_text("sha256")?,
            leaf: r.opt_text("blob_leaf")?.unwrap_or_else(|| index.to_string()),
        })
    }
}

/// Counts for the admin statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClipStats {
    pub total: i64,
    pub active: i64,
    pub accesses: i64,
    pub protected: i64,
    pub quick: i64,
    pub once: i64,
    pub normal: i64,
}

impl ClipStats {
    pub fn decode(r: &dyn RowLike) -> Result<ClipStats, StoreError> {
        Ok(ClipStats {
            total: r.i64("total")?,
            active: r.i64("active")?,
            accesses: r.i64("accesses")?,
            protected: r.i64("protected")?,
            quick: r.i64("quick")?,
            once: r.i64("once")?,
            normal: r.i64("normal")?,
        })
    }
}
