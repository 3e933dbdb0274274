//! The shared ledger against a real PostgreSQL (`GATEWAY_TEST_DATABASE_URL`,
//! set by `.ci/run`; without it these tests say so and do nothing), each
//! test in a schema of its own.

use std::sync::Arc;
use std::time::Duration;

use chrysalis_services::pricing::PriceTable;
use tower::{Layer, ServiceExt};

use super::super::error::{BudgetExceeded, Window};
use super::super::ledger::SpendRow;
use super::super::state::{nanos, SystemClock, WallClock};
use super::super::{utc, BudgetConfig, BudgetLayer};
use super::{Admission, PostgresConfig, PostgresLedger};
use crate::test_support::*;

struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn fresh() -> Option<Self> {
        let Ok(url) = std::env::var("GATEWAY_TEST_DATABASE_URL") else {
            println!("skipped: GATEWAY_TEST_DATABASE_URL is not set, so there is no PostgreSQL");
            return None;
        };
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("chrysalis_unit_{}_{n}_{}", std::process::id(), SystemClock.now_ms());
        Some(Self { url, name })
    }

    fn ledger(&self) -> PostgresLedger {
        let mut config = PostgresConfig::new(&self.url);
        config.schema = self.name.clone();
        config.timeout = Duration::from_secs(2);
        PostgresLedger::connect(config).expect("the test database is reachable")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
        })
        .join();
    }
}

#[tokio::test]
async fn calls_settle_in_the_shared_ledger_and_one_that_could_pass_it_is_refused() {
    let Some(schema) = Schema::fresh() else { return };
    let prices = Arc::new(PriceTable::builtin());
    let probe = BudgetLayer::shared(BudgetConfig::new(1.0, 1.0, prices.clone()).unwrap(), schema.ledger());
    let request = || {
        let mut request = request();
        request.model = Some("gpt-4o".into());
        request.max_tokens = Some(1000);
        request
    };
    let estimate = super::super::state::usd(probe.state.estimate(&request()).unwrap());
    // Room for one call's estimate: the first is admitted, the second could pass the day.
    let layer = BudgetLayer::shared(BudgetConfig::new(estimate, 10.0, prices).unwrap(), schema.ledger());
    let provider = Scripted::always("p", Act::Answer);
    let service = layer.layer(provider.clone());
    service.clone().oneshot(request()).await.unwrap();
    let error = service.oneshot(request()).await.unwrap_err();
    let exceeded = error.downcast_ref::<BudgetExceeded>().expect("a budget refusal");
    assert_eq!((exceeded.window, exceeded.spent_usd), (Window::Daily, COST));
    assert_eq!(provider.calls(), 1);
    // Another replica's handle reads the same totals.
    let report = probe.handle().report().unwrap();
    assert_eq!((report.day.spent_usd, report.day.reserved_usd), (COST, 0.0));
    assert_eq!((report.month.spent_usd, report.day.by_agent["agent"]), (COST, COST));
}

#[tokio::test]
async fn a_settle_tried_again_after_its_answer_was_lost_is_counted_once() {
    let Some(schema) = Schema::fresh() else { return };
    let ledger = schema.ledger();
    let now = SystemClock.now_ms();
    let windows = utc::window_starts_ms(now);
    let (seq, answer) = ledger.reserve(&Arc::from("agent"), nanos(0.5), windows, (nanos(1.0), nanos(1.0)));
    assert!(matches!(answer.await, Ok(Admission::Admitted(_))));
    let row = SpendRow {
        at_ms: now,
        agent_id: "agent".into(),
        provider: "p".into(),
        model: "m".into(),
        input_tokens: 10,
        output_tokens: 20,
        cost_nanos: nanos(0.25),
    };
    ledger.settle(seq, row.clone()).await.unwrap();
    ledger.settle(seq, row).await.unwrap();
    let report = tokio::task::spawn_blocking(move || ledger.report(windows))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.standing.day_spent, nanos(0.25));
    assert_eq!(report.standing.month_spent, nanos(0.25));
    assert_eq!(report.standing.reserved, 0);
    assert_eq!(report.day.by_model["m"], nanos(0.25));
}
