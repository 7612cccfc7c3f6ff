//! Installing the agent from this manager (no auth: the binary is no secret, the token the
//! script is given is): the script, the binary it downloads (the running executable) and
//! that binary's checksum.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::error;

use crate::Error;
use crate::install::script;
use crate::state::AppState;

const TEXT: &str = "text/plain; charset=utf-8";
const BINARY: &str = "application/octet-stream";

/// `GET /install`: a POSIX sh script with this manager's URL baked in. A URL the script
/// cannot hold safely is the operator's mistake, not the client's: a 500 in plain text, as
/// the public manager answers it.
pub async fn script(State(state): State<AppState>) -> Result<Response, Error> {
    match script::render(&state.base_url) {
        Ok(text) => {
            // The script asks for the checksum once it has the binary: hashing starts now,
            // while the binary downloads. A failure is answered to that request.
            let executable = state.executable.clone();
            tokio::spawn(async move { executable.sha256().await.map(drop) });
            Ok(([(CONTENT_TYPE, TEXT)], text).into_response())
        }
        Err(unsafe_url) => {
            error!(%unsafe_url, "cannot serve the install script");
            Err(Error::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                unsafe_url.to_string(),
            ))
        }
    }
}

/// `GET /install/alien`: the running executable, streamed. A HEAD reads none of it.
pub async fn binary(State(state): State<AppState>, method: Method) -> Result<Response, Error> {
    let (len, body) = if method == Method::HEAD {
        (state.executable.size().await?, Body::empty())
    } else {
        state.executable.stream().await?
    };
    Ok(([(CONTENT_TYPE, BINARY)], [(CONTENT_LENGTH, len)], body).into_response())
}

/// `GET /install/alien.sha256`: `<hex>  alien`, as `sha256sum` prints it.
pub async fn checksum(State(state): State<AppState>) -> Result<Response, Error> {
    let sha256 = state.executable.sha256().await?;
    Ok(([(CONTENT_TYPE, TEXT)], format!("{sha256}  alien\n")).into_response())
}
