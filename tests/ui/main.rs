//! Runs the browser suite — `tests/ui/*.test.mjs`, `node --test` with playwright-core driving
//! Debian's Chromium — against the ferry binary cargo just built, so the README's `cargo test`
//! covers the UI too. The npm packages come from `tests/ui/package-lock.json` (`npm ci` runs
//! once when they are missing). Without Node 20+, Chromium or the packages the suite prints
//! SKIPPED and passes, except with `CI=true`, where a skipped browser suite fails.
//! `FERRY_UI_TEST_PATTERN` narrows the run to tests whose names match it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the browser suite may not be skipped when CI=true: {why}");
    }
    eprintln!("SKIPPED (browser): {why}");
}

fn node_major() -> Option<u32> {
    let out = Command::new("node").arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.trim().strip_prefix('v')?.split('.').next()?.parse().ok()
}

fn chromium() -> PathBuf {
    std::env::var_os("FERRY_TEST_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// The packages of the lockfile, installed with `npm ci` when absent.
fn packages(dir: &Path) -> Result<(), String> {
    let have = |p: &str| dir.join("node_modules").join(p).join("package.json").exists();
    if ["playwright-core", "axe-core", "jsqr"].iter().all(|p| have(p)) {
        return Ok(());
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .map_err(|e| format!("npm is not available ({e})"))?;
    if status.success() { Ok(()) } else { Err(format!("npm ci failed ({status})")) }
}

#[test]
fn the_browser_suite_passes_in_real_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    match node_major() {
        Some(v) if v >= 20 => {}
        Some(v) => return skip(&format!("Node {v} is too old; the suite needs Node 20 or later")),
        None => return skip("no `node` on PATH"),
    }
    let browser = chromium();
    if !browser.exists() {
        return skip(&format!(
            "no Chromium at {} (apt-get install -y chromium, or set FERRY_TEST_CHROMIUM)",
            browser.display()
        ));
    }
    if let Err(why) = packages(&dir) {
        return skip(&why);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/ui")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test.mjs in {}", dir.display());

    let mut cmd = Command::new("node");
    cmd.arg("--test").arg("--test-concurrency=1").arg("--test-reporter=spec");
    if let Ok(pattern) = std::env::var("FERRY_UI_TEST_PATTERN") {
        cmd.arg(format!("--test-name-pattern={pattern}"));
    }
    let status = cmd
        .args(&files)
        .current_dir(&dir)
        .env("FERRY_BIN", env!("CARGO_BIN_EXE_ferry"))
        .env("FERRY_TEST_CHROMIUM", &browser)
        .status()
        .expect("node runs");
    assert!(status.success(), "the browser suite failed ({status}); its report is above");
}
