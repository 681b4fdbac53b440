//! Serving: the router on a listener until SIGINT/SIGTERM, with the
//! background refit and the hourly upkeep (review cases, webhook events, idempotency keys) beside it; then in-flight requests finish and the
//! index is persisted. Connections are bounded: a client must send a
//! request's headers within [`HEADER_READ_TIMEOUT`], and at most
//! [`max_connections`] are open at once (the rest wait in the listen queue),
//! so slow or half-sent requests cannot use up the process's files.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use super::state::AppState;

/// Serves until SIGINT/SIGTERM, then finishes in-flight requests and persists the index.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>) -> std::io::Result<()> {
    let catalog = state.catalog.clone();
    // Background refit: the catalog grows through jobs and admin writes;
    // its calibration follows without a restart.
    let refit_state = state.clone();
    let refit = tokio::spawn(async move {
        let mut tick = tokio::time::interval(refit_state.config.refit_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let st = refit_state.clone();
            let _ = tokio::task::spawn_blocking(move || st.refit_if_changed()).await;
        }
    });
    let upkeep_state = state.clone();
    let upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let st = upkeep_state.clone();
            let done = tokio::task::spawn_blocking(move || {
                let review = crate::review::upkeep(&st.catalog, st.config.cases).map_err(|e| format!("review upkeep: {e}"));
                let events = crate::webhooks::upkeep(&st.catalog).map_err(|e| format!("webhook upkeep: {e}"));
                let keys = st.catalog.records().purge_idempotency(24).map_err(|e| format!("idempotency upkeep: {e}"));
                review.and(events).and(keys.map(drop))
            })
            .await;
            if let Ok(Err(e)) = done {
                tracing::warn!("{e}");
            }
        }
    });
    let reload = tokio::spawn(reload_keys_on_sighup(state.clone()));
    serve_connections(listener, super::router::router(state)).await;
    refit.abort();
    upkeep.abort();
    reload.abort();
    let _ = tokio::task::spawn_blocking(move || catalog.persist()).await;
    Ok(())
}

/// A client must send a request's headers within this long (a slow trickle of header bytes is cut off).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Files the process keeps for itself (stores, models, engines' connections) besides client connections.
const RESERVED_FILES: u64 = 256;

/// How many client connections may be open at once: the process's open-file
/// limit (raised to its hard limit first) less what it keeps for itself.
#[must_use]
pub fn max_connections() -> usize {
    #[cfg(unix)]
    let files = {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) == 0 {
                    lim = raised;
                }
            }
        }
        lim.rlim_cur
    };
    #[cfg(not(unix))]
    let files = 1024u64;
    usize::try_from(files.saturating_sub(RESERVED_FILES).clamp(32, 65_536)).unwrap_or(1024)
}

/// Accepts and serves HTTP/1 connections until SIGINT/SIGTERM, then lets
/// the open ones finish their requests.
async fn serve_connections(listener: tokio::net::TcpListener, app: axum::Router) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections()));
    let mut stop = pin!(shutdown_signal());
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// SIGHUP reads the API keys again (a keys file rewritten, a key revoked)
/// without a restart; a reload that fails keeps the keys in force.
async fn reload_keys_on_sighup(state: Arc<AppState>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            match state.reload_keys() {
                Ok(n) => tracing::warn!("API keys read again on SIGHUP: {n} keys in force"),
                Err(e) => tracing::error!("API keys not reloaded, the ones in force stay: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    drop(state);
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
