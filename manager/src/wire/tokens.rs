//! Tokens (not in the OpenAPI document).

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ListTokensResponse {
    pub items: Vec<TokenItem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenItem {
    pub id: String,
    pub token_type: String,
    pub key_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    pub created_at: String,
}
