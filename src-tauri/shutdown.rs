//! What stops things: SIGINT (Ctrl-C) or SIGTERM (`docker stop`) for the headless relay, and [`Stopping`] for
//! the requests of one listener.

/// Completes on the first SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Cancelled when the listener that accepted a request stops: long-lived responses (the event stream) end
/// with it, so that the listener can wind down. Put into each request by the server.
#[derive(Debug, Clone)]
pub struct Stopping(pub tokio_util::sync::CancellationToken);
