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

/// When the newest of `rows` was computed (`None` for none).
fn newest(rows: &[UsageRow]) -> Option<i64> {
    rows.iter().map(|r| r.computed_at).max()
}

impl Usage {
    pub fn new(limit: Option<u64>) -> Usage {
        Usage { limit, ..Usage::default() }
    }

    /// What `since` holds now: taken before a computation starts, so the bytes it counts (and
    /// only those) are deducted once the figures that include them are in.
    pub fn pending(&self) -> u64 {
        self.since.load(Ordering::Relaxed)
    }

    /// Figures this instance just computed, which include the `counted` bytes `pending` said
    /// before the computation began (bytes stored during it stay counted here, possibly twice,
    /// which errs on the safe side of the limit).
    pub fn computed(&self, rows: Vec<UsageRow>, counted: u64) {
        let mut held = self.rows.write().unwrap_or_else(|p| p.into_inner());
        if newest(&rows) >= newest(&held) {
            *held = rows;
            let _ = self.since.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some(s.saturating_sub(counted)));
        }
    }

    /// Figures loaded from the store: taken only when newer than those held (usually another
    /// instance computed them). They include what this instance stored before they were
    /// computed, which it cannot tell apart from what came after: the local count starts again,
    /// undercounting at most what arrived between their computation and this load.
    pub fn loaded(&self, rows: Vec<UsageRow>) {
        let mut held = self.rows.write().unwrap_or_else(|p| p.into_inner());
        if newest(&rows) > newest(&held) {
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
        newest(&self.rows.read().unwrap_or_else(|p| p.into_inner()))
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
        u.computed(vec![row("file", 600, 10), row("text", 100, 10)], 0);
        u.check(300).unwrap();
        u.add(250);
        assert_eq!(u.total_bytes(), 950);
        assert!(matches!(u.check(51), Err(DomainError::StorageLimit { limit: 1000, used: 950 })));
        // A computation that began when 250 were pending, while 50 more arrived: those 50 stay.
        let counted = u.pending();
        u.add(50);
        u.computed(vec![row("file", 850, 20), row("text", 100, 20)], counted);
        assert_eq!(u.total_bytes(), 1000);
        // Reloading the same figures (every instance reads them back) changes nothing.
        u.loaded(vec![row("file", 850, 20), row("text", 100, 20)]);
        assert_eq!(u.total_bytes(), 1000);
        // Older figures are ignored; newer ones from another instance start the count again.
        u.loaded(vec![row("file", 1, 5)]);
        assert_eq!(u.total_bytes(), 1000);
        u.loaded(vec![row("file", 990, 30)]);
        assert_eq!(u.total_bytes(), 990);
        Usage::new(None).check(u64::MAX).unwrap();
    }
}
