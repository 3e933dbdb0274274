//! Serving: accept connections with bounded header and idle times, and shut
//! down gracefully within a bounded grace period.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::config::Config;

/// Serves `app` until SIGINT or SIGTERM, then lets in-flight work finish.
///
/// Thread per core: each of `GATEWAY_WORKERS` threads runs its own
/// single-threaded runtime and accepts from the one listening socket. A
/// connection, and every request on it, stays on the thread that accepted
/// it, so no worker wakes another: on a small VM those wake-ups cost more
/// than the gateway's own work.
pub fn run(config: Config, app: Router) -> Result<(), String> {
    let workers = match config.gateway_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let listeners = bind(SocketAddr::new(config.gateway_host, config.gateway_port), workers)?;
    let addr = listeners[0]
        .local_addr()
        .map_err(|e| format!("error: the listener: {e}"))?;
    let order: Vec<_> = config.providers().map(|p| p.kind.name()).collect();
    tracing::info!(%addr, providers = ?order, workers, "gateway listening");
    if !addr.ip().is_loopback() && config.auth_tokens().is_none() {
        tracing::warn!(%addr, "listening beyond this machine with no GATEWAY_AUTH_TOKEN: anyone who can reach it can spend your budget");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = std::sync::Arc::new(config);
    let threads = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let (app, config, mut stopped) = (app.clone(), config.clone(), stopped.clone());
            std::thread::Builder::new()
                .name(format!("gateway-worker-{i}"))
                .spawn(move || {
                    let shutdown = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    runtime()?.block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        serve(listener, app, shutdown, &config).await
                    })
                })
                .map_err(|e| format!("error: cannot start a worker thread: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    runtime()
        .map_err(|e| format!("error: cannot start the runtime: {e}"))?
        .block_on(shutdown_signal());
    let _ = stop.send(true);
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("error: the server failed: {e}")),
            Err(_) => return Err("error: a worker thread panicked".into()),
        }
    }
    Ok(())
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// One listening socket, and a handle to it for each worker: every worker
/// waits on it, and whichever is free first accepts.
fn bind(addr: SocketAddr, count: usize) -> Result<Vec<std::net::TcpListener>, String> {
    let cannot = |e: io::Error| format!("error: GATEWAY_HOST/GATEWAY_PORT: cannot listen on {addr}: {e}");
    let listener = std::net::TcpListener::bind(addr).map_err(cannot)?;
    listener.set_nonblocking(true).map_err(cannot)?;
    let mut listeners = (1..count)
        .map(|_| listener.try_clone().map_err(cannot))
        .collect::<Result<Vec<_>, _>>()?;
    listeners.insert(0, listener);
    Ok(listeners)
}

/// Serves `app` until `shutdown` resolves, then waits for open requests and
/// streams at most the grace period before returning.
///
/// A client must send a request's headers within the header timeout, and an
/// idle keep-alive connection is closed after it too, so slow or idle
/// clients cannot hold connections forever.
pub async fn serve<F>(listener: TcpListener, app: Router, shutdown: F, config: &Config) -> io::Result<()>
where
    F: Future<Output = ()>,
{
    // HTTP/1.1 only: the clients of an LLM gateway speak it, and it lets the
    // header timeout cover a connection from its first byte (HTTP version
    // sniffing would wait on a silent client without a deadline).
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed with an error");
            }
        });
    }
    drop(listener);
    let grace = config.shutdown_grace();
    tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down: no new connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("every connection finished"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over: closing the connections still open"),
    }
    Ok(())
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
