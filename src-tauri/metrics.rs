//! Prometheus metrics (`GET /metrics`, behind the admin login): counters kept as things happen, and gauges
//! read from the database when scraped, so nothing runs while nobody asks.
//!
//! One registry per relay (no global state), in the OpenMetrics text format that Prometheus scrapes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::admin::dto::HealthState;
use crate::admin::service;
use crate::error::Result;
use crate::state::AppState;

/// What happened to an inbound webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Decision {
    queued,
    duplicate,
    no_inbox,
    no_route,
    route_disabled,
    /// Refused: not JSON, too large, wrong content type.
    rejected,
    /// Refused: a Chatwoot secret is configured and the signature is missing, stale or wrong (401).
    unsigned,
    /// Shed: more webhooks at once than the relay takes (503 + Retry-After).
    shed,
    /// Could not be stored (answered 503).
    unavailable,
}

impl Decision {
    /// Its name in logs, in metrics and in the answer to Chatwoot (`reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::queued => "queued",
            Self::duplicate => "duplicate",
            Self::no_inbox => "no_inbox",
            Self::no_route => "no_route",
            Self::route_disabled => "route_disabled",
            Self::rejected => "rejected",
            Self::unsigned => "unsigned",
            Self::shed => "shed",
            Self::unavailable => "unavailable",
        }
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    delivered,
    retry,
    dead,
    /// Cut short by shutdown; retried after the restart.
    interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabel {
    decision: Decision,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    inbox_id: i64,
    name: String,
}

/// The relay's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    webhooks: Family<DecisionLabel, Counter>,
    attempts: Family<OutcomeLabel, Counter>,
    attempt_seconds: Histogram,
    queue_depth: Gauge,
    oldest_pending_seconds: Gauge<f64, AtomicU64>,
    dead: Gauge,
    paused: Gauge,
    route_failing: Family<RouteLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chatgowa");
        let webhooks = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "webhooks_received",
            "Webhooks received, by what was done with them",
            webhooks.clone(),
        );
        let attempts = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts to GoWA, by outcome",
            attempts.clone(),
        );
        // 5 ms … ~20 s.
        let attempt_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        registry.register(
            "delivery_attempt_duration_seconds",
            "Time from sending a delivery attempt to its answer",
            attempt_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Deliveries waiting to be delivered",
            queue_depth.clone(),
        );
        let oldest_pending_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_pending_age_seconds",
            "Age of the oldest delivery still waiting (0 when none)",
            oldest_pending_seconds.clone(),
        );
        let dead = Gauge::default();
        registry.register(
            "deliveries_dead",
            "Deliveries that failed for good and are kept for a manual retry",
            dead.clone(),
        );
        let paused = Gauge::default();
        registry.register(
            "deliveries_paused",
            "1 while deliveries are paused by the admin",
            paused.clone(),
        );
        let route_failing = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "route_failing",
            "1 when the route's latest delivery attempt failed",
            route_failing.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                webhooks,
                attempts,
                attempt_seconds,
                queue_depth,
                oldest_pending_seconds,
                dead,
                paused,
                route_failing,
            }),
        }
    }
}

impl Metrics {
    pub fn webhook(&self, decision: Decision) {
        self.inner
            .webhooks
            .get_or_create(&DecisionLabel { decision })
            .inc();
    }

    pub fn attempt(&self, outcome: Outcome, seconds: f64) {
        self.inner
            .attempts
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        self.inner.attempt_seconds.observe(seconds);
    }
}

/// The metrics in the OpenMetrics text format, with the gauges read now.
///
/// # Errors
/// The database cannot be read.
pub async fn render(state: &AppState) -> Result<String> {
    let inner = &state.metrics.inner;
    let stats = service::stats(state).await?;
    inner.queue_depth.set(stats.queue_depth);
    inner.dead.set(stats.totals.dead);
    inner
        .oldest_pending_seconds
        .set(stats.oldest_pending_age_ms.unwrap_or(0) as f64 / 1000.0);
    inner.paused.set(i64::from(state.dispatcher.is_paused()));
    let routes = service::list_routes(state).await?;
    inner.route_failing.clear();
    for route in routes {
        let failing = route.health.is_some_and(|h| h.state != HealthState::Ok);
        inner
            .route_failing
            .get_or_create(&RouteLabels {
                inbox_id: route.inbox_id.0,
                name: route.name.unwrap_or_default(),
            })
            .set(i64::from(failing));
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &inner.registry);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_are_encoded() {
        let metrics = Metrics::default();
        metrics.webhook(Decision::queued);
        metrics.webhook(Decision::queued);
        metrics.webhook(Decision::no_route);
        metrics.attempt(Outcome::delivered, 0.012);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &metrics.inner.registry).unwrap();
        assert!(
            out.contains("chatgowa_webhooks_received_total{decision=\"queued\"} 2"),
            "{out}"
        );
        assert!(out.contains("chatgowa_webhooks_received_total{decision=\"no_route\"} 1"));
        assert!(out.contains("chatgowa_delivery_attempts_total{outcome=\"delivered\"} 1"));
        assert!(out.contains("chatgowa_delivery_attempt_duration_seconds_bucket{le=\"0.02\"} 1"));
        assert!(out.ends_with("# EOF\n"));
    }
}
