//! Logging set-up: `RUST_LOG` or a default filter, human or JSON lines on standard error, and on the desktop a
//! daily file as well; and [`Sparse`], warnings that a flood must not repeat thousands of times.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// `RUST_LOG` if set, else info for Chatgowa and warnings for its libraries; to stderr in `format`, and also
/// to a daily file in `log_dir` when given (the desktop app's log folder), of which the last [`LOG_DAYS`] are
/// kept.
pub fn init(format: LogFormat, log_dir: Option<&Path>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("chatgowa_lib=info,chatgowa=info,warn")
    });
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let mut layers: Vec<Boxed> = vec![match format {
        LogFormat::Json => stderr.json().flatten_event(true).boxed(),
        LogFormat::Human => stderr
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    }];
    if let Some(file) = log_dir.and_then(daily_files) {
        let file = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(file);
        layers.push(match format {
            LogFormat::Json => file.json().flatten_event(true).boxed(),
            LogFormat::Human => file.boxed(),
        });
    }
    let _ = tracing_subscriber::registry()
        .with(layers.with_filter(filter))
        .try_init();
}

/// How many daily log files the desktop app keeps: older ones are deleted.
pub const LOG_DAYS: usize = 14;

/// `chatgowa.log.<date>` in `dir`, a new one each day, the oldest deleted beyond [`LOG_DAYS`].
fn daily_files(dir: &Path) -> Option<tracing_appender::rolling::RollingFileAppender> {
    tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("chatgowa.log")
        .max_log_files(LOG_DAYS)
        .build(dir)
        .map_err(|e| eprintln!("cannot write the log to {}: {e}", dir.display()))
        .ok()
}

/// Warnings written at most once per period for each kind (a limit being hit under attack would otherwise
/// write a line per request). Cheap to clone; clones share what was written when.
#[derive(Debug, Clone)]
pub struct Sparse {
    every: Duration,
    written: Arc<Mutex<HashMap<&'static str, Instant>>>,
}

impl Sparse {
    pub fn every(every: Duration) -> Self {
        Self {
            every,
            written: Arc::default(),
        }
    }

    /// Writes `message` at WARN unless a warning of this `kind` was written less than a period ago.
    pub fn warn(&self, kind: &'static str, message: &str) {
        let now = Instant::now();
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if written
            .get(kind)
            .is_none_or(|at| now.duration_since(*at) >= self.every)
        {
            written.insert(kind, now);
            tracing::warn!(limit = kind, "{message}");
        }
    }
}
