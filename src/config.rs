//! Typed configuration: the embedded `config/default.toml`, then an optional file, then
//! `FERRY_*` environment variables (nested keys joined with `__`), validated once at startup.
//! Owns parsing and validation only; it must not open files other than the config file, and
//! secrets it holds never print (their `Debug` is redacted).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Deserializer, Serialize};

/// The defaults, embedded so the binary runs with no file at all.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    #[serde(default)]
    pub database_url: Option<Secret>,
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub admin_token: Option<Secret>,
    #[serde(default)]
    pub redis_url: Option<Secret>,
    pub cache: CacheMode,
    pub lookup_cache: LookupCacheConfig,
    pub cors_origins: CommaList,
    pub rate_limits: Switch,
    pub trusted_proxies: CommaList,
    pub rate: RateConfig,
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub access: AccessConfig,
    pub upload: UploadConfig,
    pub sweep: SweepConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    /// Where blobs live: `fs` (under data_dir) or `s3` (FERRY_BLOB).
    pub blob: BlobBackend,
    pub s3: S3Config,
    pub jobs: JobsConfig,
    pub thumbnails: ThumbnailConfig,
    pub webhook: WebhookConfig,
}

/// The durable job queue's workers (see `jobs/`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct JobsConfig {
    /// Jobs this instance runs at once (0: it runs none; other instances do).
    pub concurrency: usize,
    /// Tries per job before it fails for good.
    pub attempts: u32,
    /// First retry delay; each further one doubles, up to `backoff_max`, plus jitter.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// A running job whose heartbeat stops for this long is claimed again.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often idle workers look for due jobs when no wake-up reached them.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub keep_done: Duration,
    #[serde(with = "humantime_serde")]
    pub keep_failed: Duration,
    /// Thumbnail jobs run at once on this instance (each decodes one image).
    pub thumbnail_concurrency: usize,
    /// Webhook deliveries in flight at once on this instance.
    pub webhook_concurrency: usize,
    /// How often storage in use is recomputed.
    #[serde(with = "humantime_serde")]
    pub accounting_interval: Duration,
}

/// Thumbnails of plaintext image clips.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ThumbnailConfig {
    pub enabled: bool,
    /// Larger images get no thumbnail.
    pub max_source_size: ByteSize,
    /// Largest width or height decoded.
    pub max_dimension: u32,
    /// Most memory one decode may take.
    pub max_alloc: ByteSize,
    /// The thumbnail's longest side, in pixels.
    pub size: u32,
}

/// Clip event notifications (FERRY_WEBHOOK__URL, FERRY_WEBHOOK__SECRET).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebhookConfig {
    #[serde(default)]
    pub url: Option<String>,
    /// Signs each delivery (`Ferry-Signature: sha256=<hex HMAC-SHA256 of the body>`).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Deadline of one delivery, connecting included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries per delivery.
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    Fs,
    S3,
}

/// The S3-compatible object store (`blob = "s3"`). Credentials and region fall back to the
/// standard `AWS_*` variables when unset.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct S3Config {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    pub region: String,
    /// Prepended to every key, e.g. "ferry/" (several deployments in one bucket).
    pub prefix: String,
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    pub allow_http: bool,
    pub virtual_hosted_style: bool,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of an answer (not a bound on the whole transfer).
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Deadline of a request that moves no content (HEAD, DELETE, LIST, copy of a part).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Deadline of the bucket check at startup.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// Part size of uploads ferry streams itself (fallback assembly, long one-request uploads).
    pub part_size: ByteSize,
    /// Write data all uploads together may hold in memory before it reaches the store.
    pub write_buffer: ByteSize,
    #[serde(default)]
    pub session_token: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerConfig {
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub upload_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub json_body_limit: ByteSize,
    #[serde(with = "humantime_serde")]
    pub health_check_timeout: Duration,
    /// A request's head must arrive within this of the connection opening (or of the first
    /// byte of a later request).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection idle between requests this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request body that sends nothing this long is answered 408; an answer the client does
    /// not read for this long closes the connection.
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// Least a request body must average, in bytes a second, over each body idle timeout of
    /// waiting for it; 0: no minimum.
    pub body_min_rate: ByteSize,
    /// Most connections open at once; 0: as many as the descriptor limit leaves room for.
    pub max_connections: usize,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_header_list_size: ByteSize,
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LimitsConfig {
    pub chunk_size: ByteSize,
    pub max_upload_size: ByteSize,
    pub max_text_size: ByteSize,
    pub max_expiry: String,
    /// Uploads that would take storage in use past this are refused (507).
    #[serde(default)]
    pub max_total_storage: Option<ByteSize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    Memory,
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LookupCacheConfig {
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    pub max_entries: u64,
    pub max_bytes: ByteSize,
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RateConfig {
    pub initiate_per_minute: u32,
    pub reads_per_minute: u32,
    pub downloads_per_minute: u32,
    pub admin_auth_per_minute: u32,
    pub quick_share_misses: u32,
    #[serde(with = "humantime_serde")]
    pub quick_share_block: Duration,
    /// Where the counters live: this process (`memory`) or Redis, shared by every instance.
    pub backend: RateBackend,
    /// Deadline of one Redis round trip of the limiter; slower, it counts in memory.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateBackend {
    Memory,
    Redis,
}

impl Config {
    /// The trusted proxy networks, parsed (validate() has checked them).
    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies.0.iter().filter_map(|n| parse_net(n).ok()).collect()
    }
}

/// A CIDR, or a bare address meaning just that host.
fn parse_net(raw: &str) -> Result<ipnet::IpNet, String> {
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{raw}` is not a CIDR like 10.0.0.0/8 or an address"))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AccessConfig {
    pub pbkdf2_salt: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct UploadConfig {
    pub assembly_concurrency: usize,
    pub access_code_concurrency: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SweepConfig {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub batch_size: i64,
    #[serde(with = "humantime_serde")]
    pub abandon_after: Duration,
    #[serde(with = "humantime_serde")]
    pub finished_retention: Duration,
    #[serde(with = "humantime_serde")]
    pub retired_grace: Duration,
    /// How long a clip that stopped being live is remembered (its code, why and when), so its
    /// link can say expired, consumed or deleted rather than unknown. 0 keeps no tombstones.
    #[serde(with = "humantime_serde")]
    pub tombstone_retention: Duration,
    pub reconcile_every: u32,
    #[serde(with = "humantime_serde")]
    pub orphan_grace: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StoreConfig {
    pub pool_size: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    pub sqlite_connections: usize,
    #[serde(with = "humantime_serde")]
    pub sqlite_busy_timeout: Duration,
    /// Longest a store call may take, waiting for a connection included; slower calls fail
    /// (503 database_unavailable) instead of holding the request.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The standard AWS variables, under the names of the `s3` section (a file and FERRY_S3__*
/// win).
fn aws_env() -> Figment {
    let mut f = Figment::new();
    for (var, key) in [
        ("AWS_ACCESS_KEY_ID", "s3.access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "s3.secret_access_key"),
        ("AWS_DEFAULT_REGION", "s3.region"),
        ("AWS_REGION", "s3.region"),
        ("AWS_ENDPOINT_URL", "s3.endpoint"),
        ("AWS_SESSION_TOKEN", "s3.session_token"),
    ] {
        if let Ok(value) = std::env::var(var)
            && !value.is_empty()
        {
            f = f.merge(figment::providers::Serialized::default(key, value));
        }
    }
    f
}

/// Why the configuration could not be used; `Display` is the one line printed at startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {}", flat(.0))]
    Parse(String),
    #[error("configuration: unknown key `{}` (see config/default.toml for the keys)", flat(.0))]
    UnknownKey(String),
    #[error("configuration: `{key}` {}", flat(.problem))]
    Invalid { key: &'static str, problem: String },
}

/// One line, whatever the text echoes (a value with a line break, a TOML error's snippet).
fn flat(text: &str) -> String {
    text.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Where configuration comes from besides the embedded defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// Read `FERRY_*` (and `DATABASE_URL`) from the process environment.
    pub env: bool,
}

impl Config {
    /// Defaults only: what tests start from before overriding fields.
    pub fn defaults() -> Config {
        Config::load(&Sources::default()).expect("embedded default.toml is valid")
    }

    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if sources.env {
            // The standard AWS variables fill in what the file does not say; FERRY_S3__* and
            // the file win over them.
            figment = figment.merge(aws_env());
        }
        if let Some(path) = &sources.file {
            if !path.is_file() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist or is not a file",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        if sources.env {
            // DATABASE_URL is the common convention; FERRY_DATABASE_URL wins over it.
            figment = figment.merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database_url".into()));
            figment = figment.merge(
                Env::prefixed("FERRY_")
                    // The test suite's own variables are not server settings.
                    .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
                    .split("__"),
            );
        }
        reject_unknown_keys(&figment)?;
        let config: Config = figment.extract().map_err(|e| ConfigError::Parse(one_line(&e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate_s3(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid { key, problem: problem.into() }
        }
        let s3 = &self.s3;
        let Some(endpoint) = s3.endpoint.as_deref().filter(|e| !e.is_empty()) else {
            return Err(invalid("s3.endpoint", "is required with blob = \"s3\" (e.g. http://127.0.0.1:8333)"));
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(invalid("s3.endpoint", "must start with http:// or https://"));
        }
        if endpoint.starts_with("http://") && !s3.allow_http {
            return Err(invalid("s3.endpoint", "is plain http://; set s3.allow_http = true to allow it"));
        }
        let bucket = s3.bucket.as_deref().unwrap_or("");
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(invalid("s3.bucket", "must be an S3 bucket name (3-63 of a-z, 0-9, '-', '.')"));
        }
        let prefix_ok = s3.prefix.is_empty()
            || (s3.prefix.ends_with('/')
                && s3.prefix.len() <= 100
                && crate::blob::BlobKey::parse(s3.prefix.trim_end_matches('/')).is_ok());
        if !prefix_ok {
            return Err(invalid("s3.prefix", "must be empty or path segments ending in '/', like \"ferry/\""));
        }
        if s3.access_key_id.is_none() != s3.secret_access_key.is_none() {
            return Err(invalid("s3.access_key_id", "and s3.secret_access_key must be set together"));
        }
        if s3.access_key_id.is_none() {
            return Err(invalid(
                "s3.access_key_id",
                "is required with blob = \"s3\" (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            ));
        }
        for (key, d) in [
            ("s3.connect_timeout", s3.connect_timeout),
            ("s3.read_timeout", s3.read_timeout),
            ("s3.request_timeout", s3.request_timeout),
            ("s3.startup_timeout", s3.startup_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        if !((5 << 20)..=(1 << 30)).contains(&s3.part_size.0) {
            return Err(invalid("s3.part_size", "must be between 5MiB (the S3 minimum) and 1GiB"));
        }
        if self.limits.max_upload_size.0.div_ceil(s3.part_size.0) > 10_000 {
            return Err(invalid("s3.part_size", "makes the largest upload more than S3's 10000 parts; raise it"));
        }
        let one_write = s3.part_size.0.max(self.limits.chunk_size.0 + 1024);
        if s3.write_buffer.0 < 2 * one_write + 2 * s3.part_size.0 {
            return Err(invalid("s3.write_buffer", "must hold at least two chunks and two parts"));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid { key, problem: problem.into() }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if let Some(url) = &self.database_url {
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid("database_url", "must start with postgres:// or postgresql://"));
            }
            tokio_postgres::Config::from_str(url)
                .map_err(|e| invalid("database_url", format!("is not a valid PostgreSQL URL ({e})")))?;
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return Err(invalid("public_url", "must be an absolute http:// or https:// URL"));
            }
        }
        if self.server.request_timeout.is_zero() {
            return Err(invalid("server.request_timeout", "must be greater than zero"));
        }
        if self.server.upload_timeout.is_zero() {
            return Err(invalid("server.upload_timeout", "must be greater than zero"));
        }
        if self.server.health_check_timeout.is_zero() {
            return Err(invalid("server.health_check_timeout", "must be greater than zero"));
        }
        for (key, d) in [
            ("server.header_read_timeout", self.server.header_read_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
            ("server.body_idle_timeout", self.server.body_idle_timeout),
            ("server.http2_keepalive_interval", self.server.http2_keepalive_interval),
            ("server.http2_keepalive_timeout", self.server.http2_keepalive_timeout),
            ("store.query_timeout", self.store.query_timeout),
            ("rate.redis_timeout", self.rate.redis_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        if !(1..=10_000).contains(&self.server.http2_max_concurrent_streams) {
            return Err(invalid("server.http2_max_concurrent_streams", "must be between 1 and 10000"));
        }
        if !((1 << 10)..=(1 << 20)).contains(&self.server.http2_max_header_list_size.0) {
            return Err(invalid("server.http2_max_header_list_size", "must be between 1KiB and 1MiB"));
        }
        if self.rate.backend == RateBackend::Redis && self.redis_url.is_none() {
            return Err(invalid("rate.backend", "is \"redis\" but no redis_url is set"));
        }
        if self.server.json_body_limit.0 < 1024 {
            return Err(invalid("server.json_body_limit", "must be at least 1KiB"));
        }
        if !(1024..=(1 << 30)).contains(&self.limits.chunk_size.0) {
            return Err(invalid("limits.chunk_size", "must be between 1KiB and 1GiB"));
        }
        if self.limits.max_upload_size.0 == 0 {
            return Err(invalid("limits.max_upload_size", "must be greater than zero"));
        }
        if self.limits.max_upload_size.0 / self.limits.chunk_size.0 > 1_000_000 {
            return Err(invalid("limits.max_upload_size", "needs more than a million chunks; raise limits.chunk_size"));
        }
        if self.limits.max_text_size.0 == 0 {
            return Err(invalid("limits.max_text_size", "must be greater than zero"));
        }
        crate::domain::types::Expiry::parse(&self.limits.max_expiry).map_err(|m| invalid("limits.max_expiry", m))?;
        if self.access.pbkdf2_salt.is_empty() || self.access.pbkdf2_salt.len() > 256 {
            return Err(invalid("access.pbkdf2_salt", "must be 1 to 256 characters"));
        }
        if let Some(url) = &self.redis_url {
            let ok = url.expose().starts_with("redis://") || url.expose().starts_with("rediss://");
            if !ok || redis::Client::open(url.expose()).is_err() {
                return Err(invalid("redis_url", "must be a redis:// URL"));
            }
        }
        if self.lookup_cache.max_bytes.bytes() < 64 * 1024 {
            return Err(invalid("lookup_cache.max_bytes", "must be at least 64KiB"));
        }
        if self.lookup_cache.max_entries == 0 || self.lookup_cache.redis_timeout.is_zero() {
            return Err(invalid(
                "lookup_cache.max_entries",
                "and lookup_cache.redis_timeout must be greater than zero",
            ));
        }
        if let Some(token) = &self.admin_token
            && token.expose().len() < 16
        {
            return Err(invalid("admin_token", "must be at least 16 characters"));
        }
        for net in &self.trusted_proxies.0 {
            parse_net(net).map_err(|m| invalid("trusted_proxies", m))?;
        }
        for (key, n) in [
            ("rate.initiate_per_minute", self.rate.initiate_per_minute),
            ("rate.reads_per_minute", self.rate.reads_per_minute),
            ("rate.downloads_per_minute", self.rate.downloads_per_minute),
            ("rate.admin_auth_per_minute", self.rate.admin_auth_per_minute),
            ("rate.quick_share_misses", self.rate.quick_share_misses),
        ] {
            if n == 0 {
                return Err(invalid(key, "must be at least 1 (turn limits off with rate_limits = \"off\")"));
            }
        }
        for origin in &self.cors_origins.0 {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && axum::http::HeaderValue::from_str(origin).is_ok();
            if !ok {
                return Err(invalid(
                    "cors_origins",
                    format!("`{origin}` is not an origin like https://app.example.org"),
                ));
            }
        }
        if self.blob == BlobBackend::S3 {
            self.validate_s3()?;
        }
        if !(1..=64).contains(&self.upload.assembly_concurrency) {
            return Err(invalid("upload.assembly_concurrency", "must be between 1 and 64"));
        }
        if !(1..=64).contains(&self.upload.access_code_concurrency) {
            return Err(invalid("upload.access_code_concurrency", "must be between 1 and 64"));
        }
        if self.sweep.interval.is_zero() {
            return Err(invalid("sweep.interval", "must be greater than zero"));
        }
        if !(1..=100_000).contains(&self.sweep.batch_size) {
            return Err(invalid("sweep.batch_size", "must be between 1 and 100000"));
        }
        if !(1..=1024).contains(&self.store.pool_size) {
            return Err(invalid("store.pool_size", "must be between 1 and 1024"));
        }
        if !(1..=64).contains(&self.store.sqlite_connections) {
            return Err(invalid("store.sqlite_connections", "must be between 1 and 64"));
        }
        if self.store.connect_timeout.is_zero() || self.store.acquire_timeout.is_zero() {
            return Err(invalid("store.connect_timeout", "and store.acquire_timeout must be greater than zero"));
        }
        self.validate_jobs()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("is not a valid filter ({e})")))?;
        Ok(())
    }

    fn validate_jobs(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid { key, problem: problem.into() }
        }
        let j = &self.jobs;
        if j.concurrency > 256 {
            return Err(invalid("jobs.concurrency", "must be between 0 and 256"));
        }
        if !(1..=100).contains(&j.attempts) {
            return Err(invalid("jobs.attempts", "must be between 1 and 100"));
        }
        if j.backoff_base.is_zero() || j.backoff_max < j.backoff_base {
            return Err(invalid("jobs.backoff_base", "must be greater than zero and at most jobs.backoff_max"));
        }
        if j.lease < Duration::from_secs(1) {
            return Err(invalid("jobs.lease", "must be at least 1s"));
        }
        for (key, d) in [
            ("jobs.poll_interval", j.poll_interval),
            ("jobs.keep_done", j.keep_done),
            ("jobs.keep_failed", j.keep_failed),
            ("jobs.accounting_interval", j.accounting_interval),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        if !(1..=64).contains(&j.thumbnail_concurrency) || !(1..=64).contains(&j.webhook_concurrency) {
            return Err(invalid("jobs.thumbnail_concurrency", "and jobs.webhook_concurrency must be between 1 and 64"));
        }
        let t = &self.thumbnails;
        if !(16..=1024).contains(&t.size) {
            return Err(invalid("thumbnails.size", "must be between 16 and 1024"));
        }
        if t.max_dimension < t.size || t.max_alloc.0 < (1 << 20) || t.max_source_size.0 == 0 {
            return Err(invalid(
                "thumbnails.max_dimension",
                "must be at least thumbnails.size, with max_alloc at least 1MiB and max_source_size above 0",
            ));
        }
        let w = &self.webhook;
        if let Some(url) = &w.url {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && reqwest::Url::parse(url).is_ok_and(|u| u.host_str().is_some());
            if !ok {
                return Err(invalid("webhook.url", "must be an absolute http:// or https:// URL"));
            }
        }
        if w.secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
            return Err(invalid("webhook.secret", "must not be empty when set"));
        }
        if w.timeout.is_zero() || !(1..=100).contains(&w.attempts) {
            return Err(invalid("webhook.timeout", "must be greater than zero, and webhook.attempts 1 to 100"));
        }
        if self.limits.max_total_storage.is_some_and(|m| m.0 == 0) {
            return Err(invalid("limits.max_total_storage", "must be greater than zero when set"));
        }
        Ok(())
    }

    /// Public URL without a trailing slash, if configured.
    pub fn public_base(&self) -> Option<&str> {
        self.public_url.as_deref().map(|u| u.trim_end_matches('/'))
    }
}

/// A typo in a file or variable name must not be silently ignored: every key given has to be
/// one the typed struct knows.
fn reject_unknown_keys(figment: &Figment) -> Result<(), ConfigError> {
    let known = serde_json::to_value(Config::defaults_unchecked()).expect("config serialises");
    let given: figment::value::Dict = figment.extract().map_err(|e| ConfigError::Parse(one_line(&e)))?;
    fn walk(prefix: &str, given: &figment::value::Dict, known: &serde_json::Value) -> Result<(), ConfigError> {
        for (key, value) in given {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            let known_child = known.get(key);
            // Optional top-level keys are absent from the serialised defaults.
            let optional = prefix.is_empty()
                && matches!(key.as_str(), "database_url" | "public_url" | "admin_token" | "redis_url");
            match (known_child, value) {
                (None, _) if optional => {}
                (None, _) => return Err(ConfigError::UnknownKey(path)),
                (Some(child @ serde_json::Value::Object(_)), figment::value::Value::Dict(_, dict)) => {
                    walk(&path, dict, child)?
                }
                _ => {}
            }
        }
        Ok(())
    }
    walk("", &given, &known)
}

impl Config {
    fn defaults_unchecked() -> Config {
        Figment::from(Toml::string(DEFAULT_TOML)).extract().expect("embedded default.toml parses")
    }
}

fn one_line(e: &figment::Error) -> String {
    // figment's Display spans several lines for nested errors; startup prints exactly one.
    let mut parts = Vec::new();
    for err in e.clone() {
        let key = err.path.join(".");
        let source = err
            .metadata
            .as_ref()
            .map(|m| match &m.source {
                Some(src) => format!(" (from {} {src})", m.name),
                None => format!(" (from {})", m.name),
            })
            .unwrap_or_default();
        if key.is_empty() {
            parts.push(format!("{}{source}", err.kind));
        } else {
            parts.push(format!("`{key}`: {}{source}", err.kind));
        }
    }
    parts.join("; ")
}

/// A list given as an array or as one comma-separated string (as environment variables are).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CommaList(pub Vec<String>);

impl<'de> Deserialize<'de> for CommaList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            One(String),
        }
        let items = match Raw::deserialize(d)? {
            Raw::List(v) => v,
            Raw::One(s) => s.split(',').map(str::to_owned).collect(),
        };
        Ok(CommaList(items.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()))
    }
}

/// A string that must never reach a log: `Debug` and `Display` print a placeholder.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A byte count read from either an integer or a string with a unit ("5MiB", "512 KiB", "1GB").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a size like 5MiB"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            other => return Err(format!("unknown size unit `{other}`")),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_and_without_units() {
        assert_eq!("5MiB".parse::<ByteSize>().unwrap(), ByteSize(5 * 1024 * 1024));
        assert_eq!("512 KiB".parse::<ByteSize>().unwrap(), ByteSize(512 * 1024));
        assert_eq!("1GB".parse::<ByteSize>().unwrap(), ByteSize(1_000_000_000));
        assert_eq!("42".parse::<ByteSize>().unwrap(), ByteSize(42));
        assert!("5 parsecs".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn defaults_load_and_validate() {
        let c = Config::defaults();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.database_url.is_none());
        assert_eq!(c.server.json_body_limit, ByteSize(1 << 20));
    }

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "bind = \"127.0.0.1:9999\"\n[server]\nshutdown_grace = \"3s\"\n").unwrap();
        let c = Config::load(&Sources { file: Some(good), env: false }).unwrap();
        assert_eq!(c.bind.port(), 9999);
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(3));

        let typo = dir.path().join("typo.toml");
        std::fs::write(&typo, "[server]\nshutdown_grase = \"3s\"\n").unwrap();
        let err = Config::load(&Sources { file: Some(typo), env: false }).unwrap_err().to_string();
        assert!(err.contains("server.shutdown_grase"), "{err}");
    }

    #[test]
    fn s3_settings_are_checked_when_the_s3_backend_is_chosen() {
        let good = || {
            let mut c = Config::defaults();
            c.blob = BlobBackend::S3;
            c.s3.endpoint = Some("https://s3.example.org".into());
            c.s3.bucket = Some("ferry-clips".into());
            c.s3.access_key_id = Some(Secret::new("AKIDEXAMPLE"));
            c.s3.secret_access_key = Some(Secret::new("wJalrXUtnFEMI/K7MDENG"));
            c
        };
        good().validate().expect("a complete S3 section validates");
        let key_of = |mutate: &dyn Fn(&mut Config)| {
            let mut c = good();
            mutate(&mut c);
            match c.validate() {
                Err(ConfigError::Invalid { key, .. }) => key,
                other => panic!("expected an invalid key, got {other:?}"),
            }
        };
        assert_eq!(key_of(&|c| c.s3.endpoint = None), "s3.endpoint");
        assert_eq!(key_of(&|c| c.s3.endpoint = Some("http://127.0.0.1:8333".into())), "s3.endpoint");
        assert_eq!(key_of(&|c| c.s3.bucket = Some("No_Such".into())), "s3.bucket");
        assert_eq!(key_of(&|c| c.s3.prefix = "ferry".into()), "s3.prefix");
        assert_eq!(key_of(&|c| c.s3.prefix = "../x/".into()), "s3.prefix");
        assert_eq!(key_of(&|c| c.s3.secret_access_key = None), "s3.access_key_id");
        assert_eq!(key_of(&|c| c.s3.part_size = ByteSize(1 << 20)), "s3.part_size");
        assert_eq!(key_of(&|c| c.s3.write_buffer = ByteSize(1 << 20)), "s3.write_buffer");
        let mut http = good();
        http.s3.endpoint = Some("http://127.0.0.1:8333".into());
        http.s3.allow_http = true;
        http.s3.prefix = "ferry/clips/".into();
        http.validate().expect("plain http when allowed, a nested prefix");
        // The filesystem backend ignores an incomplete S3 section.
        let mut fs = good();
        fs.blob = BlobBackend::Fs;
        fs.s3.endpoint = None;
        fs.validate().unwrap();
        let shown = format!("{:?}", good());
        assert!(!shown.contains("wJalrXUtnFEMI"), "the secret never prints");
    }

    #[test]
    fn invalid_values_name_their_key_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[store]\npool_size = \"lots\"\n").unwrap();
        let err = Config::load(&Sources { file: Some(bad), env: false }).unwrap_err().to_string();
        assert!(err.contains("store.pool_size"), "{err}");
        assert!(!err.contains('\n'), "{err}");

        let zero = dir.path().join("zero.toml");
        std::fs::write(&zero, "[store]\npool_size = 0\n").unwrap();
        let err = Config::load(&Sources { file: Some(zero), env: false }).unwrap_err().to_string();
        assert!(err.contains("store.pool_size"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let mut c = Config::defaults();
        c.database_url = Some(Secret::new("postgres://u:hunter2@h/db"));
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
