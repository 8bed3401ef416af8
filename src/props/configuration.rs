//! Properties of configuration values (`config`): byte sizes (`ByteSize::from_str`) and
//! durations (humantime) round-trip and never panic on any text, sizes and durations in a file
//! load as what they say, and `Config::load` of a file of random values for real keys (plus
//! unknown ones) loads or fails with one line that names a key. Files that are not TOML at all
//! fail in several lines today: that property is written, and ignored until `config.rs` flattens
//! those messages.

use std::io::Write as _;
use std::str::FromStr;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;

use crate::config::{ByteSize, Config, ConfigError, Sources};

const UNITS: [(&str, u64); 14] = [
    ("", 1),
    ("b", 1),
    ("k", 1000),
    ("kb", 1000),
    ("kib", 1 << 10),
    ("m", 1_000_000),
    ("mb", 1_000_000),
    ("mib", 1 << 20),
    ("g", 1_000_000_000),
    ("gb", 1_000_000_000),
    ("gib", 1 << 30),
    ("t", 1_000_000_000_000),
    ("tb", 1_000_000_000_000),
    ("tib", 1 << 40),
];

/// A unit as people write it: any letter case.
fn unit() -> impl Strategy<Value = (String, u64)> {
    (prop::sample::select(UNITS.to_vec()), any::<u64>()).prop_map(|((u, mult), cases)| {
        let written = u
            .chars()
            .enumerate()
            .map(|(i, c)| if cases >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
            .collect();
        (written, mult)
    })
}

/// Every key of the configuration as a dotted path, with its default (null for optional keys).
fn known_keys() -> Vec<(String, Value)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&path, child, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", &serde_json::to_value(Config::defaults()).expect("the configuration serialises"), &mut out);
    out
}

fn keys() -> &'static [(String, Value)] {
    static KEYS: std::sync::OnceLock<Vec<(String, Value)>> = std::sync::OnceLock::new();
    KEYS.get_or_init(known_keys)
}

/// A TOML value written out: strings escaped, floats always marked as floats.
#[derive(Debug, Clone)]
enum Toml {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<Toml>),
    Table(Vec<(String, Toml)>),
}

impl Toml {
    fn write(&self) -> String {
        match self {
            Toml::Str(s) => {
                let mut out = String::from("\"");
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\u{:04X}", c as u32)),
                        c => out.push(c),
                    }
                }
                out.push('"');
                out
            }
            Toml::Int(n) => n.to_string(),
            Toml::Float(f) if f.is_nan() => "nan".into(),
            Toml::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
            Toml::Float(f) => format!("{f:?}"),
            Toml::Bool(b) => b.to_string(),
            Toml::Array(items) => format!("[{}]", items.iter().map(Toml::write).collect::<Vec<_>>().join(", ")),
            Toml::Table(items) => {
                format!(
                    "{{{}}}",
                    items.iter().map(|(k, v)| format!("{k} = {}", v.write())).collect::<Vec<_>>().join(", ")
                )
            }
        }
    }
}

/// Text that configuration values are made of: sizes, durations, URLs, addresses, filters.
fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,22} ?(b|kb|KiB|MiB|GB|tib|xb|)",
        "[0-9]{1,20} ?(ns|us|ms|s|m|min|h|hr|d|w|M|y|x|)",
        "[0-9]{1,4}(s|m|h) [0-9]{1,4}(ms|s|m)",
        "(postgres|postgresql|redis|rediss|http|https|s3)://[ -~]{0,20}",
        "[0-9.]{0,15}(:[0-9]{0,6})?|\\[?[0-9a-f:]{0,20}\\]?(:[0-9]{1,6})?",
        "(info|debug|warn|off|[a-z_]{1,8}=(trace|info|[a-z]{0,4}))(,[a-z_=:\\[\\]{}.]{0,12})?",
        "(on|off|memory|none|fs|s3|text|json|5min|24hr|[a-z]{0,6})",
        "\\PC{0,16}",
        // Line breaks inside values are the ignored property's (see there).
        "[^\r\n]{0,8}",
    ]
}

fn toml_value() -> impl Strategy<Value = Toml> {
    let leaf = prop_oneof![
        4 => value_text().prop_map(Toml::Str),
        2 => prop_oneof![any::<i64>(), 0i64..70_000, Just(0), Just(-1), Just(i64::MAX)].prop_map(Toml::Int),
        1 => any::<f64>().prop_map(Toml::Float),
        1 => any::<bool>().prop_map(Toml::Bool),
    ];
    leaf.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Toml::Array),
            prop::collection::vec(("[a-z_]{1,6}", inner), 0..3).prop_map(|kv| {
                let mut seen = std::collections::HashSet::new();
                Toml::Table(kv.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect())
            }),
        ]
    })
}

/// A file's worth of settings: real keys with random values, sometimes an unknown key.
fn settings() -> impl Strategy<Value = Vec<(String, Toml)>> {
    let known = keys().len();
    let setting = prop_oneof![
        8 => (0..known, toml_value()).prop_map(|(i, v)| (keys()[i].0.clone(), v)),
        1 => ("(server\\.|limits\\.|jobs\\.)?[a-z_]{1,10}", toml_value()),
    ];
    prop::collection::vec(setting, 0..6).prop_map(|settings| {
        // A key (or a table and a key under it) is given once, as TOML requires.
        let mut out: Vec<(String, Toml)> = Vec::new();
        for (k, v) in settings {
            let clash =
                out.iter().any(|(o, _)| o == &k || k.starts_with(&format!("{o}.")) || o.starts_with(&format!("{k}.")));
            if !clash {
                out.push((k, v));
            }
        }
        out
    })
}

fn load(text: &[u8]) -> Result<Config, ConfigError> {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().expect("a temp file");
    file.write_all(text).expect("written");
    Config::load(&Sources { file: Some(file.path().to_path_buf()), env: false })
}

fn file_of(settings: &[(String, Toml)]) -> String {
    settings.iter().map(|(k, v)| format!("{k} = {}\n", v.write())).collect()
}

/// The key an error names, if it names one of `candidates` (or of the known keys).
fn named_key(e: &ConfigError, given: &[(String, Toml)]) -> Option<String> {
    let known = |k: &str| keys().iter().any(|(p, _)| p == k) || given.iter().any(|(g, _)| g == k);
    match e {
        ConfigError::Invalid { key, .. } => known(key).then(|| key.to_string()),
        ConfigError::UnknownKey(key) => given
            .iter()
            .any(|(g, _)| g == key || g.starts_with(&format!("{key}.")) || key.starts_with(&format!("{g}.")))
            .then(|| key.clone()),
        ConfigError::Parse(msg) => {
            let candidates = keys().iter().map(|(p, _)| p.as_str()).chain(given.iter().map(|(g, _)| g.as_str()));
            // The key itself, or a path below it (`blob.x` for a table given where `blob` is a name).
            candidates
                .filter(|k| msg.contains(&format!("`{k}`")) || msg.contains(&format!("`{k}.")))
                .max_by_key(|k| k.len())
                .map(str::to_string)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn a_byte_size_written_with_any_unit_reads_back_as_its_bytes_or_as_too_large(
        n in prop_oneof![0u64..100_000, any::<u64>()],
        (unit, mult) in unit(),
        spaces in ("[ \t]{0,2}", "[ \t]{0,2}", "[ \t]{0,2}"),
    ) {
        let (lead, mid, tail) = spaces;
        let written = format!("{lead}{n}{mid}{unit}{tail}");
        match n.checked_mul(mult) {
            Some(bytes) => prop_assert_eq!(ByteSize::from_str(&written), Ok(ByteSize(bytes)), "{:?}", written),
            None => prop_assert!(ByteSize::from_str(&written).is_err_and(|e| e.contains("too large"))),
        }
    }

    #[test]
    fn any_text_as_a_byte_size_never_panics_and_a_size_taken_is_digits_and_a_unit(raw in value_text()) {
        if let Ok(ByteSize(bytes)) = ByteSize::from_str(&raw) {
            let s = raw.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (digits, unit) = s.split_at(split);
            let mult = UNITS.iter().find(|(u, _)| unit.trim().eq_ignore_ascii_case(u)).map(|(_, m)| *m);
            prop_assert!(!digits.is_empty(), "{:?}", raw);
            prop_assert_eq!(Some(bytes), mult.and_then(|m| digits.parse::<u64>().ok()?.checked_mul(m)));
        }
    }

    #[test]
    fn durations_round_trip_through_their_text_and_any_text_never_panics(
        secs in prop_oneof![0u64..100_000, 0u64..=u64::MAX / 4],
        nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000],
        raw in value_text(),
    ) {
        let d = Duration::new(secs, nanos);
        let written = humantime::format_duration(d).to_string();
        prop_assert_eq!(humantime::parse_duration(&written), Ok(d), "{:?}", written);
        let _ = humantime::parse_duration(&raw);
    }

    #[test]
    fn a_duration_or_size_in_a_config_file_loads_as_what_it_says_or_names_its_key(
        secs in 0u64..10_000_000,
        millis in 0u64..1000,
        n in 0u64..5000,
        (unit, mult) in unit(),
        as_number in any::<bool>(),
    ) {
        let d = Duration::from_millis(secs * 1000 + millis);
        let size = if as_number { n.to_string() } else { format!("\"{n}{unit}\"") };
        let text = format!(
            "[server]\nrequest_timeout = \"{}\"\n[limits]\nmax_text_size = {size}\n",
            humantime::format_duration(d)
        );
        match load(text.as_bytes()) {
            Ok(c) => {
                prop_assert_eq!(c.server.request_timeout, d);
                prop_assert_eq!(c.limits.max_text_size.bytes(), if as_number { n } else { n * mult });
            }
            Err(e) => {
                let why = e.to_string();
                let key = if d.is_zero() { "server.request_timeout" } else { "limits.max_text_size" };
                prop_assert!(matches!(&e, ConfigError::Invalid { key: k, .. } if *k == key), "{}", why);
                prop_assert!(d.is_zero() || (if as_number { n } else { n * mult }) == 0, "{}", why);
            }
        }
    }

    /// A TOML syntax error arrives with the toml crate's several-line snippet, and a value with
    /// a line break is echoed as it is (`blob = "\r"`); `config::one_line` joins them into one
    /// line (found by this property).
    #[test]
    fn any_bytes_as_a_config_file_never_panic_and_fail_in_one_line(
        pieces in prop::collection::vec(prop_oneof![
            settings().prop_map(|s| file_of(&s).into_bytes()),
            (0..keys().len(), "[ -~\r\n]{0,10}")
                .prop_map(|(i, v)| format!("{} = {}\n", keys()[i].0, Toml::Str(v).write()).into_bytes()),
            Just(b"[server]\n".to_vec()),
            Just(b"[[limits]]\n".to_vec()),
            Just(b"\"\"\"".to_vec()),
            "[ -~\n]{0,30}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..30),
        ], 0..4),
    ) {
        let text = pieces.concat();
        if let Err(e) = load(&text) {
            let why = e.to_string();
            prop_assert!(!why.contains('\n') && !why.contains('\r'), "several lines: {:?}", why);
        }
    }

    #[test]
    fn a_config_file_of_random_values_loads_or_fails_in_one_line_naming_a_key(settings in settings()) {
        let text = file_of(&settings);
        if let Err(e) = load(text.as_bytes()) {
            let why = e.to_string();
            prop_assert!(!why.contains('\n') && !why.contains('\r'), "several lines: {:?}\nfile:\n{}", why, text);
            prop_assert!(named_key(&e, &settings).is_some(), "names no key: {:?}\nfile:\n{}", why, text);
        }
    }
}
