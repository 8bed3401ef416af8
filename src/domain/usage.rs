//! Storage in use, held in memory: the figures the accounting job last computed (read from
//! the store by every instance, so none of them counts rows on a request) plus the bytes this
//! instance accepted since, which is what `limits.max_total_storage` is checked against. Admin
//! stats and `/metrics` read it; nothing here touches the store or the blob store.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::DomainError;
use crate::store::UsageRow;

#[derive(Debug, Default)]
pub struct Usage {
    rows: RwLock<Vec<UsageRow>>,
    /// Bytes accepted by this instance since the figures were computed.
    since: AtomicU64,
    limit: Option<u64>,
}

impl Usage {
    pub fn new(limit: Option<u64>) -> Usage {
        Usage { limit, ..Usage::default() }
    }

    /// Take freshly computed (or loaded) figures unless older ones than those held (another
    /// instance's, loaded late); what was counted as "since" is in them.
    pub fn set(&self, rows: Vec<UsageRow>) {
        let mut held = self.rows.write().unwrap_or_else(|p| p.into_inner());
        let current = rows.iter().map(|r| r.computed_at).max() >= held.iter().map(|r| r.computed_at).max();
        if current || held.is_empty() {
            *held = rows;
            self.since.store(0, Ordering::Relaxed);
        }
    }

    /// The figures as last computed (empty before the first computation).
    pub fn rows(&self) -> Vec<UsageRow> {
        self.rows.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// When the held figures were computed (ms), if ever.
    pub fn computed_at(&self) -> Option<i64> {
        self.rows.read().unwrap_or_else(|p| p.into_inner()).iter().map(|r| r.computed_at).max()
    }

    /// Bytes in use now, as best known: the last figures plus what arrived here since.
    pub fn total_bytes(&self) -> u64 {
        let counted: i64 = self.rows.read().unwrap_or_else(|p| p.into_inner()).iter().map(|r| r.bytes).sum();
        counted.max(0) as u64 + self.since.load(Ordering::Relaxed)
    }

    /// Count bytes this instance just stored.
    pub fn add(&self, bytes: u64) {
        self.since.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Refuse `incoming` more bytes when they would take storage past the configured limit.
    pub fn check(&self, incoming: u64) -> Result<(), DomainError> {
        match self.limit {
            Some(limit) if self.total_bytes().saturating_add(incoming) > limit => {
                Err(DomainError::StorageLimit { limit, used: self.total_bytes() })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, bytes: i64, at: i64) -> UsageRow {
        UsageRow { kind: kind.into(), items: 1, bytes, computed_at: at }
    }

    #[test]
    fn the_limit_counts_the_last_figures_plus_what_arrived_since() {
        let u = Usage::new(Some(1000));
        u.set(vec![row("file", 600, 10), row("text", 100, 10)]);
        u.check(300).unwrap();
        u.add(250);
        assert_eq!(u.total_bytes(), 950);
        assert!(matches!(u.check(51), Err(DomainError::StorageLimit { limit: 1000, used: 950 })));
        // Newer figures include what had arrived: the local count starts again.
        u.set(vec![row("file", 850, 20), row("text", 100, 20)]);
        assert_eq!(u.total_bytes(), 950);
        // Older figures (another instance loaded late) are ignored.
        u.set(vec![row("file", 1, 5)]);
        assert_eq!(u.total_bytes(), 950);
        Usage::new(None).check(u64::MAX).unwrap();
    }
}
