//! Build configuration and platforms (not in the OpenAPI document).

use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildConfigResponse {
    pub repository_name: String,
}

#[derive(Debug, Serialize)]
pub struct PlatformsResponse {
    pub platforms: Vec<&'static str>,
}
