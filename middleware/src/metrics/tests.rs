use std::time::Duration;

use chrysalis_services::ChatResponse;
use futures_util::StreamExt;
use prometheus_client::registry::Registry;
use tower::{Layer, ServiceBuilder, ServiceExt};

use super::{Metrics, ProviderMetricsLayer, RequestMetricsLayer};
use crate::test_support::*;

fn sample(registry: &Registry, series: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let line = text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
    line.unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn overhead_leaves_out_the_time_spent_waiting_on_the_upstream() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, []);
    let slow = Act::After(Duration::from_secs(3), Box::new(Act::Answer));
    let service = ServiceBuilder::new()
        .layer(RequestMetricsLayer::new(&metrics))
        .layer(ProviderMetricsLayer::new(&metrics, "p"))
        .service(Scripted::always("p", slow));
    service.oneshot(request()).await.unwrap();
    assert_eq!(sample(&registry, "gateway_overhead_seconds_count"), 1.0);
    assert!(sample(&registry, "gateway_overhead_seconds_sum") < 0.001);
    let duration = r#"gen_ai_client_operation_duration_seconds_sum{gen_ai_operation_name="chat",gen_ai_provider_name="p",gen_ai_request_model="m",gen_ai_response_model="m",error_type=""}"#;
    assert_eq!(sample(&registry, duration), 3.0);
}

#[tokio::test(start_paused = true)]
async fn a_broken_stream_counts_as_an_error_with_its_type() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, []);
    let layer = ProviderMetricsLayer::new(&metrics, "p");
    let stats = layer.stats();
    let cut = Err(chrysalis_services::ProviderError::cut("p", "eof"));
    let service = RequestMetricsLayer::new(&metrics)
        .layer(layer.layer(Scripted::always("p", Act::Stream(vec![delta("a"), cut]))));
    let ChatResponse::Stream(stream) = service.oneshot(request()).await.unwrap() else {
        panic!()
    };
    assert_eq!(sample(&registry, "gateway_open_streams"), 1.0);
    let _: Vec<_> = stream.collect().await;
    assert_eq!(sample(&registry, "gateway_open_streams"), 0.0);
    let failed = r#"gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="p",gen_ai_request_model="gpt-4o",gen_ai_response_model="gpt-4o",error_type="cut"}"#;
    assert_eq!(sample(&registry, failed), 1.0);
    assert_eq!(
        sample(
            &registry,
            r#"gateway_requests_total{provider="p",model="gpt-4o",outcome="error"}"#
        ),
        1.0
    );
    assert_eq!((stats.snapshot().calls, stats.snapshot().failures), (1, 1));
}

#[tokio::test]
async fn every_call_adds_its_tokens_by_type_and_its_cost() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, []);
    let service = ProviderMetricsLayer::new(&metrics, "p").layer(Scripted::always("p", Act::Answer));
    for _ in 0..3 {
        service.clone().oneshot(request()).await.unwrap();
    }
    let tokens = |kind: &str, part: &str| {
        let series = format!(
            r#"gen_ai_client_token_usage_{part}{{gen_ai_operation_name="chat",gen_ai_provider_name="p",gen_ai_request_model="m",gen_ai_response_model="m",gen_ai_token_type="{kind}"}}"#
        );
        sample(&registry, &series)
    };
    assert_eq!(tokens("input", "count"), 3.0);
    assert_eq!(tokens("input", "sum"), 3.0 * USAGE.prompt_tokens as f64);
    assert_eq!(tokens("output", "sum"), 3.0 * USAGE.completion_tokens as f64);
    let cost = sample(&registry, r#"gateway_cost_usd_total{provider="p",model="m"}"#);
    assert!((cost - 3.0 * COST).abs() < 1e-12, "{cost}");
}

#[tokio::test]
async fn long_or_secret_model_names_never_become_labels() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, []);
    let service = ProviderMetricsLayer::new(&metrics, "p").layer(Scripted::always("p", Act::Answer));
    let huge = "m".repeat(1 << 20);
    for model in [huge.as_str(), "sk-proj-0123456789abcdefghijklmnop", "two\nlines"] {
        let mut asked = request();
        asked.model = Some(model.into());
        let _ = service.clone().oneshot(asked).await;
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.len() < 64 * 1024, "a scrape of {} bytes", text.len());
    assert!(!text.contains("sk-proj") && !text.contains("two\nlines"), "{text}");
    let other = r#"gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="p",gen_ai_request_model="other",gen_ai_response_model="m",error_type=""}"#;
    assert_eq!(sample(&registry, other), 3.0);
}

#[tokio::test]
async fn requests_the_upstream_refused_as_malformed_are_not_provider_failures() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, []);
    let layer = ProviderMetricsLayer::new(&metrics, "p");
    let service = layer.layer(Scripted::new(
        "p",
        |n| if n < 2 { Act::Fail(400) } else { Act::Fail(500) },
    ));
    for _ in 0..3 {
        assert!(service.clone().oneshot(request()).await.is_err());
    }
    let stats = layer.stats().snapshot();
    assert_eq!((stats.calls, stats.failures), (3, 1), "only the 500 is the provider's");
}

#[tokio::test]
async fn a_stream_is_in_flight_until_it_ends() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, []);
    let service = RequestMetricsLayer::new(&metrics).layer(Scripted::always("p", Act::StallAfter(1)));
    let ChatResponse::Stream(mut stream) = service.oneshot(request()).await.unwrap() else {
        panic!("a stream");
    };
    assert!(stream.next().await.unwrap().is_ok());
    assert_eq!(
        sample(&registry, "gateway_requests_in_flight"),
        1.0,
        "an open stream is in flight"
    );
    drop(stream);
    assert_eq!(sample(&registry, "gateway_requests_in_flight"), 0.0);
}

#[tokio::test]
async fn the_cost_metric_counts_what_the_budget_charged_broken_and_dropped_streams() {
    use std::sync::Arc;

    use chrysalis_services::pricing::PriceTable;

    use crate::budget::{BudgetConfig, BudgetLayer, MemoryLedger};

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, []);
    let cut = Err(chrysalis_services::ProviderError::cut("p", "eof"));
    let provider = Scripted::new("p", move |n| match n {
        0 => Act::Stream(vec![delta("hello"), end()]),
        1 => Act::Stream(vec![delta("x".repeat(4000).as_str()), cut.clone()]),
        _ => Act::Stream(vec![delta("y".repeat(4000).as_str()), delta("more"), end()]),
    });
    let config = BudgetConfig::new(50.0, 500.0, Arc::new(PriceTable::builtin())).unwrap();
    let budget = BudgetLayer::new(config, Arc::new(MemoryLedger::default())).unwrap();
    let spent = budget.handle();
    let service = ServiceBuilder::new()
        .layer(RequestMetricsLayer::new(&metrics))
        .layer(budget)
        .layer(ProviderMetricsLayer::new(&metrics, "p"))
        .service(provider);
    let mut asked = request();
    asked.model = Some("gpt-4o".into());
    let open = || async {
        match service.clone().oneshot(asked.clone()).await.unwrap() {
            ChatResponse::Stream(stream) => stream,
            ChatResponse::Complete(_) => panic!("a stream was asked for"),
        }
    };
    let _: Vec<_> = open().await.collect().await;
    let _: Vec<_> = open().await.collect().await;
    let mut dropped = open().await;
    dropped.next().await;
    drop(dropped);

    let ledger = spent.report().unwrap().day.spent_usd;
    assert!(ledger > COST + 0.019, "both cut streams were charged: {ledger}");
    let metric = sample(&registry, r#"gateway_cost_usd_total{provider="p",model="gpt-4o"}"#);
    assert!((metric - ledger).abs() < 1e-9, "metric {metric}, ledger {ledger}");
}
