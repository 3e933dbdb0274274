//! The layers in a plain tokio program, no HTTP server: two mock providers,
//! the first broken, behind circuit breakers, timeouts, failover, a budget
//! and a rate limit.
//!
//! Run with `cargo run -p chrysalis-middleware --example resilient_calls`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrysalis_middleware::budget::{BudgetConfig, BudgetLayer, MemoryLedger, Route};
use chrysalis_middleware::circuit_breaker::CircuitBreakerLayer;
use chrysalis_middleware::failover::{Failover, Target};
use chrysalis_middleware::rate_limit::RateLimitLayer;
use chrysalis_middleware::timeout::TimeoutLayer;
use chrysalis_middleware::BoxError;
use chrysalis_services::mock::{Mock, MockConfig};
use chrysalis_services::pricing::{Price, PriceTable};
use chrysalis_services::{ChatRequest, Message, Role};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Price the mock's model, so the budget has something to count.
    let mut prices = PriceTable::builtin();
    let price = Price::new(2.0, 8.0);
    prices.insert("mock-1", price);
    let prices = Arc::new(prices);
    let broken = Mock::new(MockConfig {
        fail: true,
        ..MockConfig::default()
    });
    let healthy = Mock::new(MockConfig {
        prices: prices.clone(),
        ..MockConfig::default()
    });

    let primary_circuit = CircuitBreakerLayer::builder("primary")
        .failure_threshold(std::num::NonZeroU32::new(2).expect("2 is not zero"))
        .reset_after(Duration::from_secs(30))
        .build();
    let circuit = primary_circuit.handle();
    let primary = ServiceBuilder::new()
        .layer(primary_circuit)
        .layer(TimeoutLayer::new(Duration::from_secs(5), Duration::from_secs(5)))
        .service(broken);
    let backup = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new("backup"))
        .layer(TimeoutLayer::new(Duration::from_secs(5), Duration::from_secs(5)))
        .service(healthy);
    let failover = Failover::new(vec![
        Target::primary("primary", BoxCloneSyncService::new(primary)),
        Target::fallback("backup", None, BoxCloneSyncService::new(backup)),
    ]);
    let mut budget = BudgetConfig::new(1.0, 10.0, prices)?;
    budget.routes = vec![Route::local("mock", "mock-1"), Route::local("mock", "mock-1")];
    let budget = BudgetLayer::new(budget, Arc::new(MemoryLedger::default()))?;
    let spend = budget.handle();

    let burst = NonZeroU32::new(5).expect("five is not zero");
    let chat = ServiceBuilder::new()
        .layer(RateLimitLayer::global(1.0, burst)?)
        .layer(budget)
        .service(failover.clone());

    for i in 1..=6 {
        let request = ChatRequest::new("example", vec![Message::new(Role::User, format!("call {i}"))]);
        match chat.clone().oneshot(request).await {
            Ok(response) => {
                let completion = response.into_completion().await?;
                println!(
                    "call {i}: {:?} (primary circuit {})",
                    completion.content,
                    circuit.state().name()
                );
            }
            Err(error) => println!("call {i}: refused: {error}"),
        }
    }
    let today = spend.report()?.day;
    println!("spent ${:.6} of ${:.2} today", today.spent_usd, today.limit_usd);
    for stats in failover.stats() {
        println!(
            "{}: failed over from {} times, to {} times",
            stats.provider, stats.failovers_from, stats.failovers_to
        );
    }
    Ok(())
}
