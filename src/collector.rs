//! Metrics read at scrape time from the state the layers keep: circuit
//! states, failovers, budget spend and limits, unpriced calls.

use std::sync::Arc;

use chrysalis_middleware::budget::BudgetHandle;
use chrysalis_middleware::circuit_breaker::CircuitState;
use chrysalis_middleware::failover::Failover;
use chrysalis_middleware::rate_limit::RateLimitLayer;
use chrysalis_services::pricing::PriceTable;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::stack::{ChatService, ProviderHandle};

/// Reads the layers' state on each scrape.
pub struct StatusCollector {
    /// Whether its shared store answers.
    pub rate_limit: RateLimitLayer,
    /// Each provider, in failover order.
    pub providers: Vec<ProviderHandle>,
    /// Failover counts.
    pub failover: Failover<ChatService>,
    /// Spend and limits.
    pub budget: BudgetHandle,
    /// Unpriced calls.
    pub prices: Arc<PriceTable>,
}

impl std::fmt::Debug for StatusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusCollector").finish_non_exhaustive()
    }
}

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_circuits(&mut encoder)?;
        self.encode_failovers(&mut encoder)?;
        self.encode_budget(&mut encoder)?;
        self.encode_shared_stores(&mut encoder)?;
        let help = "Calls served by a model with no price (counted at $0)";
        let unpriced = encoder.encode_descriptor("gateway_unpriced_requests", help, None, MetricType::Counter)?;
        ConstCounter::new(self.prices.unpriced_calls()).encode(unpriced)
    }
}

impl StatusCollector {
    fn encode_shared_stores(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stores = [
            ("redis", self.rate_limit.shared_store_up()),
            ("postgres", self.budget.shared_store_up()),
        ];
        if stores.iter().all(|(_, up)| up.is_none()) {
            return Ok(());
        }
        let help = "Whether the last call to a store shared by the replicas answered (1) or not (0)";
        let mut family = encoder.encode_descriptor("gateway_shared_state_up", help, None, MetricType::Gauge)?;
        for (store, up) in stores {
            if let Some(up) = up {
                ConstGauge::new(i64::from(up)).encode(family.encode_family(&[("store", store)])?)?;
            }
        }
        Ok(())
    }

    fn encode_circuits(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let help = "Circuit state per provider: 0 closed, 1 open, 2 half_open";
        let mut family = encoder.encode_descriptor("gateway_circuit_state", help, None, MetricType::Gauge)?;
        for provider in &self.providers {
            let state = match provider.circuit.state() {
                CircuitState::Closed => 0,
                CircuitState::Open { .. } => 1,
                CircuitState::HalfOpen => 2,
            };
            ConstGauge::new(state).encode(family.encode_family(&[("provider", provider.name)])?)?;
        }
        let help = "Changes of circuit state per provider, by the state entered";
        let mut family = encoder.encode_descriptor("gateway_circuit_transitions", help, None, MetricType::Counter)?;
        for provider in &self.providers {
            for (to, count) in provider.circuit.transitions() {
                ConstCounter::new(count).encode(family.encode_family(&[("provider", provider.name), ("to", to)])?)?;
            }
        }
        let help = "Calls tried again on the same provider, by why";
        let mut family = encoder.encode_descriptor("gateway_retries", help, None, MetricType::Counter)?;
        for provider in &self.providers {
            for (reason, count) in provider.retries.retries() {
                ConstCounter::new(count)
                    .encode(family.encode_family(&[("provider", provider.name), ("reason", reason)])?)?;
            }
        }
        Ok(())
    }

    fn encode_failovers(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.failover.stats();
        let from = "Requests that moved on from a provider (it failed, or its circuit was open)";
        let mut family = encoder.encode_descriptor("gateway_failovers_from", from, None, MetricType::Counter)?;
        for s in &stats {
            ConstCounter::new(s.failovers_from).encode(family.encode_family(&[("provider", s.provider)])?)?;
        }
        let to = "Requests served by a provider after an earlier one was passed over";
        let mut family = encoder.encode_descriptor("gateway_failovers_to", to, None, MetricType::Counter)?;
        for s in &stats {
            ConstCounter::new(s.failovers_to).encode(family.encode_family(&[("provider", s.provider)])?)?;
        }
        Ok(())
    }

    fn encode_budget(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = self.budget.totals();
        for (name, help, day, month) in [
            (
                "gateway_budget_spent_usd",
                "USD spent in the budget window",
                t.day_spent_usd,
                t.month_spent_usd,
            ),
            (
                "gateway_budget_limit_usd",
                "The budget window's limit in USD",
                t.daily_limit_usd,
                t.monthly_limit_usd,
            ),
            (
                "gateway_budget_reserved_usd",
                "USD held by calls in flight",
                t.reserved_usd,
                t.reserved_usd,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(day).encode(family.encode_family(&[("window", "daily")])?)?;
            ConstGauge::new(month).encode(family.encode_family(&[("window", "monthly")])?)?;
        }
        Ok(())
    }
}
