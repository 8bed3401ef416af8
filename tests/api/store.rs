//! The metadata store below HTTP: migrations are idempotent, safe to run from two instances at
//! once, and refuse edited history; the hot queries use their partial indexes on PostgreSQL.

use ferry::config::{Config, Secret};
use ferry::store::{Store, migrate};

use crate::helpers::{TestDb, pg_connect, pg_server_url};

fn embedded_config(dir: &std::path::Path) -> Config {
    let mut c = Config::defaults();
    c.data_dir = dir.to_path_buf();
    c
}

fn pg_config(db: &TestDb) -> Config {
    let mut c = Config::defaults();
    c.database_url = Some(Secret::new(db.url.clone()));
    c
}

/// Two stores on one fresh database migrate at the same moment: one applies everything, the
/// other nothing, and each version is recorded once.
async fn assert_concurrent_migrations_apply_once(config: Config) {
    let a = Store::open(&config).await.unwrap();
    let b = Store::open(&config).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let all: Vec<i64> = migrate::POSTGRES.iter().map(|m| m.version).collect();
    let mut applied = [ra.applied.clone(), rb.applied.clone()];
    applied.sort();
    assert_eq!(applied, [vec![], all.clone()], "one run applies all, the other none");
    assert_eq!(ra.current, *all.last().unwrap());
    assert_eq!(rb.current, *all.last().unwrap());
    assert!(a.migrate().await.unwrap().applied.is_empty());
    a.close();
    b.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_migrations_from_two_instances_at_once_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    assert_concurrent_migrations_apply_once(embedded_config(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_from_two_instances_at_once_apply_once() {
    let Some(server) = pg_server_url() else {
        return;
    };
    let db = TestDb::create_empty(&server).await;
    assert_concurrent_migrations_apply_once(pg_config(&db)).await;
    let client = pg_connect(&db.url).await;
    let n: i64 = client.query_one("SELECT count(*) FROM ferry_migrations", &[]).await.unwrap().get(0);
    assert_eq!(n as usize, migrate::POSTGRES.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_a_database_whose_applied_migration_was_edited() {
    let Some(server) = pg_server_url() else {
        return;
    };
    let db = TestDb::create(&server).await;
    let client = pg_connect(&db.url).await;
    client.execute("UPDATE ferry_migrations SET checksum = repeat('0', 64) WHERE version = 1", &[]).await.unwrap();
    let store = Store::open(&pg_config(&db)).await.unwrap();
    let err = store.migrate().await.unwrap_err().to_string();
    assert!(err.contains("V1") && err.contains("append-only"), "{err}");
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_refuses_a_database_whose_applied_migration_was_edited() {
    let dir = tempfile::tempdir().unwrap();
    let config = embedded_config(dir.path());
    let store = Store::open(&config).await.unwrap();
    store.migrate().await.unwrap();
    store.close();
    let conn = rusqlite::Connection::open(Store::sqlite_path(&config)).unwrap();
    conn.execute("UPDATE ferry_migrations SET checksum = 'x' WHERE version = 1", []).unwrap();
    drop(conn);
    let store = Store::open(&config).await.unwrap();
    let err = store.migrate().await.unwrap_err().to_string();
    assert!(err.contains("append-only"), "{err}");
}

/// Seed enough rows that the planner has a real choice, then read the plans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lookup_and_sweep_queries_use_their_partial_indexes() {
    use ferry::store::sql as queries;
    let Some(server) = pg_server_url() else {
        return;
    };
    let db = TestDb::create(&server).await;
    let client = pg_connect(&db.url).await;
    let now: i64 = 1_800_000_000_000;
    // 50k clips: most live and unexpired, some expired, some consumed or deleted.
    client
        .batch_execute(&format!(
            "INSERT INTO clips (code, kind, blob_key, size, sha256, created_at, expires_at,
                                consumed_at, deleted_at, delete_token_hash)
             SELECT lpad(upper(to_hex(g)), 10, '0'), 'file', 'clips/' || g, 1, repeat('a', 64),
                    {now} - 1000, {now} + (g % 1000) * 60000 - 6000000,
                    CASE WHEN g % 50 = 0 THEN {now} END,
                    CASE WHEN g % 77 = 0 THEN {now} END, 'x'
             FROM generate_series(1, 50000) AS g;
             INSERT INTO clip_tombstones (code, reason, gone_at)
             SELECT lpad(upper(to_hex(g)), 10, 'T'), 'expired', {now} - g * 1000
             FROM generate_series(1, 20000) AS g;
             INSERT INTO upload_sessions (id, filename, total_chunks, chunk_size, kind, expiry_ms,
                                          status, created_at, last_activity, delete_token)
             SELECT lpad(upper(to_hex(g)), 16, '0'), 'f', 1, 1, 'file', 1,
                    CASE WHEN g % 10 = 0 THEN 'uploading' ELSE 'complete' END, {now}, {now} - g * 1000, 't'
             FROM generate_series(1, 20000) AS g;
             INSERT INTO jobs (kind, state, max_attempts, run_at, created_at, updated_at, finished_at,
                               locked_until)
             SELECT CASE WHEN g % 3 = 0 THEN 'webhook' ELSE 'thumbnail' END,
                    CASE WHEN g % 10 = 0 THEN 'queued' WHEN g % 10 = 1 THEN 'running'
                         WHEN g % 10 = 2 THEN 'failed' ELSE 'done' END,
                    3, {now} - g, {now}, {now}, CASE WHEN g % 10 >= 2 THEN {now} - g END,
                    CASE WHEN g % 10 = 1 THEN {now} + g END
             FROM generate_series(1, 20000) AS g;
             ANALYZE;"
        ))
        .await
        .unwrap();
    let explain = |sql: &str| format!("EXPLAIN {sql}");
    let code = "00000000FF".to_string();
    let limit: i64 = 500;
    let (worker, kinds) = ("w".to_string(), ",thumbnail,webhook,".to_string());
    let cases: [(String, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>, &str); 9] = [
        (explain(queries::UNRETIRED_CLIP_BY_CODE), vec![&code], "clips_live_code_idx"),
        (explain(queries::TOMBSTONES_BATCH), vec![&now, &limit], "clip_tombstones_gone_idx"),
        (explain(queries::EXPIRED_CLIPS_BATCH), vec![&now, &limit], "clips_live_expiry_idx"),
        (explain(queries::ABANDONED_UPLOADS_BATCH), vec![&now, &limit], "upload_sessions_abandoned_idx"),
        (explain(queries::CLAIM_JOBS_PG), vec![&now, &now, &worker, &limit, &kinds], "jobs_runnable_idx"),
        (explain(queries::RESCUE_JOBS), vec![&now], "jobs_lease_idx"),
        (explain(queries::PRUNE_DONE_JOBS_PG), vec![&now, &limit], "jobs_done_idx"),
        (explain(queries::PRUNE_FAILED_JOBS_PG), vec![&now, &limit], "jobs_failed_idx"),
        (explain(queries::RECENT_FAILED_JOBS), vec![&limit], "jobs_failed_idx"),
    ];
    for (sql, params, index) in cases {
        let rows = client.query(&sql, &params).await.unwrap();
        let plan: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let plan = plan.join("\n");
        assert!(plan.contains(index), "expected {index} in the plan of {sql}:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "sequential scan in the plan of {sql}:\n{plan}");
    }
}
