//! The record of multipart uploads the blob store opens (S3), kept in the metadata store so a
//! crash mid-write or mid-assembly leaves nothing the sweep cannot find. Owns only the mapping
//! from the blob layer's journal calls to store rows; knows nothing of S3.

use futures_util::future::BoxFuture;

use super::clock::SharedClock;
use crate::blob::{BlobError, BlobKey, MultipartJournal};
use crate::store::{Store, StoreError};

pub struct StoreJournal {
    store: Store,
    clock: SharedClock,
}

impl StoreJournal {
    pub fn new(store: Store, clock: SharedClock) -> StoreJournal {
        StoreJournal { store, clock }
    }
}

impl MultipartJournal for StoreJournal {
    fn opened<'a>(&'a self, key: &'a BlobKey, upload_id: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            self.store.record_multipart(upload_id, key.as_str(), self.clock.now_ms()).await.map_err(journal_error)
        })
    }

    fn closed<'a>(&'a self, _key: &'a BlobKey, upload_id: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move { self.store.forget_multipart(upload_id).await.map_err(journal_error) })
    }
}

fn journal_error(e: StoreError) -> BlobError {
    BlobError::Unavailable { context: format!("recording a multipart upload: {e}") }
}
