//! Serving: the router on a listener until SIGINT/SIGTERM, with the
//! background refit beside it; then in-flight requests finish and the
//! index is persisted.

use std::sync::Arc;

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
    let reload = tokio::spawn(reload_keys_on_sighup(state.clone()));
    axum::serve(listener, super::router::router(state)).with_graceful_shutdown(shutdown_signal()).await?;
    refit.abort();
    reload.abort();
    let _ = tokio::task::spawn_blocking(move || catalog.persist()).await;
    Ok(())
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
