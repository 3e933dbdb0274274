use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrysalis_services::pricing::PriceTable;
use chrysalis_services::{ChatRequest, ChatResponse};
use futures_util::future::join_all;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tower::{Layer, ServiceExt};

use super::error::{BudgetExceeded, LedgerError, UnpricedModel, Window};
use super::ledger::{Breakdown, Commit, MemoryLedger, SpendLedger, SpendRow};
use super::state::{nanos, WallClock};
use super::{BudgetConfig, BudgetLayer, Route};
use crate::test_support::*;
use chrysalis_services::pricing::Unpriced;

/// 2026-11-30T23:00:00Z.
const NOV_30_23H: i64 = 1_796_079_600_000;
const HOUR: i64 = 3_600_000;

struct ManualClock(AtomicI64);

impl WallClock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn priced_request() -> ChatRequest {
    let mut request = request();
    request.model = Some("gpt-4o".into());
    request.max_tokens = Some(1000);
    request
}

fn layer_with(daily: f64, monthly: f64, ledger: Arc<dyn SpendLedger>, now: i64) -> (BudgetLayer, Arc<ManualClock>) {
    let config = BudgetConfig::new(daily, monthly, Arc::new(PriceTable::builtin())).unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(now)));
    (BudgetLayer::with_clock(config, ledger, clock.clone()).unwrap(), clock)
}

fn estimate(layer: &BudgetLayer) -> f64 {
    super::state::usd(layer.state.estimate(&priced_request()).unwrap())
}

#[tokio::test]
async fn a_complete_call_settles_its_real_cost_and_releases_the_rest() {
    let ledger = Arc::new(MemoryLedger::default());
    let (layer, _) = layer_with(50.0, 500.0, ledger.clone(), NOV_30_23H);
    let service = layer.layer(Scripted::always("p", Act::Answer));
    service.oneshot(priced_request()).await.unwrap();
    let report = layer.handle().report().unwrap();
    assert_eq!((report.day.spent_usd, report.day.reserved_usd), (COST, 0.0));
    assert_eq!(report.day.remaining_usd, 50.0 - COST);
    assert_eq!(report.day.by_agent["agent"], COST);
    assert_eq!(ledger.spent_since(0).unwrap(), nanos(COST));
}

#[tokio::test]
async fn a_call_that_could_pass_a_limit_is_refused_naming_the_window() {
    let (probe, _) = layer_with(1.0, 1.0, Arc::new(MemoryLedger::default()), NOV_30_23H);
    let cost = estimate(&probe);
    for (daily, monthly, window) in [(cost / 2.0, 10.0, Window::Daily), (10.0, cost / 2.0, Window::Monthly)] {
        let provider = Scripted::always("p", Act::Answer);
        let (layer, _) = layer_with(daily, monthly, Arc::new(MemoryLedger::default()), NOV_30_23H);
        let error = layer
            .layer(provider.clone())
            .oneshot(priced_request())
            .await
            .unwrap_err();
        let exceeded = error.downcast_ref::<BudgetExceeded>().unwrap();
        assert_eq!(exceeded.window, window);
        assert!(error.to_string().contains(&format!("{window} budget")), "{error}");
        assert_eq!(provider.calls(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn two_hundred_racing_calls_never_pass_a_budget_worth_fifty() {
    let (probe, _) = layer_with(1.0, 1.0, Arc::new(MemoryLedger::default()), NOV_30_23H);
    let budget = estimate(&probe) * 50.0;
    let slow = Act::After(Duration::from_secs(10), Box::new(Act::Answer));
    let provider = Scripted::always("p", slow);
    let (layer, _) = layer_with(budget, budget, Arc::new(MemoryLedger::default()), NOV_30_23H);
    let service = layer.layer(provider.clone());
    let calls = (0..200).map(|_| service.clone().oneshot(priced_request()));
    let results = join_all(calls).await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(admitted, 50);
    assert_eq!(provider.calls(), 50);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.is::<BudgetExceeded>()));
    let report = layer.handle().report().unwrap();
    assert_eq!(report.day.reserved_usd, 0.0, "every reservation settled");
    assert!((report.day.spent_usd - 50.0 * COST).abs() < 1e-12);
}

#[tokio::test]
async fn streams_settle_when_they_end_break_or_are_dropped() {
    let cut = Err(chrysalis_services::ProviderError::cut("p", "eof"));
    let provider = Scripted::new("p", move |n| match n {
        0 => Act::Stream(vec![delta("hello"), end()]),
        1 => Act::Stream(vec![delta("x".repeat(4000).as_str()), cut.clone()]),
        _ => Act::Stream(vec![delta("y".repeat(4000).as_str()), delta("more"), end()]),
    });
    let (layer, _) = layer_with(50.0, 500.0, Arc::new(MemoryLedger::default()), NOV_30_23H);
    let service = layer.layer(provider);
    let spent = || layer.handle().report().unwrap().day;

    let ChatResponse::Stream(whole) = service.clone().oneshot(priced_request()).await.unwrap() else {
        panic!()
    };
    assert!(spent().reserved_usd > 0.0, "held while the stream runs");
    let _: Vec<_> = whole.collect().await;
    assert_eq!((spent().spent_usd, spent().reserved_usd), (COST, 0.0));

    // 4000 characters of gpt-4o output (about 1000 tokens at $10/M) before the break.
    let ChatResponse::Stream(broken) = service.clone().oneshot(priced_request()).await.unwrap() else {
        panic!()
    };
    let _: Vec<_> = broken.collect().await;
    let after_break = spent().spent_usd;
    assert!((after_break - COST - 0.01).abs() < 0.0001, "{after_break}");

    let ChatResponse::Stream(mut dropped) = service.clone().oneshot(priced_request()).await.unwrap() else {
        panic!()
    };
    dropped.next().await;
    drop(dropped);
    let after_drop = spent();
    assert!(
        after_drop.spent_usd > after_break + 0.009,
        "the client left, the tokens still count"
    );
    assert_eq!(after_drop.reserved_usd, 0.0);
}

#[tokio::test]
async fn a_failed_call_releases_its_reservation_and_costs_nothing() {
    let (layer, _) = layer_with(50.0, 500.0, Arc::new(MemoryLedger::default()), NOV_30_23H);
    let service = layer.layer(Scripted::always("p", Act::Fail(503)));
    assert!(service.oneshot(priced_request()).await.is_err());
    let day = layer.handle().report().unwrap().day;
    assert_eq!((day.spent_usd, day.reserved_usd), (0.0, 0.0));
}

#[tokio::test]
async fn windows_roll_over_at_utc_midnight_and_month_start() {
    let ledger = Arc::new(MemoryLedger::default());
    let (layer, clock) = layer_with(50.0, 500.0, ledger.clone(), NOV_30_23H);
    let service = layer.layer(Scripted::always("p", Act::Answer));
    service.clone().oneshot(priced_request()).await.unwrap();
    let report = layer.handle().report().unwrap();
    assert_eq!((report.day.spent_usd, report.month.spent_usd), (COST, COST));
    assert_eq!(report.day.start, "2026-11-30T00:00:00Z");

    clock.0.store(NOV_30_23H + 2 * HOUR, Ordering::SeqCst); // 2026-12-01T01:00Z
    let report = layer.handle().report().unwrap();
    assert_eq!((report.day.spent_usd, report.month.spent_usd), (0.0, 0.0));
    assert_eq!(report.month.start, "2026-12-01T00:00:00Z");
    assert!(report.month.by_model.is_empty());

    // A restart mid-month starts from what the ledger holds for this window.
    service.oneshot(priced_request()).await.unwrap();
    clock.0.store(NOV_30_23H + 30 * HOUR, Ordering::SeqCst); // 2026-12-02T05:00Z
    let (restarted, _) = layer_with(50.0, 500.0, ledger, NOV_30_23H + 30 * HOUR);
    let report = restarted.handle().report().unwrap();
    assert_eq!((report.day.spent_usd, report.month.spent_usd), (0.0, COST));
}

#[tokio::test]
async fn a_clock_that_jumps_ahead_and_is_set_back_keeps_the_days_spend() {
    let (layer, clock) = layer_with(50.0, 500.0, Arc::new(MemoryLedger::default()), NOV_30_23H);
    let service = layer.layer(Scripted::always("p", Act::Answer));
    service.clone().oneshot(priced_request()).await.unwrap();
    clock.0.store(NOV_30_23H + 400 * 24 * HOUR, Ordering::SeqCst); // a wrong clock, a year ahead
    service.clone().oneshot(priced_request()).await.unwrap();
    assert_eq!(layer.handle().report().unwrap().day.spent_usd, COST);

    clock.0.store(NOV_30_23H + HOUR / 2, Ordering::SeqCst); // set right again
    let report = layer.handle().report().unwrap();
    assert_eq!(report.day.start, "2026-11-30T00:00:00Z");
    assert_eq!(
        (report.day.spent_usd, report.month.spent_usd),
        (2.0 * COST, 2.0 * COST),
        "the day's spend is kept, and what was spent meanwhile was spent today"
    );
}

/// A ledger whose rows become durable only when the test says so.
#[derive(Default)]
struct GatedLedger {
    gates: Mutex<Vec<oneshot::Sender<Result<(), LedgerError>>>>,
}

impl SpendLedger for GatedLedger {
    fn append(&self, _: SpendRow) -> Commit {
        let (sender, receiver) = oneshot::channel();
        self.gates.lock().unwrap().push(sender);
        Commit::waiting(receiver)
    }

    fn spent_since(&self, _: i64) -> Result<i64, LedgerError> {
        Ok(0)
    }

    fn breakdown_since(&self, _: i64) -> Result<Breakdown, LedgerError> {
        Ok(Breakdown::default())
    }
}

#[tokio::test(start_paused = true)]
async fn the_answer_waits_until_its_spend_is_durable() {
    let ledger = Arc::new(GatedLedger::default());
    let (layer, _) = layer_with(50.0, 500.0, ledger.clone(), NOV_30_23H);
    let provider = Scripted::new("p", |n| match n {
        0 => Act::Answer,
        _ => Act::Stream(vec![delta("hi"), end()]),
    });
    let service = layer.layer(provider);

    let mut complete = Box::pin(service.clone().oneshot(priced_request()));
    let pending = tokio::time::timeout(Duration::from_secs(1), &mut complete).await;
    assert!(pending.is_err(), "not answered before the ledger commits");
    ledger.gates.lock().unwrap().remove(0).send(Ok(())).unwrap();
    assert!(complete.await.is_ok());

    let ChatResponse::Stream(mut stream) = service.oneshot(priced_request()).await.unwrap() else {
        panic!()
    };
    assert_eq!(stream.next().await, Some(delta("hi")));
    let held = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
    assert!(held.is_err(), "the last frame waits for the ledger");
    ledger.gates.lock().unwrap().remove(0).send(Ok(())).unwrap();
    assert_eq!(stream.next().await, Some(end()));
}

#[tokio::test]
async fn a_call_without_max_tokens_goes_out_with_the_cap_it_was_reserved_for() {
    let (layer, _) = layer_with(50.0, 500.0, Arc::new(MemoryLedger::default()), NOV_30_23H);
    let provider = Scripted::always("p", Act::Answer);
    let mut request = priced_request();
    request.max_tokens = None;
    layer.layer(provider.clone()).oneshot(request).await.unwrap();
    let mut capped = priced_request();
    capped.max_tokens = Some(77);
    layer.layer(provider.clone()).oneshot(capped).await.unwrap();
    let sent: Vec<_> = provider.requests().iter().map(|r| r.max_tokens).collect();
    assert_eq!(sent, [Some(4096), Some(77)]);
}

#[test]
fn the_prompt_is_reserved_at_a_token_a_byte_up_to_the_context_window() {
    let (layer, _) = layer_with(50.0, 500.0, Arc::new(MemoryLedger::default()), NOV_30_23H);
    let mut request = priced_request();
    request.max_tokens = Some(0);
    // Rare characters take more than one token each: three bytes, up to three tokens.
    let text = "\u{2f00}".repeat(1000);
    request.messages = vec![chrysalis_services::Message::new(chrysalis_services::Role::User, text)].into();
    let estimate = super::state::usd(layer.state.estimate(&request).unwrap());
    let gpt_4o_input = 2.50 / 1e6;
    assert!((estimate - (3000.0 + 16.0) * gpt_4o_input).abs() < 1e-9, "{estimate}");
    // No prompt is longer than the model's window (the upstream refuses it).
    let huge = "x".repeat(1_000_000);
    request.messages = vec![chrysalis_services::Message::new(chrysalis_services::Role::User, huge)].into();
    let estimate = super::state::usd(layer.state.estimate(&request).unwrap());
    assert!((estimate - 128_000.0 * gpt_4o_input).abs() < 1e-9, "{estimate}");
}

fn unpriced_layer(policy: Unpriced, routes: Vec<Route>) -> BudgetLayer {
    let mut prices = PriceTable::builtin();
    prices.set_unpriced(policy);
    let mut config = BudgetConfig::new(1.0, 10.0, Arc::new(prices)).unwrap();
    config.routes = routes;
    BudgetLayer::new(config, Arc::new(MemoryLedger::default())).unwrap()
}

fn asking_for(model: &str) -> ChatRequest {
    let mut request = request();
    request.model = Some(model.into());
    request
}

#[tokio::test]
async fn an_unpriced_model_is_refused_by_default_naming_it() {
    let routes = vec![Route::paid("openai", "gpt-4o-mini")];
    let provider = Scripted::always("openai", Act::Answer);
    let service = unpriced_layer(Unpriced::Refuse, routes).layer(provider.clone());
    let error = service.clone().oneshot(asking_for("gpt-9-turbo")).await.unwrap_err();
    let unpriced = error.downcast_ref::<UnpricedModel>().expect("refused as unpriced");
    assert_eq!((unpriced.provider, unpriced.model.as_str()), ("openai", "gpt-9-turbo"));
    assert_eq!(provider.calls(), 0);
    // A fallback pinned to an unpriced model is refused too, whatever the call names.
    let routes = vec![
        Route::paid("openai", "gpt-4o-mini"),
        Route::paid("anthropic", "claude-next"),
    ];
    let service = unpriced_layer(Unpriced::Refuse, routes).layer(provider.clone());
    let error = service.oneshot(asking_for("gpt-4o-mini")).await.unwrap_err();
    assert_eq!(error.downcast_ref::<UnpricedModel>().unwrap().model, "claude-next");
    assert_eq!(provider.calls(), 0);
}

#[tokio::test]
async fn a_local_route_is_free_and_an_allowed_unpriced_model_is_unbudgeted() {
    let provider = Scripted::always("ollama", Act::Answer);
    let local = unpriced_layer(Unpriced::Refuse, vec![Route::local("ollama", "llama3.2")]);
    local
        .layer(provider.clone())
        .oneshot(asking_for("qwen3:32b"))
        .await
        .unwrap();
    let allow = unpriced_layer(Unpriced::Allow, vec![Route::paid("openai", "gpt-4o-mini")]);
    let mut request = asking_for("gpt-9-turbo");
    request.max_tokens = Some(1_000_000_000);
    allow.layer(provider.clone()).oneshot(request).await.unwrap();
    assert_eq!(provider.calls(), 2);
}

#[test]
fn an_unpriced_model_under_the_ceiling_policy_is_reserved_at_the_providers_dearest() {
    let routes = vec![Route::paid("anthropic", "claude-haiku-4-5")];
    let layer = unpriced_layer(Unpriced::Ceiling, routes);
    let mut request = asking_for("claude-next");
    request.messages = vec![].into();
    request.max_tokens = Some(1000);
    let estimate = super::state::usd(layer.state.estimate(&request).unwrap());
    // Claude's dearest output: 75 USD per million tokens.
    assert!((estimate - 1000.0 * 75.0 / 1e6).abs() < 1e-9, "{estimate}");
}

#[tokio::test]
async fn with_resume_a_call_is_reserved_twice_and_a_cut_counts_the_prompt_sent_again() {
    let (plain, _) = layer_with(50.0, 500.0, Arc::new(MemoryLedger::default()), NOV_30_23H);
    let mut config = BudgetConfig::new(50.0, 500.0, Arc::new(PriceTable::builtin())).unwrap();
    config.resumable = true;
    let clock = Arc::new(ManualClock(AtomicI64::new(NOV_30_23H)));
    let resumable = BudgetLayer::with_clock(config, Arc::new(MemoryLedger::default()), clock).unwrap();
    // gpt-4o: the whole call twice, plus the 1000-token cap again as input ($2.50/M).
    let expected = 2.0 * estimate(&plain) + 1000.0 * 2.50 / 1e6;
    assert!(
        (estimate(&resumable) - expected).abs() < 1e-12,
        "{} vs {expected}",
        estimate(&resumable)
    );

    // A stream cut with 4000 bytes of text, after 4000 bytes of prompt were sent again.
    let cut = Err(chrysalis_services::ProviderError::cut("p", "eof"));
    let provider = Scripted::always("p", Act::Stream(vec![delta("x".repeat(4000).as_str()), cut]));
    let ChatResponse::Stream(stream) = resumable.layer(provider).oneshot(priced_request()).await.unwrap() else {
        panic!()
    };
    stream.resent_prompt.add(4000);
    let _: Vec<_> = stream.collect().await;
    let spent = resumable.handle().report().unwrap().day.spent_usd;
    let prompt = (request().prompt_chars() + 4000).div_ceil(4) as f64;
    let expected = (prompt * 2.50 + 1000.0 * 10.0) / 1e6;
    assert!((spent - expected).abs() < 1e-9, "{spent} vs {expected}");
}
