//! The thumbnail job: for a plaintext image clip (see `domain::followups` for which clips),
//! copy its bytes into a scratch file (streamed, so memory stays flat; the decoder needs to
//! seek), decode it off the async runtime with `images::thumbnail` under the configured limits,
//! store the small JPEG or WebP as a blob of its own and attach it to the clip, then tell every
//! instance's cache. A clip retired meanwhile gets no thumbnail (the blob is removed again). A
//! file that is not an image, is damaged or too large ends as a failed job with the decoder's
//! sentence; a store or blob outage is retried.

use std::io::BufReader;
use std::path::PathBuf;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::queue::JobError;
use crate::blob::BlobKey;
use crate::config::Config;
use crate::domain::Deps;
use crate::domain::clips::content_of;
use crate::domain::followups::ThumbnailJob;
use crate::domain::types::UploadId;
use crate::images::{ThumbnailLimits, thumbnail};
use crate::store::{JobRecord, ThumbnailRef};

/// What a thumbnail job needs from configuration.
#[derive(Debug, Clone)]
pub struct ThumbnailSettings {
    pub limits: ThumbnailLimits,
    /// Where source copies are written while decoded (under the data directory).
    pub scratch: PathBuf,
}

impl ThumbnailSettings {
    pub fn from_config(c: &Config) -> ThumbnailSettings {
        let t = &c.thumbnails;
        ThumbnailSettings {
            limits: ThumbnailLimits {
                max_width: t.max_dimension,
                max_height: t.max_dimension,
                max_alloc: t.max_alloc.bytes(),
                longest_side: t.size,
            },
            scratch: c.data_dir.join("tmp"),
        }
    }
}

fn retry(what: &str, e: impl std::fmt::Display) -> JobError {
    JobError::Retry(format!("{what}: {e}"))
}

/// Where a new thumbnail is stored: unique, under `thumbs/` (which the reconcile walks).
fn thumb_key() -> BlobKey {
    let unique = UploadId::generate();
    BlobKey::parse(&format!("thumbs/{}/{}", &unique.as_str()[..2], unique.as_str())).expect("hex ids make valid keys")
}

/// Removes the scratch copy however the job ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub async fn make_thumbnail(deps: &Deps, settings: &ThumbnailSettings, job: &JobRecord) -> Result<(), JobError> {
    let task: ThumbnailJob = serde_json::from_str(&job.payload)
        .map_err(|e| JobError::Permanent(format!("the job's payload is not a thumbnail job: {e}")))?;
    let Some(clip) = deps.store.clip_by_id(task.clip).await.map_err(|e| retry("reading the clip", e))? else {
        return Ok(()); // gone already: nothing to make
    };
    if clip.consumed_at.is_some() || clip.thumbnail.is_some() {
        return Ok(());
    }
    let content = content_of(&clip).map_err(|e| JobError::Permanent(e.to_string()))?;
    let read = match deps.blobs.read_content(&content, None).await {
        Ok(read) => read,
        Err(crate::blob::BlobError::NotFound) => return Ok(()), // removed with its clip
        Err(e) => return Err(retry("reading the image", e)),
    };
    tokio::fs::create_dir_all(&settings.scratch).await.map_err(|e| retry("making the scratch directory", e))?;
    let scratch = Scratch(settings.scratch.join(format!("thumb-{}-{:016x}", clip.id, rand::random::<u64>())));
    let mut file = tokio::fs::File::create(&scratch.0).await.map_err(|e| retry("creating the scratch file", e))?;
    let mut stream = read.stream;
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| retry("reading the image", e))?;
        file.write_all(&piece).await.map_err(|e| retry("writing the scratch file", e))?;
    }
    file.flush().await.map_err(|e| retry("writing the scratch file", e))?;
    drop(file);

    let (path, limits) = (scratch.0.clone(), settings.limits);
    let made = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(|e| JobError::Retry(format!("opening the scratch file: {e}")))?;
        thumbnail(BufReader::new(file), &limits).map_err(|e| {
            if e.is_permanent() { JobError::Permanent(e.to_string()) } else { JobError::Retry(e.to_string()) }
        })
    })
    .await
    .map_err(|e| JobError::Permanent(format!("the decoder failed: {e}")))??;
    drop(scratch);

    let key = thumb_key();
    let size = made.bytes.len() as i64;
    let bytes = bytes::Bytes::from(made.bytes);
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]);
    deps.blobs.put_stream(&key, body).await.map_err(|e| retry("storing the thumbnail", e))?;
    let thumb = ThumbnailRef { key: key.as_str().into(), content_type: made.content_type.into(), size };
    match deps.store.set_thumbnail(clip.id, &thumb).await {
        Ok(true) => {}
        Ok(false) => {
            // The clip was retired while its thumbnail was made.
            let _ = deps.blobs.delete(&key).await;
            return Ok(());
        }
        Err(e) => {
            let _ = deps.blobs.delete(&key).await;
            return Err(retry("attaching the thumbnail", e));
        }
    }
    deps.usage.add(size as u64);
    // Instances that cached the clip without a thumbnail learn of it now, not at the TTL.
    deps.cache.invalidate(&clip.code).await;
    metrics::counter!("ferry_thumbnails_total").increment(1);
    tracing::debug!(
        clip = clip.id,
        width = made.width,
        height = made.height,
        source_width = made.source_width,
        source_height = made.source_height,
        "thumbnail made"
    );
    Ok(())
}
