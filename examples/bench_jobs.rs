//! The job queue benchmark's tool (scripts/bench-jobs.sh drives it). The store comes from the
//! same `FERRY_*` environment as the server's (`FERRY_DATA_DIR` or `FERRY_DATABASE_URL`).
//!
//!     bench_jobs enqueue <n>              n no-op jobs, due in a day (so none runs yet)
//!     bench_jobs release                  make every queued no-op job due now
//!     bench_jobs span                     {"done","firstStart","lastFinish"} of no-op jobs
//!     bench_jobs probe <url> <rate> <s>   GET url at a fixed rate (an open model: requests
//!                                         leave on schedule whatever the answers do) for s
//!                                         seconds; {"sent","errors","p50Ms","p99Ms","maxMs"}
//!
//! Traffic goes only where it is told (the script gives 127.0.0.1).

use std::time::{Duration, Instant};

use ferry::config::{Config, Sources};
use ferry::domain::clock::system_now_ms;
use ferry::store::{NewJob, Store};

async fn store() -> Store {
    let config = Config::load(&Sources { file: None, env: true }).expect("configuration");
    let store = Store::open(&config).await.expect("store opens");
    store.migrate().await.expect("migrated");
    store
}

async fn enqueue(n: usize) {
    let store = store().await;
    let at = system_now_ms() + 86_400_000;
    let job = NewJob { kind: "noop".into(), payload: "{}".into(), max_attempts: 3, run_at: at, dedupe_key: None };
    let started = Instant::now();
    let batch = vec![job; 1000];
    let mut left = n;
    while left > 0 {
        let take = left.min(batch.len());
        store.enqueue(&batch[..take], at).await.expect("enqueue");
        left -= take;
    }
    eprintln!("enqueued {n} jobs in {:.1} s", started.elapsed().as_secs_f64());
}

async fn probe(url: String, rate: u64, seconds: u64) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<f64>>();
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let total = rate * seconds;
    for i in 0..total {
        tokio::time::sleep_until(start + every * i as u32).await;
        let (http, url, tx) = (http.clone(), url.clone(), tx.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let ok = match http.get(&url).send().await {
                Ok(res) => res.status().is_success() && res.bytes().await.is_ok(),
                Err(_) => false,
            };
            let _ = tx.send(ok.then(|| sent.elapsed().as_secs_f64() * 1000.0));
        });
    }
    drop(tx);
    let mut took = Vec::new();
    let mut errors = 0;
    while let Some(r) = rx.recv().await {
        match r {
            Some(ms) => took.push(ms),
            None => errors += 1,
        }
    }
    took.sort_by(f64::total_cmp);
    let q =
        |p: f64| took.get(((took.len() as f64 * p) as usize).min(took.len().saturating_sub(1))).copied().unwrap_or(0.0);
    println!(
        "{{\"sent\":{total},\"errors\":{errors},\"p50Ms\":{:.3},\"p99Ms\":{:.3},\"maxMs\":{:.3}}}",
        q(0.5),
        q(0.99),
        took.last().copied().unwrap_or(0.0)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| panic!("missing argument {i}; see the file's header"));
    match args.first().map(String::as_str) {
        Some("enqueue") => enqueue(arg(1).parse().expect("a count")).await,
        Some("release") => {
            let n = store().await.make_jobs_due("noop", system_now_ms()).await.expect("release");
            eprintln!("released {n} jobs");
        }
        Some("span") => {
            let (n, first, last) = store().await.job_span("noop").await.expect("span");
            let show = |v: Option<i64>| v.map_or("null".to_string(), |v| v.to_string());
            println!("{{\"done\":{n},\"firstStart\":{},\"lastFinish\":{}}}", show(first), show(last));
        }
        Some("probe") => probe(arg(1), arg(2).parse().expect("a rate"), arg(3).parse().expect("seconds")).await,
        _ => {
            eprintln!("usage: bench_jobs enqueue <n> | release | span | probe <url> <rate> <seconds>");
            std::process::exit(2);
        }
    }
}
