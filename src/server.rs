//! Serving: bind, run, and shut down gracefully within a bounded grace period.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;

/// Serves `app` until SIGINT or SIGTERM, then lets in-flight work finish.
pub async fn run(config: Config, app: Router) -> Result<(), String> {
    let addr = SocketAddr::new(config.gateway_host, config.gateway_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("error: GATEWAY_HOST/GATEWAY_PORT: cannot listen on {addr}: {e}"))?;
    let addr = listener.local_addr().unwrap_or(addr);
    let order: Vec<_> = config.providers().map(|p| p.kind.name()).collect();
    tracing::info!(%addr, providers = ?order, "gateway listening");
    serve(listener, app, shutdown_signal(), config.shutdown_grace())
        .await
        .map_err(|e| format!("error: the server failed: {e}"))
}

/// Serves `app` until `shutdown` resolves, then waits for open requests and
/// streams at most `grace` before returning.
pub async fn serve<F>(listener: TcpListener, app: Router, shutdown: F, grace: Duration) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down: no new connections");
        let _ = stopping_tx.send(());
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(signal).into_future();
    let deadline = async move {
        match stopping_rx.await {
            Ok(()) => tokio::time::sleep(grace).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("grace period over: closing the connections still open");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM can be handled");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
