//! Out of space is a client-visible state: with the data directory on a small tmpfs filled to
//! the last byte, chunk and one-request uploads answer 507 `insufficient_storage` and leave no
//! partial file or row, downloads and lookups keep working, an initiate whose declared size
//! cannot fit is refused up front, and everything works again, without a restart, once space
//! is freed. Mounting a tmpfs needs root (CI has it); elsewhere the test says SKIPPED.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::helpers::{Backend, spawn_app_on};
use crate::upload::{
    CHUNK, error_with, file_initiate, initiate, json_with, random_bytes, send_chunk, sha256_hex, small_chunks,
    upload_file, upload_id_of,
};

/// A tmpfs of `size` mounted on a fresh temp dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(Tmpfs { dir });
        }
        assert!(std::env::var("CI").is_err(), "cannot mount a tmpfs (needs root), and CI=true forbids skipping");
        eprintln!("SKIPPED: the out-of-space test cannot mount a tmpfs here (needs root)");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fill the file system holding `dir` to the last byte; the filler's path.
fn fill(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0xA5u8; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    // Small tails that still fit.
    for size in [4096usize, 512, 1] {
        while f.write_all(&block[..size]).is_ok() {}
    }
    path
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 }).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_keeps_serving_reads_and_recovers_without_a_restart() {
    for backend in [Backend::Embedded, Backend::Postgres] {
        let Some(fs) = Tmpfs::mount("16m") else { return };
        let data_dir = fs.path().join("data");
        let dir = data_dir.clone();
        let Some(app) = spawn_app_on(backend, false, move |c| {
            small_chunks(c);
            c.data_dir = dir;
        })
        .await
        else {
            continue;
        };
        let kept = random_bytes(3 * CHUNK + 5);
        let (kept_id, _) = upload_file(&app, &kept, "kept.bin", CHUNK, false).await;

        // Up front: a declared size that cannot fit is refused before any byte is sent.
        let res = initiate_raw(&app, file_initiate("huge.bin", 64 << 20, json!({}))).await;
        let body = error_with(res, 507, "insufficient_storage").await;
        assert!(body["message"].as_str().unwrap().contains("room"), "{body}");
        // A one-request upload declaring the same is answered before its body is sent.
        let head = format!(
            "PUT /api/clips/huge.bin HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            app.addr,
            64u64 << 20
        );
        let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut conn, head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 512];
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(&mut conn, &mut answer),
        )
        .await
        .expect("answered without the body")
        .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 507"), "{answer}");
        assert!(answer.contains("insufficient_storage"), "{answer}");

        let init = initiate(&app, file_initiate("late.bin", 2 * CHUNK, json!({}))).await;
        let upload = upload_id_of(&init);
        let before = files_under(&data_dir.join("blobs"));
        let filler = fill(fs.path());

        // Full: a chunk and a streamed one-request upload each get 507 and leave nothing.
        let chunk = random_bytes(CHUNK);
        error_with(send_chunk(&app, &upload, 0, &chunk).await, 507, "insufficient_storage").await;
        let stream = futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![7u8; 32 * 1024])));
        let res = app
            .client
            .put(app.url("/api/clips/streamed.bin"))
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        error_with(res, 507, "insufficient_storage").await;
        assert_eq!(files_under(&data_dir.join("blobs")), before, "no partial file is left");
        let status = json_with(app.get(&format!("/api/upload/{upload}/status")).await, 200).await;
        assert_eq!(status["uploadedChunks"], 0, "no row for the refused chunk: {status}");

        // Reads need no space.
        json_with(app.get(&format!("/api/clip/{kept_id}/info")).await, 200).await;
        let res = app.client.post(app.url(&format!("/api/file/{kept_id}"))).json(&json!({})).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(sha256_hex(&res.bytes().await.unwrap()), sha256_hex(&kept));
        let health = json_with(app.get("/health").await, 200).await;
        assert_eq!(health["checks"]["storage"]["status"], "full", "{health}");

        // Space freed: the same upload carries on, no restart.
        std::fs::remove_file(filler).unwrap();
        let data = random_bytes(2 * CHUNK);
        for (index, part) in data.chunks(CHUNK).enumerate() {
            json_with(send_chunk(&app, &upload, index, part).await, 200).await;
        }
        let res =
            app.client.post(app.url(&format!("/api/upload/complete/{upload}"))).json(&json!({})).send().await.unwrap();
        let done = json_with(res, 200).await;
        assert_eq!(done["sha256"], sha256_hex(&data), "{done}");
        let res = app.client.put(app.url("/api/clips/after.bin")).body(vec![1u8; 1000]).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let health = json_with(app.get("/health").await, 200).await;
        assert_eq!(health["checks"]["storage"]["status"], "ok", "{health}");
        drop(app);
    }
}

async fn initiate_raw(app: &crate::helpers::TestApp, body: serde_json::Value) -> reqwest::Response {
    app.client.post(app.url("/api/upload/initiate")).json(&body).send().await.unwrap()
}
