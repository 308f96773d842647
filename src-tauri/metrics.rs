//! Prometheus metrics: a sink. The relay and the lanes count what happens (their own words are the labels);
//! the admin service reads the gauges from the database when `/metrics` is scraped, so nothing runs while
//! nobody asks, and renders them here. Knows no other module of the crate.
//!
//! One registry per relay (no global state), in the OpenMetrics text format that Prometheus scrapes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RecoveredLabel {
    state: &'static str,
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
    ambiguous: Counter,
    connection_limits: Family<LimitLabel, Counter>,
    recovered: Family<RecoveredLabel, Counter>,
    attempt_seconds: Histogram,
    queue_depth: Gauge,
    oldest_pending_seconds: Gauge<f64, AtomicU64>,
    dead: Gauge,
    paused: Gauge,
    route_failing: Family<RouteLabels, Gauge>,
}

impl Default for Metrics {
    // Long on purpose: one registration per metric, in the order `/metrics` lists them.
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
        let ambiguous = Counter::default();
        registry.register(
            "delivery_attempts_ambiguous",
            "Delivery attempts that got no answer after the request was sent: GoWA may have sent the message",
            ambiguous.clone(),
        );
        let connection_limits = Family::<LimitLabel, Counter>::default();
        registry.register(
            "connection_limit_hits",
            "Connections turned away or kept waiting, by the limit that was hit",
            connection_limits.clone(),
        );
        let recovered = Family::<RecoveredLabel, Counter>::default();
        registry.register(
            "replies_recovered",
            "Replies the relay never received as webhooks, found by catching up with Chatwoot: queued or held",
            recovered.clone(),
        );
        // 5 ms … ~80 s (the attempt timeout is 60 s by default).
        let attempt_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 15));
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
                ambiguous,
                connection_limits,
                recovered,
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
    /// A connection limit was hit (`server::conn`'s name for it).
    pub fn connection_limit(&self, limit: &'static str) {
        self.inner
            .connection_limits
            .get_or_create(&LimitLabel { limit })
            .inc();
    }

    /// A reply found by catching up with Chatwoot: `queued`, or `held` for a decision.
    pub fn recovered(&self, state: &'static str) {
        self.inner
            .recovered
            .get_or_create(&RecoveredLabel { state })
            .inc();
    }

    /// One webhook, by what was decided (`relay::Decision`'s name).
    pub fn webhook(&self, decision: &'static str) {
        self.inner
            .webhooks
            .get_or_create(&DecisionLabel { decision })
            .inc();
    }

    /// One delivery attempt, by how it ended (`delivery::Outcome`'s name), and whether it got no answer after
    /// the request was sent.
    pub fn attempt(&self, outcome: &'static str, ambiguous: bool, seconds: f64) {
        self.inner
            .attempts
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        if ambiguous {
            self.inner.ambiguous.inc();
        }
        self.inner.attempt_seconds.observe(seconds);
    }
}

/// What the gauges show, read when the metrics are scraped.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub queue_depth: i64,
    pub oldest_pending_seconds: f64,
    pub dead: i64,
    pub paused: bool,
    pub routes: Vec<RouteGauge>,
}

/// One route's health.
#[derive(Debug, Clone)]
pub struct RouteGauge {
    pub inbox_id: i64,
    pub name: String,
    /// Its latest delivery attempt failed.
    pub failing: bool,
}

impl Metrics {
    /// The metrics in the OpenMetrics text format, with the gauges set to `gauges`.
    pub fn encode(&self, gauges: &Gauges) -> String {
        let inner = &self.inner;
        inner.queue_depth.set(gauges.queue_depth);
        inner.dead.set(gauges.dead);
        inner
            .oldest_pending_seconds
            .set(gauges.oldest_pending_seconds);
        inner.paused.set(i64::from(gauges.paused));
        inner.route_failing.clear();
        for route in &gauges.routes {
            inner
                .route_failing
                .get_or_create(&RouteLabels {
                    inbox_id: route.inbox_id,
                    name: route.name.clone(),
                })
                .set(i64::from(route.failing));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &inner.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_are_encoded() {
        let metrics = Metrics::default();
        metrics.webhook("queued");
        metrics.webhook("queued");
        metrics.webhook("no_route");
        metrics.attempt("delivered", false, 0.012);
        metrics.attempt("retry", true, 60.0);
        let out = metrics.encode(&Gauges {
            queue_depth: 3,
            routes: vec![RouteGauge {
                inbox_id: 7,
                name: "Sales".into(),
                failing: true,
            }],
            ..Gauges::default()
        });
        assert!(
            out.contains("chatgowa_webhooks_received_total{decision=\"queued\"} 2"),
            "{out}"
        );
        assert!(out.contains("chatgowa_webhooks_received_total{decision=\"no_route\"} 1"));
        assert!(out.contains("chatgowa_delivery_attempts_total{outcome=\"delivered\"} 1"));
        assert!(out.contains("chatgowa_delivery_attempt_duration_seconds_bucket{le=\"0.02\"} 1"));
        assert!(
            out.contains("chatgowa_delivery_attempts_ambiguous_total 1"),
            "{out}"
        );
        assert!(out.contains("chatgowa_queue_depth 3"), "{out}");
        assert!(out.contains("chatgowa_route_failing{inbox_id=\"7\",name=\"Sales\"} 1"));
        assert!(out.ends_with("# EOF\n"));
    }
}
