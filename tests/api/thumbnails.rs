//! Thumbnails over HTTP on every backend: a plaintext photo uploaded with the one-request API
//! gets an upright 256-pixel thumbnail from the job queue, served (404 until then) behind the
//! clip's access code, never spending a limited clip; one-time, client-encrypted and
//! non-image clips get no job; a decompression bomb, a truncated file and a text file named
//! .jpg each end as a failed job with a clear error while the server keeps serving; thumbnails
//! go with their clip (delete, expiry) and orphans go with the reconcile.

use std::io::Cursor;
use std::time::Duration;

use ferry::domain::clock::Clock;
use ferry::jobs::queue::Outcome;
use image::{ExtendedColorType, ImageEncoder, Rgb, RgbImage};
use serde_json::{Value, json};

use crate::helpers::{TestApp, poll_until};

/// The app runs no job workers of its own: each test runs the queue when it chooses.
fn no_workers(c: &mut ferry::Config) {
    c.jobs.concurrency = 0;
}

/// A 1200 x 800 photo, red on the left and blue on the right, as a camera held in portrait
/// stores it: landscape pixels and EXIF orientation 6 (rotate 90° clockwise to view), in a
/// little-endian ("II") TIFF block.
fn portrait_photo() -> Vec<u8> {
    let image = RgbImage::from_fn(1200, 800, |x, _| if x < 600 { Rgb([230, 10, 10]) } else { Rgb([10, 10, 230]) });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .write_image(image.as_raw(), 1200, 800, ExtendedColorType::Rgb8)
        .unwrap();
    // APP1: "Exif\0\0", TIFF header II*\0 with the IFD at 8, one entry: 0x0112 SHORT 1 = 6.
    let mut app1: Vec<u8> = b"Exif\0\0II\x2A\0\x08\0\0\0\x01\0".to_vec();
    app1.extend_from_slice(&[0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00]);
    app1.extend_from_slice(&[0, 0, 0, 0]);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A valid PNG whose header claims 100 000 x 100 000 pixels (40 GB decoded).
fn png_bomb() -> Vec<u8> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(&[0u8; 3 * 4], 2, 2, ExtendedColorType::Rgb8).unwrap();
    // IHDR data sits at bytes 16..29 (width, height, ...), its CRC over type + data at 29..33.
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    png
}

/// A JPEG of noise, cut at half its length.
fn truncated_jpeg() -> Vec<u8> {
    let mut seed = 7u32;
    let image = RgbImage::from_fn(600, 400, |_, _| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        Rgb([(seed >> 16) as u8, (seed >> 8) as u8, seed as u8])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .write_image(image.as_raw(), 600, 400, ExtendedColorType::Rgb8)
        .unwrap();
    jpeg.truncate(jpeg.len() / 2);
    jpeg
}

async fn put(app: &TestApp, name: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Value {
    let mut req = app.client.put(app.url(&format!("/api/clips/{name}"))).header("accept", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.body(body).send().await.unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    res.json().await.unwrap()
}

fn id(made: &Value) -> String {
    made["clipId"].as_str().unwrap().to_string()
}

async fn thumbnail(app: &TestApp, clip: &str, code: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(&format!("/api/clip/{clip}/thumbnail")));
    if let Some(code) = code {
        req = req.header("access-code", code);
    }
    req.send().await.unwrap()
}

async fn run_jobs(app: &TestApp) -> Vec<(ferry::store::JobRecord, Outcome)> {
    app.state.jobs().work_once(app.clock.now_ms()).await
}

async fn thumbnail_jobs(app: &TestApp) -> i64 {
    let counts = app.state.store().job_counts().await.unwrap();
    counts.iter().filter(|c| c.kind == "thumbnail").map(|c| c.count).sum()
}

all_backends! {
    async fn a_plaintext_photo_gets_an_upright_small_thumbnail(app, no_workers) {
        let clip = id(&put(&app, "photo.jpg", portrait_photo(), &[]).await);
        let res = thumbnail(&app, &clip, None).await;
        assert_eq!(res.status(), 404, "not before its job ran");
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "thumbnail_not_found");

        let ran = run_jobs(&app).await;
        let kinds: Vec<(&str, Outcome)> = ran.iter().map(|(j, o)| (j.kind.as_str(), *o)).collect();
        assert!(kinds.contains(&("thumbnail", Outcome::Done)), "{kinds:?}");

        let res = thumbnail(&app, &clip, None).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "image/jpeg");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        let etag = res.headers()["etag"].to_str().unwrap().to_string();
        let length: usize = res.headers()["content-length"].to_str().unwrap().parse().unwrap();
        let bytes = res.bytes().await.unwrap();
        assert_eq!(bytes.len(), length);
        assert!(bytes.len() < 20_000, "small: {} bytes", bytes.len());
        let thumb = image::load_from_memory(&bytes).unwrap().into_rgb8();
        assert!(thumb.height() == 256 && (170..=171).contains(&thumb.width()), "upright: {:?}", thumb.dimensions());
        let at = |x: u32, y: u32| thumb.get_pixel(x, y).0;
        let (top, bottom) = (at(85, 30), at(85, 225));
        assert!(top[0] > 180 && top[2] < 80, "the left (red) half is on top: {top:?}");
        assert!(bottom[2] > 180 && bottom[0] < 80, "the right (blue) half is below: {bottom:?}");

        let again = app
            .client
            .get(app.url(&format!("/api/clip/{clip}/thumbnail")))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);
        assert_eq!(app.blob_keys("thumbs").await.len(), 1);
        // The original is untouched and still downloads whole.
        let raw = app.get(&format!("/raw/{clip}")).await;
        assert_eq!(raw.bytes().await.unwrap().to_vec(), portrait_photo());
    }

    async fn the_thumbnail_needs_the_access_code_and_never_spends_a_limited_clip(app, no_workers) {
        let code = "open sesame";
        let clip = id(&put(&app, "photo.jpg", portrait_photo(), &[("access-code", code), ("max-downloads", "1")]).await);
        run_jobs(&app).await;
        assert_eq!(thumbnail(&app, &clip, None).await.status(), 401);
        assert_eq!(thumbnail(&app, &clip, Some("wrong")).await.status(), 401);
        for _ in 0..3 {
            assert_eq!(thumbnail(&app, &clip, Some(code)).await.status(), 200);
        }
        let res = app
            .client
            .post(app.url(&format!("/api/clip/{clip}/thumbnail")))
            .json(&json!({ "accessCode": code }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let info: Value = app.get(&format!("/api/clip/{clip}/info")).await.json().await.unwrap();
        assert_eq!(info["downloadsLeft"], 1, "thumbnails spent nothing");
        let res = app
            .client
            .post(app.url(&format!("/api/file/{clip}")))
            .json(&json!({ "accessCode": code }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
        assert_eq!(thumbnail(&app, &clip, Some(code)).await.status(), 404, "a spent clip has no thumbnail");
    }

    async fn one_time_encrypted_and_non_image_clips_get_no_thumbnail_job(app, no_workers) {
        let once = id(&put(&app, "photo.jpg", portrait_photo(), &[("one-time", "true")]).await);
        put(&app, "notes.txt", b"just text".to_vec(), &[]).await;
        // A browser's (client-encrypted) upload, whatever type it names.
        let upload = app
            .initiate(json!({ "filename": "photo.jpg", "filesize": 5, "mimeType": "image/jpeg", "contentType": "file" }))
            .await;
        assert_eq!(app.send_chunk(&upload, 0, b"12345".to_vec()).await.status(), 200);
        let done: Value = app
            .client
            .post(app.url(&format!("/api/upload/complete/{upload}")))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(thumbnail_jobs(&app).await, 0);
        run_jobs(&app).await;
        for clip in [once, id(&done)] {
            assert_eq!(thumbnail(&app, &clip, None).await.status(), 404);
        }
        assert!(app.blob_keys("thumbs").await.is_empty());
    }

    async fn a_bomb_a_truncated_file_and_a_fake_image_each_fail_their_job_with_a_clear_error(app, no_workers) {
        let cases = [
            ("bomb.png", png_bomb(), "100000x100000"),
            ("cut.jpg", truncated_jpeg(), "damaged or incomplete"),
            ("photo.jpg", b"this is a shopping list, not a photo\n".repeat(20), "not an image"),
        ];
        let mut clips = Vec::new();
        for (name, bytes, _) in &cases {
            clips.push(id(&put(&app, name, bytes.clone(), &[]).await));
        }
        let ran: Vec<_> = run_jobs(&app).await.into_iter().filter(|(j, _)| j.kind == "thumbnail").collect();
        assert_eq!(ran.len(), 3, "{ran:?}");
        for (job, outcome) in &ran {
            assert_eq!(*outcome, Outcome::Failed, "{job:?}");
        }
        let store = app.state.store();
        for (job, _) in &ran {
            let j = store.job(job.id).await.unwrap().unwrap();
            assert_eq!((j.state.as_str(), j.attempts), ("failed", 1), "failing for good at once: {j:?}");
            let payload: Value = serde_json::from_str(&j.payload).unwrap();
            let clip = store.clip_by_id(payload["clip"].as_i64().unwrap()).await.unwrap().unwrap();
            let (_, _, says) = cases.iter().find(|(name, _, _)| Some(*name) == clip.filename.as_deref()).unwrap();
            let error = j.last_error.unwrap();
            assert!(error.contains(says), "{}: {error}", clip.filename.unwrap());
        }
        for clip in &clips {
            assert_eq!(thumbnail(&app, clip, None).await.status(), 404);
        }
        assert_eq!(app.get("/health").await.status(), 200, "the server is unharmed");
        assert!(app.blob_keys("thumbs").await.is_empty());
        assert!(std::fs::read_dir(app.config.data_dir.join("tmp")).map(|d| d.count()).unwrap_or(0) == 0, "no scratch file left");
    }

    async fn a_thumbnail_goes_with_its_clip_and_an_orphan_with_the_reconcile(app, no_workers) {
        let deleted = put(&app, "a.jpg", portrait_photo(), &[]).await;
        let expiring = put(&app, "b.jpg", portrait_photo(), &[("expire", "5min")]).await;
        run_jobs(&app).await;
        assert_eq!(app.blob_keys("thumbs").await.len(), 2);
        let res = app
            .client
            .delete(app.url(&format!("/api/clip/{}", id(&deleted))))
            .header("x-delete-token", deleted["deleteToken"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        assert_eq!(app.blob_keys("thumbs").await.len(), 1, "deleting the clip removed its thumbnail");
        app.clock.advance(Duration::from_secs(6 * 60));
        let deps = app.state.deps();
        let settings = app.state.sweep_settings();
        ferry::jobs::sweeper::sweep_once(deps, &settings, deps.now()).await.unwrap();
        assert!(app.blob_keys("thumbs").await.is_empty(), "the sweep removed the expired clip's thumbnail");
        let _ = expiring;
        // A thumbnail no clip owns (its job finished as its clip was swept) goes once old enough.
        app.put_blob("thumbs/AB/ABABABABABABABAB", b"orphan").await;
        app.clock.advance(Duration::from_secs(2 * 3600));
        ferry::jobs::sweeper::reconcile_once(deps, &settings, deps.now()).await.unwrap();
        assert!(app.blob_keys("thumbs").await.is_empty());
    }

    async fn with_the_apps_own_workers_the_thumbnail_appears_a_moment_after_upload(app) {
        let clip = id(&put(&app, "photo.jpg", portrait_photo(), &[]).await);
        let ready = poll_until(200, Duration::from_millis(50), || async {
            thumbnail(&app, &clip, None).await.status() == 200
        })
        .await;
        assert!(ready, "the thumbnail was made by the app's workers");
        let bytes = thumbnail(&app, &clip, None).await.bytes().await.unwrap();
        let thumb = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().unwrap().decode().unwrap();
        assert_eq!(thumb.height(), 256);
    }
}
