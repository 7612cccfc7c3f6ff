//! The app-owned commands receiver of a container or a daemon: with the receiver variables a
//! command-enabled resource is given (`ALIEN_COMMANDS_URL`, `_TOKEN`, `_TARGET_RESOURCE_ID`,
//! `_TARGET_RESOURCE_TYPE`, `ALIEN_DEPLOYMENT_ID`), it leases its commands itself, waiting at
//! the manager for the next one, and answers each as the worker does: `{"echo": <params>,
//! "version": V}`, or an error for the command `fail`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// How long a lease request waits at the manager for a command.
const WAIT_SECONDS: u64 = 20;
const RETRY: Duration = Duration::from_secs(1);

struct Receiver {
    leases_url: String,
    token: String,
    request: Value,
    version: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Starts the receiver when the receiver variables are set; the process ends it.
pub fn receive(version: &str) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(url), Some(token), Some(id), Some(kind), Some(deployment)) = (
        var("ALIEN_COMMANDS_URL"),
        var("ALIEN_COMMANDS_TOKEN"),
        var("ALIEN_COMMANDS_TARGET_RESOURCE_ID"),
        var("ALIEN_COMMANDS_TARGET_RESOURCE_TYPE"),
        var("ALIEN_DEPLOYMENT_ID"),
    ) else {
        return;
    };
    let receiver = Receiver {
        leases_url: format!("{}/commands/leases", url.trim_end_matches('/')),
        token,
        request: json!({
            "deploymentId": deployment,
            "target": {"resourceId": id, "resourceType": kind},
            "maxLeases": 1, "leaseSeconds": 60,
        }),
        version: version.to_owned(),
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    eprintln!("receiving commands from {}", receiver.leases_url);
    tokio::spawn(receiver.run());
}

impl Receiver {
    async fn run(self) {
        loop {
            let url = format!("{}?waitSeconds={WAIT_SECONDS}", self.leases_url);
            let leased = self
                .send(Method::POST, &url, Some(&self.token), &self.request)
                .await;
            let leases = match leased {
                Ok((200, body)) => body["leases"].as_array().cloned().unwrap_or_default(),
                Ok((status, body)) => {
                    eprintln!("lease refused with {status}: {body}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                Err(error) => {
                    eprintln!("lease failed: {error}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            for lease in leases {
                if let Err(error) = self.answer(&lease["envelope"]).await {
                    eprintln!("cannot answer a command: {error}");
                }
            }
        }
    }

    async fn answer(&self, envelope: &Value) -> Result<(), String> {
        let submit = envelope["responseHandling"]["submitResponseUrl"]
            .as_str()
            .ok_or("the envelope has no submitResponseUrl")?;
        let submit = url::Url::parse(&self.leases_url)
            .and_then(|base| base.join(submit))
            .map_err(|e| format!("submitResponseUrl {submit}: {e}"))?;
        let params = envelope["params"]["inlineBase64"]
            .as_str()
            .and_then(|text| STANDARD.decode(text).ok())
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .unwrap_or(Value::Null);
        let response = if envelope["command"] == "fail" {
            json!({"status": "error", "code": "HANDLER_ERROR", "message": "failing, as asked"})
        } else {
            let body = json!({"echo": params, "version": self.version}).to_string();
            json!({"status": "success", "response": {"mode": "inline", "inlineBase64": STANDARD.encode(body)}})
        };
        match self
            .send(Method::PUT, submit.as_str(), None, &response)
            .await?
        {
            (status, _) if (200..300).contains(&status) => Ok(()),
            (status, body) => Err(format!("the response was refused with {status}: {body}")),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<(u16, Value), String> {
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}
