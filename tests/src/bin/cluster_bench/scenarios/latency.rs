//! Latency: `start` of `--latency-samples` fresh apps, one at a time, each through the next
//! node in turn; from the 202 to the noop executor's `start` on the owner.

use std::time::Duration;

use cluster_tests::eventually;
use serde_json::{Value, json};

use crate::measure::{Stats, now_us};
use crate::report::Figures;
use crate::setup::Bench;

/// How long one app may take from its submission to RUNNING.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(bench: &mut Bench, figures: &mut Figures) {
    let samples = bench.args.latency_samples;
    eprintln!("latency: {samples} sequential starts");
    let ids = bench.apps(samples).await;
    let apis = bench.apis();
    let mut from_202 = Vec::with_capacity(samples);
    let mut from_send = Vec::with_capacity(samples);
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        let (node, api) = &apis[index % apis.len()];
        let sent_us = now_us();
        if let Err(error) = api.submit(id, "start").await {
            panic!("latency: start of app {id} via {node}: {error}");
        }
        let answered_us = now_us();
        let (started_us, executed_by) = eventually(
            &format!("app {id} is RUNNING with a noop handle"),
            SAMPLE_TIMEOUT,
            || {
                let api = api.clone();
                async move {
                    let app = api.app(id).await?;
                    let started = app
                        .handle
                        .as_ref()
                        .and_then(|handle| handle.get("started_at_us"))
                        .and_then(Value::as_i64);
                    match (app.state.as_str(), started) {
                        ("RUNNING", Some(started)) => {
                            Ok((started, app.adopted_by.unwrap_or_default()))
                        }
                        _ => Err(format!("state {} handle {:?}", app.state, app.handle)),
                    }
                }
            },
        )
        .await;
        let latency = (started_us - answered_us) as f64 / 1000.0;
        from_202.push(latency);
        from_send.push((started_us - sent_us) as f64 / 1000.0);
        if executed_by == *node {
            local.push(latency);
        } else {
            remote.push(latency);
        }
    }
    let stats = Stats::of(&from_202);
    let negative = from_202.iter().filter(|value| **value < 0.0).count();
    figures.insert("latency_p50_ms", stats.p50);
    figures.insert("latency_p99_ms", stats.p99);
    figures.insert("latency_mean_ms", stats.mean);
    figures.insert("latency_max_ms", stats.max);
    let send = Stats::of(&from_send);
    bench.emit(
        "latency",
        json!({
            "samples": samples,
            "p50_ms": stats.p50,
            "p99_ms": stats.p99,
            "mean_ms": stats.mean,
            "max_ms": stats.max,
            "min_ms": stats.min,
            "negative_samples": negative,
            "owner_was_receiver": {"samples": local.len(), "p50_ms": Stats::of(&local).p50},
            "owner_was_other": {"samples": remote.len(), "p50_ms": Stats::of(&remote).p50},
            "from_send_p50_ms": send.p50,
            "from_send_p99_ms": send.p99,
            "measured": "client receives HTTP 202 -> NoopExecutor::start called on the owner \
                (started_at_us in the app's handle, same host clock); fresh CREATED apps, \
                submitted one at a time to nodes in turn",
        }),
    );
    // Throughput starts from stopped apps.
    bench.ensure_state(&ids, "stop").await;
}
