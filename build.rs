//! Embeds into the binary what it serves without a disk: `migrations/{postgres,sqlite}/
//! V<n>__<name>.sql` as an ordered list (refusing to build when the two directories disagree on
//! versions or a name is malformed), and the browser UI in `static/` with each file's MIME type,
//! strong ETag and brotli and gzip forms, compressed once here rather than per request. The UI
//! tree's hash versions the asset URLs (`/assets/<version>/...`), written into `index.html` and
//! `sw.js` where they say `{{ASSETS}}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

fn scan(dir: &Path) -> BTreeMap<u32, (String, String)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".sql") else {
            continue;
        };
        let (version, name) = stem
            .strip_prefix('V')
            .and_then(|rest| rest.split_once("__"))
            .unwrap_or_else(|| panic!("migration {file}: expected V<n>__<name>.sql"));
        let version: u32 = version.parse().unwrap_or_else(|_| panic!("migration {file}: bad version"));
        let abs = path.canonicalize().unwrap().to_string_lossy().into_owned();
        if out.insert(version, (name.to_string(), abs)).is_some() {
            panic!("migration version {version} appears twice in {}", dir.display());
        }
    }
    out
}

fn main() {
    embed_migrations();
    embed_static();
}

fn embed_migrations() {
    println!("cargo:rerun-if-changed=migrations");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let pg = scan(&root.join("postgres"));
    let lite = scan(&root.join("sqlite"));
    let pg_versions: Vec<_> = pg.keys().collect();
    let lite_versions: Vec<_> = lite.keys().collect();
    assert_eq!(pg_versions, lite_versions, "postgres and sqlite migrations must have the same versions");
    for (i, v) in pg.keys().enumerate() {
        assert_eq!(*v as usize, i + 1, "migration versions must run 1, 2, 3, ... without gaps");
    }
    let mut code = String::new();
    for (name, set) in [("POSTGRES", &pg), ("SQLITE", &lite)] {
        writeln!(code, "pub static {name}: &[Migration] = &[").unwrap();
        for (version, (mname, path)) in set {
            writeln!(code, "    Migration {{ version: {version}, name: {mname:?}, sql: include_str!({path:?}) }},")
                .unwrap();
        }
        writeln!(code, "];").unwrap();
    }
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(out, code).unwrap();
}

/// Files under `dir`, as paths relative to it with `/` separators, sorted.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())).map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        if entry.file_type().unwrap().is_dir() {
            walk(&entry.path(), &rel, out);
        } else {
            out.push(rel);
        }
    }
}

/// The Content-Type of a UI file, and whether it is worth compressing. An unknown extension
/// stops the build: nothing is served with a guessed type.
fn mime(path: &str) -> (&'static str, bool) {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => ("text/html; charset=utf-8", true),
        "js" | "mjs" => ("text/javascript; charset=utf-8", true),
        "css" => ("text/css; charset=utf-8", true),
        "svg" => ("image/svg+xml", true),
        "json" => ("application/json", true),
        "webmanifest" => ("application/manifest+json", true),
        "txt" => ("text/plain; charset=utf-8", true),
        "png" => ("image/png", false),
        "ico" => ("image/x-icon", true),
        other => panic!("static/{path}: no Content-Type known for .{other}"),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 9, lgwin: 22, ..Default::default() };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
    out
}

fn embed_static() {
    use sha2::{Digest, Sha256};
    println!("cargo:rerun-if-changed=static");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    let out_dir = Path::new(&std::env::var("OUT_DIR").unwrap()).join("static");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut files = Vec::new();
    walk(&root, "", &mut files);
    let sources: Vec<(String, Vec<u8>)> =
        files.iter().map(|f| (f.clone(), std::fs::read(root.join(f)).unwrap())).collect();

    let mut tree = Sha256::new();
    for (path, data) in &sources {
        tree.update((path.len() as u64).to_le_bytes());
        tree.update(path.as_bytes());
        tree.update((data.len() as u64).to_le_bytes());
        tree.update(data);
    }
    let version: String = tree.finalize()[..6].iter().map(|b| format!("{b:02x}")).collect();
    let assets = format!("/assets/{version}");

    let mut code = format!("pub static VERSION: &str = {version:?};\npub static FILES: &[StaticFile] = &[\n");
    for (i, (path, data)) in sources.into_iter().enumerate() {
        let data = if path == "index.html" || path == "sw.js" {
            String::from_utf8(data).expect("index.html and sw.js are UTF-8").replace("{{ASSETS}}", &assets).into_bytes()
        } else {
            data
        };
        let (content_type, compressible) = mime(&path);
        let tag: String = Sha256::digest(&data)[..12].iter().map(|b| format!("{b:02x}")).collect();
        let write = |suffix: &str, bytes: &[u8]| {
            let file = out_dir.join(format!("{i}{suffix}"));
            std::fs::write(&file, bytes).unwrap();
            format!("include_bytes!({:?})", file.to_string_lossy())
        };
        let variant = |suffix: &str, bytes: Vec<u8>| {
            // Only forms that save a tenth or more are worth a Vary and a second ETag.
            if compressible && data.len() >= 512 && bytes.len() * 10 <= data.len() * 9 {
                format!("Some({})", write(suffix, &bytes))
            } else {
                "None".to_string()
            }
        };
        let br = variant(".br", brotli(&data));
        let gz = variant(".gz", gzip(&data));
        writeln!(
            code,
            "    StaticFile {{ path: {path:?}, content_type: {content_type:?}, tag: {tag:?}, identity: {}, br: {br}, gzip: {gz} }},",
            write("", &data)
        )
        .unwrap();
    }
    code.push_str("];\n");
    std::fs::write(Path::new(&std::env::var("OUT_DIR").unwrap()).join("static_files.rs"), code).unwrap();
}
