//! Access codes at rest: only an argon2id hash (per-clip random salt, PHC string) is stored, so
//! a database leak does not grant access. Hashing and verification are deliberately slow, so
//! they run on the blocking pool behind a semaphore and never stall the async runtime.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::error::DomainError;
use super::types::AccessCode;

#[derive(Clone)]
pub struct AccessHasher {
    permits: Arc<Semaphore>,
}

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(19 * 1024, 2, 1, None).expect("valid params"))
}

impl AccessHasher {
    pub fn new(concurrency: usize) -> AccessHasher {
        AccessHasher { permits: Arc::new(Semaphore::new(concurrency)) }
    }

    /// The PHC string to store for `code`.
    pub async fn hash(&self, code: &AccessCode) -> Result<String, DomainError> {
        let _permit = self.permits.acquire().await.map_err(|_| DomainError::Internal("hasher closed".into()))?;
        let code = code.expose().to_owned();
        tokio::task::spawn_blocking(move || {
            // 16 random bytes from the OS-seeded thread RNG, base64 (no padding) as PHC wants.
            let salt_bytes: [u8; 16] = rand::random();
            let salt = SaltString::encode_b64(&salt_bytes)?;
            argon2().hash_password(code.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))?
        .map_err(|e| DomainError::Internal(format!("argon2: {e}")))
    }

    /// Whether `code` matches the stored PHC string (constant-time comparison inside argon2).
    pub async fn verify(&self, code: &AccessCode, stored: &str) -> Result<bool, DomainError> {
        let _permit = self.permits.acquire().await.map_err(|_| DomainError::Internal("hasher closed".into()))?;
        let code = code.expose().to_owned();
        let stored = stored.to_owned();
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&stored).map_err(|e| DomainError::Internal(format!("stored hash: {e}")))?;
            Ok(argon2().verify_password(code.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))?
    }
}

/// Equality that takes the same time wherever the inputs differ (for tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SHA-256 hex of a high-entropy token (delete tokens are 256 random bits, so a fast hash is
/// enough to make a leaked row useless).
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_code_and_salts_differ() {
        let h = AccessHasher::new(2);
        let code = AccessCode::parse("correct horse").unwrap();
        let a = h.hash(&code).await.unwrap();
        let b = h.hash(&code).await.unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "per-clip salt");
        assert!(!a.contains("correct horse"));
        assert!(h.verify(&code, &a).await.unwrap());
        assert!(!h.verify(&AccessCode::parse("wrong").unwrap(), &a).await.unwrap());
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"a", b"ab")
        );
    }
}
