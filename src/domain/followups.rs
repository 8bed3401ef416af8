//! What follows a change to a clip, as durable jobs enqueued in the same transaction as the
//! change: a webhook notification per clip event (created, downloaded, consumed, expired,
//! deleted) and, for a plaintext image clip, its thumbnail. Decides which jobs a change makes
//! and what their payloads say; never runs them (that is `jobs/`), and never puts content,
//! secrets, access codes, filenames or client addresses into a payload.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::config::Config;
use crate::store::{ClipRecord, FollowUp, GoneClip, NewJob};

/// Job kinds.
pub const WEBHOOK: &str = "webhook";
pub const THUMBNAIL: &str = "thumbnail";
pub const ACCOUNTING: &str = "storage.refresh";
/// Does nothing: for benchmarks and for checking that the queue drains.
pub const NOOP: &str = "noop";

/// A clip event, as a webhook receiver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipEvent {
    Created,
    Downloaded,
    Consumed,
    Expired,
    Deleted,
}

impl ClipEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ClipEvent::Created => "clip.created",
            ClipEvent::Downloaded => "clip.downloaded",
            ClipEvent::Consumed => "clip.consumed",
            ClipEvent::Expired => "clip.expired",
            ClipEvent::Deleted => "clip.deleted",
        }
    }
}

/// The body of one webhook delivery: which clip, what kind, how big, and when; nothing of
/// its content, name or access code, nor of who sent or fetched it. The clip id is the link's
/// (receivers tell clips apart by it): the receiver is trusted with links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventBody {
    pub event: String,
    pub clip_id: String,
    pub kind: String,
    pub size: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub occurred_at: i64,
    /// Downloads so far (downloaded and consumed events of one-time and limited clips).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub download_count: Option<i32>,
}

/// A thumbnail job's payload: the clip's row id (codes are reused once a clip is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailJob {
    pub clip: i64,
}

/// Which follow-ups this server makes, from configuration, and how to wake its own workers
/// once a transaction that enqueued has committed.
#[derive(Clone)]
pub struct Followups {
    webhooks: bool,
    webhook_attempts: i32,
    thumbnails: bool,
    thumbnail_max_source: i64,
    attempts: i32,
    wake: Arc<Notify>,
}

impl Followups {
    pub fn from_config(c: &Config) -> Followups {
        Followups {
            webhooks: c.webhook.url.is_some(),
            webhook_attempts: c.webhook.attempts as i32,
            thumbnails: c.thumbnails.enabled,
            thumbnail_max_source: c.thumbnails.max_source_size.bytes() as i64,
            attempts: c.jobs.attempts as i32,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The signal workers in this process wait on.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Tell this process's workers that jobs were enqueued (a permit is kept if none waits).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn webhooks(&self) -> bool {
        self.webhooks
    }

    /// A job of `kind` with the default number of tries.
    pub fn job(&self, kind: &str, payload: String, run_at: i64, dedupe_key: Option<String>) -> NewJob {
        NewJob { kind: kind.into(), payload, max_attempts: self.attempts, run_at, dedupe_key }
    }

    fn event(&self, event: ClipEvent, body: EventBody) -> Option<NewJob> {
        debug_assert_eq!(body.event, event.as_str());
        self.webhooks.then(|| NewJob {
            kind: WEBHOOK.into(),
            payload: serde_json::to_string(&body).expect("an event serialises"),
            max_attempts: self.webhook_attempts,
            run_at: body.occurred_at,
            dedupe_key: None,
        })
    }

    fn clip_event(&self, event: ClipEvent, clip: &ClipRecord, now: i64) -> Option<NewJob> {
        let counted = clip.one_time || clip.max_downloads.is_some();
        let download_count =
            (counted && matches!(event, ClipEvent::Downloaded | ClipEvent::Consumed)).then_some(clip.download_count);
        self.event(
            event,
            EventBody {
                event: event.as_str().into(),
                clip_id: clip.code.clone(),
                kind: clip.kind.clone(),
                size: clip.size,
                created_at: clip.created_at,
                expires_at: clip.expires_at,
                occurred_at: now,
                download_count,
            },
        )
    }

    /// Whether a new clip gets a thumbnail: a plaintext (server-readable) file whose type
    /// says image, small enough, and not one-time (a thumbnail would outlive its one look).
    /// A file that only claims to be an image fails its job with a clear error.
    fn wants_thumbnail(&self, clip: &ClipRecord, plaintext: bool) -> bool {
        const DECODED: [&str; 6] =
            ["image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/x-ms-bmp"];
        self.thumbnails
            && plaintext
            && clip.kind == "file"
            && clip.client.is_none()
            && !clip.one_time
            && clip.size <= self.thumbnail_max_source
            && clip.mime_type.as_deref().is_some_and(|m| DECODED.contains(&m.to_ascii_lowercase().as_str()))
    }

    /// What creating a clip makes: `clip.created`, and the thumbnail job of a plaintext image.
    /// `plaintext`: the server received the bytes unencrypted (a one-request upload).
    pub fn created(&self, plaintext: bool, now: i64) -> FollowUp<'static, ClipRecord> {
        if !(self.webhooks || self.thumbnails && plaintext) {
            return None;
        }
        let this = self.clone();
        Some(Box::new(move |rows: &[ClipRecord]| {
            let Some(clip) = rows.first() else { return Vec::new() };
            let mut jobs: Vec<NewJob> = this.clip_event(ClipEvent::Created, clip, now).into_iter().collect();
            if this.wants_thumbnail(clip, plaintext) {
                let payload = serde_json::to_string(&ThumbnailJob { clip: clip.id }).expect("serialises");
                jobs.push(this.job(THUMBNAIL, payload, now, Some(format!("thumbnail:{}", clip.id))));
            }
            jobs
        }))
    }

    /// What claiming a download of a one-time or limited clip makes: `clip.downloaded`, and
    /// `clip.consumed` when it was the last.
    pub fn claimed(&self, now: i64) -> FollowUp<'static, ClipRecord> {
        if !self.webhooks {
            return None;
        }
        let this = self.clone();
        Some(Box::new(move |rows: &[ClipRecord]| {
            let Some(clip) = rows.first() else { return Vec::new() };
            let mut jobs: Vec<NewJob> = this.clip_event(ClipEvent::Downloaded, clip, now).into_iter().collect();
            if clip.consumed_at.is_some() {
                jobs.extend(this.clip_event(ClipEvent::Consumed, clip, now));
            }
            jobs
        }))
    }

    /// `clip.downloaded` for a download that claims nothing (enqueued on its own).
    pub fn downloaded(&self, clip: &ClipRecord, now: i64) -> Vec<NewJob> {
        self.clip_event(ClipEvent::Downloaded, clip, now).into_iter().collect()
    }

    pub fn deleted(&self, clip: &ClipRecord, now: i64) -> Vec<NewJob> {
        self.clip_event(ClipEvent::Deleted, clip, now).into_iter().collect()
    }

    /// What the sweep's removal of expired clips makes: `clip.expired` for each.
    pub fn expired(&self, now: i64) -> FollowUp<'static, GoneClip> {
        if !self.webhooks {
            return None;
        }
        let this = self.clone();
        Some(Box::new(move |rows: &[GoneClip]| {
            rows.iter()
                .filter_map(|g| {
                    this.event(
                        ClipEvent::Expired,
                        EventBody {
                            event: ClipEvent::Expired.as_str().into(),
                            clip_id: g.code.clone(),
                            kind: g.kind.clone(),
                            size: g.size,
                            created_at: g.created_at,
                            expires_at: g.expires_at,
                            occurred_at: now,
                            download_count: None,
                        },
                    )
                })
                .collect()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn followups(webhooks: bool) -> Followups {
        let mut c = Config::defaults();
        if webhooks {
            c.webhook.url = Some("http://127.0.0.1:9/hook".into());
        }
        Followups::from_config(&c)
    }

    fn image(code: &str) -> ClipRecord {
        ClipRecord {
            id: 7,
            size: 1000,
            mime_type: Some("image/jpeg".into()),
            filename: Some("secret-name.jpg".into()),
            access_code_hash: Some("argon2-hash".into()),
            ..ClipRecord::sample(code)
        }
    }

    #[test]
    fn a_plaintext_image_gets_a_thumbnail_job_and_an_encrypted_or_one_time_one_does_not() {
        let f = followups(false);
        let jobs = f.created(true, 5).unwrap()(&[image("ABCDEFGHIJ")]);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].kind, THUMBNAIL);
        assert_eq!(jobs[0].dedupe_key.as_deref(), Some("thumbnail:7"));
        assert_eq!(serde_json::from_str::<ThumbnailJob>(&jobs[0].payload).unwrap(), ThumbnailJob { clip: 7 });
        assert!(f.created(false, 5).is_none(), "no follow-up at all for an encrypted upload without webhooks");
        let once = ClipRecord { one_time: true, ..image("ABCDEFGHIJ") };
        assert!(f.created(true, 5).unwrap()(&[once]).is_empty());
        let text = ClipRecord { mime_type: Some("text/plain".into()), ..image("ABCDEFGHIJ") };
        assert!(f.created(true, 5).unwrap()(&[text]).is_empty());
        assert!(f.created(true, 5).unwrap()(&[]).is_empty(), "nothing follows a clip that was not inserted");
    }

    #[test]
    fn an_event_names_the_clip_but_never_its_name_code_or_content() {
        let f = followups(true);
        let jobs = f.created(false, 5).unwrap()(&[image("ABCDEFGHIJ")]);
        assert_eq!(jobs.len(), 1);
        let body: serde_json::Value = serde_json::from_str(&jobs[0].payload).unwrap();
        assert_eq!(body["event"], "clip.created");
        assert_eq!(body["clipId"], "ABCDEFGHIJ");
        assert_eq!(body["size"], 1000);
        let text = jobs[0].payload.clone();
        assert!(!text.contains("secret-name") && !text.contains("argon2"), "{text}");
        assert_eq!(jobs[0].max_attempts, Config::defaults().webhook.attempts as i32);
    }

    #[test]
    fn the_last_claimed_download_is_also_a_consumed_event() {
        let f = followups(true);
        let last = ClipRecord { one_time: true, download_count: 1, consumed_at: Some(9), ..image("ABCDEFGHIJ") };
        let jobs = f.claimed(9).unwrap()(&[last]);
        let events: Vec<String> =
            jobs.iter().map(|j| serde_json::from_str::<EventBody>(&j.payload).unwrap().event).collect();
        assert_eq!(events, ["clip.downloaded", "clip.consumed"]);
        assert!(followups(false).claimed(9).is_none());
    }
}
