//! Logging set-up: `RUST_LOG` or a default filter, human or JSON lines on standard error, and on the desktop a
//! daily file as well.

use std::path::Path;

use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// `RUST_LOG` if set, else info for Chatgowa and warnings for its libraries; to stderr in `format`, and also
/// to a daily rolling file in `log_dir` when given (the desktop app's log folder).
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
    if let Some(dir) = log_dir {
        let file = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(tracing_appender::rolling::daily(dir, "chatgowa.log"));
        layers.push(match format {
            LogFormat::Json => file.json().flatten_event(true).boxed(),
            LogFormat::Human => file.boxed(),
        });
    }
    let _ = tracing_subscriber::registry()
        .with(layers.with_filter(filter))
        .try_init();
}
