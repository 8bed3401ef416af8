//! Embeds `migrations/{postgres,sqlite}/V<n>__<name>.sql` into the binary as an ordered list,
//! and refuses to build when the two directories disagree on versions or a name is malformed.

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
