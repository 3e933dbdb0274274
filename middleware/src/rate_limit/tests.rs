use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tower::{Layer, ServiceExt};

use super::error::RateLimited;
use super::limiter::{Limiter, MAX_AGENTS};
use super::RateLimitLayer;
use crate::test_support::*;

fn burst(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_burst_admits_exactly_the_burst_and_tells_the_real_wait() {
    let provider = Scripted::always("p", Act::Answer);
    let service = RateLimitLayer::global(10.0, burst(20)).unwrap().layer(provider.clone());
    let mut admitted = 0;
    let mut refused = Vec::new();
    for _ in 0..50 {
        match service.clone().oneshot(request()).await {
            Ok(_) => admitted += 1,
            Err(error) => refused.push(*error.downcast_ref::<RateLimited>().unwrap()),
        }
    }
    assert_eq!(admitted, 20);
    assert_eq!(provider.calls(), 20, "refused requests never reach the provider");
    assert_eq!(refused[0].retry_after, Duration::from_millis(100));

    tokio::time::advance(Duration::from_secs(1)).await;
    let mut admitted = 0;
    for _ in 0..50 {
        admitted += usize::from(service.clone().oneshot(request()).await.is_ok());
    }
    assert_eq!(admitted, 10, "ten a second refill");
}

#[tokio::test(start_paused = true)]
async fn admitted_responses_say_what_is_left() {
    let service = RateLimitLayer::global(1.0, burst(3))
        .unwrap()
        .layer(Scripted::always("p", Act::Answer));
    for left in [2, 1, 0] {
        let response = service.clone().oneshot(request()).await.unwrap();
        let chrysalis_services::ChatResponse::Complete(completion) = response else {
            panic!()
        };
        assert_eq!(completion.meta.rate_limit, Some((3, left)));
    }
}

#[tokio::test(start_paused = true)]
async fn per_agent_buckets_are_separate() {
    let service = RateLimitLayer::per_agent(1.0, burst(2))
        .unwrap()
        .layer(Scripted::always("p", Act::Answer));
    let as_agent = |agent: &str| {
        let mut request = request();
        request.agent_id = agent.into();
        service.clone().oneshot(request)
    };
    assert!(as_agent("a").await.is_ok());
    assert!(as_agent("a").await.is_ok());
    assert!(as_agent("a").await.is_err());
    assert!(as_agent("b").await.is_ok(), "b has its own bucket");
}

#[tokio::test(start_paused = true)]
async fn memory_stays_bounded_however_many_agents_appear() {
    let limiter = Limiter::per_agent(1.0, burst(5)).unwrap();
    for i in 0..(MAX_AGENTS * 2) {
        let _ = limiter.check(&Arc::from(format!("agent-{i}")));
    }
    assert!(limiter.agents() <= MAX_AGENTS, "{}", limiter.agents());
    // Once their buckets are full again, idle agents are forgotten.
    tokio::time::advance(Duration::from_secs(6)).await;
    for i in 0..1025 {
        let _ = limiter.check(&Arc::from(format!("new-{i}")));
    }
    assert!(limiter.agents() <= 1025, "{}", limiter.agents());
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_new_agents_past_the_cap_does_not_sweep_the_map_for_each() {
    let limiter = Limiter::per_agent(1.0, burst(5)).unwrap();
    for i in 0..MAX_AGENTS {
        let _ = limiter.check(&Arc::from(format!("agent-{i}")));
    }
    assert_eq!(limiter.agents(), MAX_AGENTS);
    let filling = limiter.sweeps();
    // Nobody can be idle yet: these share the overflow bucket, with one sweep at most.
    for i in 0..5_000 {
        let _ = limiter.check(&Arc::from(format!("flood-{i}")));
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    for i in 0..5_000 {
        let _ = limiter.check(&Arc::from(format!("later-{i}")));
    }
    assert!(limiter.sweeps() - filling <= 1, "{} sweeps", limiter.sweeps() - filling);
    // Once the first agents have gone idle, the next new one gets a bucket of its own.
    tokio::time::advance(Duration::from_secs(4)).await;
    let fresh: Arc<str> = Arc::from("fresh");
    for _ in 0..5 {
        assert!(
            limiter.check(&fresh).is_ok(),
            "its own full bucket, not the drained overflow"
        );
    }
    assert!(limiter.agents() < MAX_AGENTS, "{}", limiter.agents());
}

#[test]
fn invalid_rates_are_refused_when_built() {
    assert!(RateLimitLayer::global(0.0, burst(1)).is_err());
    assert!(RateLimitLayer::global(f64::NAN, burst(1)).is_err());
    assert!(RateLimitLayer::per_agent(-1.0, burst(1)).is_err());
}
