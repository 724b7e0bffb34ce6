//! The control socket: a Unix socket in the data directory that serves `POST /backup` and
//! `POST /clock/confirm` to the `loyalty-node` commands of a running node, and the client side
//! those commands use. Reaching it needs the data directory, which holds the signing key anyway.

#[cfg(unix)]
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use crate::app::App;
use crate::problem::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    to: PathBuf,
}

/// Serves `POST /backup` on a Unix socket in the data directory, reachable only by users who
/// can reach the data directory (which holds the signing key anyway).
pub fn spawn_control_socket(
    data: &std::path::Path,
    app: Arc<App>,
) -> Result<tokio::task::JoinHandle<()>> {
    let path = data.join(crate::datadir::CONTROL_SOCKET);
    let _ = std::fs::remove_file(&path);
    #[cfg(unix)]
    {
        let listener = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("bind {}", path.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        let router = Router::new()
            .route(
                "/backup",
                post(
                    |State(app): State<Arc<App>>, Json(b): Json<BackupRequest>| async move {
                        let store = app.store.clone();
                        let to = b.to.clone();
                        match tokio::task::spawn_blocking(move || store.backup(&to)).await {
                            Ok(Ok(())) => {
                                tracing::info!(to = %b.to.display(), "backup written");
                                (
                                    StatusCode::OK,
                                    format!("{{\"to\":{:?}}}", b.to.display().to_string()),
                                )
                                    .into_response()
                            }
                            Ok(Err(e)) => ApiError::internal(e).into_response(),
                            Err(e) => ApiError::internal(e).into_response(),
                        }
                    },
                ),
            )
            .route(
                "/clock/confirm",
                // The body is read (and ignored) before answering, so that the client never
                // writes into a closed connection.
                post(
                    |State(app): State<Arc<App>>, _body: axum::body::Bytes| async move {
                        Json(app.clock.confirm()).into_response()
                    },
                ),
            )
            .with_state(app);
        Ok(tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, app);
        Ok(tokio::spawn(async {}))
    }
}

/// Sends one HTTP/1.1 POST over the node's Unix control socket and returns the body.
pub fn control_request(socket: &Path, path: &str, body: &str) -> Result<String> {
    #[cfg(unix)]
    {
        let mut s = std::os::unix::net::UnixStream::connect(socket)
            .with_context(|| format!("connect to {}", socket.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(600)))?;
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        if !head.starts_with("HTTP/1.1 200") {
            bail!(
                "the node refused: {} {}",
                head.lines().next().unwrap_or(""),
                body
            );
        }
        Ok(body.trim().to_owned())
    }
    #[cfg(not(unix))]
    {
        let _ = (socket, path, body);
        bail!("backups of a running node need a Unix control socket")
    }
}
