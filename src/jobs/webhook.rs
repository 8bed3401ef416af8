//! Webhook delivery: POST one event's JSON body (made when the event happened, see
//! `domain::followups`) to the configured URL, signed with `Ferry-Signature: sha256=<hex
//! HMAC-SHA256 of the body>` when a secret is set. A receiver that cannot be reached, times out
//! or answers 408, 429 or 5xx is tried again later with backoff (the queue's retries); one that
//! answers another 4xx or a redirect has refused the delivery, which no retry changes. Runs
//! only in the job queue, so a slow receiver never slows a request. Never logs the URL (it may
//! carry a token) or the secret.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::queue::JobError;
use crate::config::{Config, Secret};
use crate::store::JobRecord;

/// The configured receiver.
#[derive(Clone)]
pub struct Webhook {
    url: String,
    secret: Option<Secret>,
    http: reqwest::Client,
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    /// `None` when no webhook URL is configured.
    pub fn from_config(c: &Config) -> Option<Webhook> {
        let url = c.webhook.url.clone()?;
        let http = reqwest::Client::builder()
            .timeout(c.webhook.timeout)
            .connect_timeout(c.webhook.timeout.min(std::time::Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client builds");
        Some(Webhook { url, secret: c.webhook.secret.clone(), http })
    }

    /// Deliver one event.
    pub async fn deliver(&self, job: &JobRecord) -> Result<(), JobError> {
        let body = job.payload.clone();
        let event = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["event"].as_str().map(str::to_owned))
            .ok_or_else(|| JobError::Permanent("the job's event is not JSON with an event name".into()))?;
        let mut request = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Ferry-Event", event)
            .header("Ferry-Delivery", job.id.to_string());
        if let Some(secret) = &self.secret {
            request = request.header("Ferry-Signature", signature(secret.expose().as_bytes(), body.as_bytes()));
        }
        let response = request.body(body).send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "the receiver did not answer in time"
            } else if e.is_connect() {
                "the receiver could not be reached"
            } else {
                "the delivery failed on the way"
            };
            JobError::Retry(format!("{why} ({})", e.without_url()))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let said = format!("the receiver answered {status}");
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(JobError::Retry(said))
        } else if status.is_redirection() {
            Err(JobError::Permanent(format!("{said} (redirects are not followed; configure the final URL)")))
        } else {
            Err(JobError::Permanent(format!("{said}, refusing the delivery")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
