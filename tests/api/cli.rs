//! The real binary: help text, configuration errors on one line naming the key, file and
//! environment precedence, `migrate`, fail-fast on an unreachable PostgreSQL, and clean exits
//! on SIGTERM and SIGINT.

use std::time::{Duration, Instant};

use crate::helpers::{TestDb, binary, pg_server_url, signal, spawn_binary, wait_exit};

#[test]
fn help_explains_every_subcommand() {
    let out = binary().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for word in ["serve", "migrate", "--config", "FERRY_"] {
        assert!(help.contains(word), "help lacks {word}:\n{help}");
    }
    let out = binary().args(["help", "migrate"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations"));
}

#[test]
fn an_invalid_setting_stops_startup_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value, named) in [
        ("FERRY_STORE__POOL_SIZE", "lots", "store.pool_size"),
        ("FERRY_BIND", "not-an-address", "bind"),
        ("FERRY_SERVER__SHUTDOWN_GRACE", "soon", "server.shutdown_grace"),
        ("FERRY_SERVER__SHUTDOWN_GRAZE", "5s", "server.shutdown_graze"),
        ("FERRY_DATABASE_URL", "mysql://x", "database_url"),
    ] {
        let out = binary().env("FERRY_DATA_DIR", dir.path()).env(key, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}={value}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "one line for {key}: {err}");
        assert!(err.contains(named), "{key}: {err}");
    }
}

#[test]
fn environment_overrides_the_file_which_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferry.toml");
    std::fs::write(&file, "[server]\nshutdown_grace = \"not a duration\"\n").unwrap();
    let out = binary().arg("--config").arg(&file).env("FERRY_DATA_DIR", dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.shutdown_grace"));

    let mut cmd = binary();
    cmd.arg("--config").arg(&file).env("FERRY_DATA_DIR", dir.path()).env("FERRY_BIND", "127.0.0.1:0");
    cmd.env("FERRY_SERVER__SHUTDOWN_GRACE", "2s");
    let mut proc = spawn_binary(cmd);
    signal(&proc.child, "TERM");
    assert!(wait_exit(&mut proc.child, Duration::from_secs(10)).success());
}

#[test]
fn sigterm_and_sigint_each_end_the_server_cleanly() {
    for sig in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = binary();
        cmd.env("FERRY_DATA_DIR", dir.path()).env("FERRY_BIND", "127.0.0.1:0");
        let mut proc = spawn_binary(cmd);
        let body = ureq_get(proc.addr, "/health");
        assert!(body.contains("\"status\":\"OK\""), "{body}");
        assert!(dir.path().join("ferry.db").exists(), "embedded store under FERRY_DATA_DIR");
        signal(&proc.child, sig);
        let status = wait_exit(&mut proc.child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "SIG{sig}");
        let log: Vec<String> = proc.log.try_iter().collect();
        assert!(log.iter().any(|l| l.contains("shutdown complete")), "SIG{sig}: {log:?}");
    }
}

#[test]
fn migrate_applies_once_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let first = binary().arg("migrate").env("FERRY_DATA_DIR", dir.path()).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let out = String::from_utf8(first.stdout).unwrap();
    assert!(out.contains("applied [1") && out.contains("schema version"), "{out}");
    let second = binary().arg("migrate").env("FERRY_DATA_DIR", dir.path()).output().unwrap();
    assert!(String::from_utf8(second.stdout).unwrap().contains("applied []"));
}

#[test]
fn migrate_against_postgres_applies_once_and_exits() {
    let Some(server) = pg_server_url() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::create_empty(&server));
    for expected in ["applied [1", "applied []"] {
        let out = binary().arg("migrate").env("FERRY_DATABASE_URL", &db.url).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.contains(expected) && stdout.contains("PostgreSQL at"), "{stdout}");
    }
    drop(db);
}

#[test]
fn an_unreachable_postgres_fails_fast_with_a_clear_message_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = binary()
        .env("FERRY_DATA_DIR", dir.path())
        .env("FERRY_DATABASE_URL", "postgres://ferry:hunter2@127.0.0.1:1/ferry")
        .env("FERRY_STORE__CONNECT_TIMEOUT", "2s")
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("cannot reach PostgreSQL at 127.0.0.1:1/ferry"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn database_url_alone_selects_postgres() {
    let Some(server) = pg_server_url() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::create(&server));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = binary();
    cmd.env("FERRY_DATA_DIR", dir.path()).env("FERRY_BIND", "127.0.0.1:0").env("DATABASE_URL", &db.url);
    let mut proc = spawn_binary(cmd);
    let body = ureq_get(proc.addr, "/health");
    assert!(body.contains("\"store\":\"postgres\""), "{body}");
    signal(&proc.child, "TERM");
    assert!(wait_exit(&mut proc.child, Duration::from_secs(10)).success());
    assert!(!dir.path().join("ferry.db").exists());
    drop(db);
}

/// A minimal blocking HTTP/1.1 GET, so these synchronous tests need no runtime.
fn ureq_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn sweep_runs_one_pass_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = binary().arg("sweep").arg("--reconcile").env("FERRY_DATA_DIR", dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    let report: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert_eq!(report["expiredClips"], 0);
    assert_eq!(report["orphansDeleted"], 0);
    assert!(report["seconds"].is_f64());
}

#[test]
fn the_test_suites_own_variables_do_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = binary();
    cmd.env("FERRY_DATA_DIR", dir.path())
        .env("FERRY_BIND", "127.0.0.1:0")
        .env("FERRY_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        .env("FERRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/");
    let mut proc = spawn_binary(cmd);
    assert!(ureq_get(proc.addr, "/health").contains("\"status\":\"OK\""));
    signal(&proc.child, "TERM");
    assert!(wait_exit(&mut proc.child, Duration::from_secs(10)).success());
}
