//! The manager's API with an API key: each call sends `Authorization: Bearer <key>` and
//! answers the JSON body, or the refusal read from the error envelope (or the plain-text
//! body some routes answer with).

use std::time::Duration;

use serde_json::Value;

use crate::error::ClientError;

const USER_AGENT: &str = concat!("alien-cli/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No API answer takes this long; a held command wait asks for less.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Lists of releases and deployments are the largest answers.
const ANSWER_LIMIT: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct Manager {
    base: String,
    key: String,
    http: ureq::Agent,
}

impl Manager {
    /// A manager at `url` (`http://` or `https://`, trailing `/` trimmed), reached with `key`.
    pub fn new(url: &str, key: &str) -> Result<Manager, ClientError> {
        let base = url.trim().trim_end_matches('/');
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "ALIEN_MANAGER_URL {url:?} must start with http:// or https://"
                ))
            })?;
        if rest.is_empty() {
            return Err(ClientError::Usage(format!(
                "ALIEN_MANAGER_URL {url:?} names no host"
            )));
        }
        let key = key.trim();
        if key.is_empty() {
            return Err(ClientError::Usage(
                "ALIEN_API_KEY is required when ALIEN_MANAGER_URL is set.".into(),
            ));
        }
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(USER_AGENT)
            .build()
            .into();
        Ok(Manager {
            base: base.to_owned(),
            key: key.to_owned(),
            http,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `host[:port]` of the manager's URL: how image references name its registry.
    pub fn host(&self) -> &str {
        let rest = self
            .base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }

    /// `scheme://host[:port]`: where the registry's `/v2` is, whatever path the URL has.
    pub fn origin(&self) -> String {
        let scheme = self.base.split_once("://").map_or("http", |(s, _)| s);
        format!("{scheme}://{}", self.host())
    }

    /// The API key, for the registry's Basic `token:<key>`.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send("POST", path, Some(body.to_string()))
    }

    /// A `POST` of a body serialized by the caller, whose maps keep an order that a
    /// [`Value`] would sort (a release's resources).
    pub fn post_text(&self, path: &str, body: String) -> Result<Value, ClientError> {
        self.send("POST", path, Some(body))
    }

    /// A `POST` without a body, as the lifecycle routes take it.
    pub fn post_empty(&self, path: &str) -> Result<Value, ClientError> {
        self.send("POST", path, None)
    }

    pub fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send("DELETE", path, None)
    }

    fn send(&self, method: &str, path: &str, body: Option<String>) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", format!("Bearer {}", self.key))
            .header("Accept", "application/json");
        let bytes = match body {
            Some(body) => {
                request = request.header("Content-Type", "application/json");
                body.into_bytes()
            }
            None => Vec::new(),
        };
        let request = request
            .body(bytes)
            .map_err(|e| ClientError::Usage(format!("{method} {url} cannot be sent: {e}")))?;
        let response = self.http.run(request).map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .with_config()
            .limit(ANSWER_LIMIT)
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        if !(200..300).contains(&status) {
            return Err(refused(method, path, status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Answer {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// `GET url` of a presigned request (absolute, or relative to the manager), with its
    /// own headers and no API key: the URL carries its authorization.
    pub fn download(
        &self,
        url: &str,
        headers: Option<&serde_json::Map<String, Value>>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = if url.starts_with("http://") || url.starts_with("https://") {
            url.to_owned()
        } else {
            format!("{}/{}", self.base, url.trim_start_matches('/'))
        };
        let mut request = ureq::http::Request::builder().method("GET").uri(&url);
        for (name, value) in headers.into_iter().flatten() {
            if let Some(value) = value.as_str() {
                request = request.header(name.as_str(), value);
            }
        }
        let request = request
            .body(Vec::new())
            .map_err(|e| ClientError::Usage(format!("GET {url} cannot be sent: {e}")))?;
        let response = self.http.run(request).map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .with_config()
            .limit(ANSWER_LIMIT)
            .read_to_vec()
            .map_err(|e| self.unreachable(e))?;
        if !(200..300).contains(&status) {
            return Err(refused(
                "GET",
                &url,
                status,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        Ok(bytes)
    }

    fn unreachable(&self, error: ureq::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            reason: error.to_string(),
        }
    }
}

/// A refusal, with the error envelope's code and message, or the plain-text body.
pub(crate) fn refused(method: &str, path: &str, status: u16, text: &str) -> ClientError {
    let envelope: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let field = |key: &str| envelope[key].as_str().map(str::to_owned);
    let (code, message) = match (field("code"), field("message")) {
        (Some(code), message) => (code, message.unwrap_or_default()),
        // The registry's shape, `{"errors": [{"code", "message"}]}`.
        _ => match envelope["errors"][0].as_object() {
            Some(first) => (
                first["code"].as_str().unwrap_or_default().to_owned(),
                first["message"].as_str().unwrap_or_default().to_owned(),
            ),
            None => (String::new(), text.trim().chars().take(500).collect()),
        },
    };
    ClientError::Refused {
        method: method.to_owned(),
        path: path.to_owned(),
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keys_are_checked_before_anything_is_sent() {
        assert!(Manager::new("http://m:8080/", "ax_admin_1").is_ok());
        assert_eq!(
            Manager::new("https://m/", "k").expect("manager").base_url(),
            "https://m"
        );
        let behind_a_path = Manager::new("https://m:8443/alien/", "k").expect("manager");
        assert_eq!(behind_a_path.host(), "m:8443");
        assert_eq!(behind_a_path.origin(), "https://m:8443");
        for bad in ["m:8080", "ftp://m", "http://"] {
            assert!(matches!(Manager::new(bad, "k"), Err(ClientError::Usage(_))));
        }
        let Err(ClientError::Usage(message)) = Manager::new("http://m", " ") else {
            panic!("an empty key was taken");
        };
        assert_eq!(
            message,
            "ALIEN_API_KEY is required when ALIEN_MANAGER_URL is set."
        );
    }

    #[test]
    fn refusals_carry_the_envelope_or_the_plain_text() {
        let error = refused(
            "GET",
            "/v1/deployments/dep_x",
            404,
            r#"{"code":"DEPLOYMENT_NOT_FOUND","message":"Deployment 'dep_x' not found","retryable":false,"internal":false}"#,
        );
        assert_eq!(
            error.to_string(),
            "the manager refused GET /v1/deployments/dep_x (404): DEPLOYMENT_NOT_FOUND: Deployment 'dep_x' not found"
        );
        assert!(error.hint().is_some());
        let plain = refused("GET", "/v1/build-config", 400, "Unknown platform: x\n");
        assert_eq!(
            plain.to_string(),
            "the manager refused GET /v1/build-config (400): Unknown platform: x"
        );
    }
}
