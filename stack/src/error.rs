//! Why a stack is refused. The message is the reason alone; the manager prefixes it with
//! `Invalid stack format for {platform}: `, as the public manager does.

/// A stack the engine could not deploy.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// Not the stack's shape: serde's own message (`missing field `links``, `unknown variant
    /// ...`, `unknown field ...`), without a position, as the public manager words it.
    #[error("{0}")]
    Format(String),
    /// A resource id outside `[a-z0-9]([a-z0-9-]*[a-z0-9])?` or with `--`.
    #[error(
        "resource id `{id}` must be lowercase letters, digits and single hyphens, starting and ending with a letter or digit"
    )]
    ResourceId { id: String },
    /// A resource listed under one key whose config names another id.
    #[error("resource `{key}` has config id `{id}`; they must be equal")]
    KeyMismatch { key: String, id: String },
    /// A lifecycle the resource's type does not allow.
    #[error("resource `{id}` of type `{kind}` must be `{required}`, found `{found}`")]
    Lifecycle {
        id: String,
        kind: &'static str,
        required: &'static str,
        found: &'static str,
    },
}

impl StackError {
    /// serde's reason without the position serde_json appends to it.
    pub(crate) fn format(error: serde_json::Error) -> Self {
        let message = error.to_string();
        let position = format!(" at line {} column {}", error.line(), error.column());
        Self::Format(
            message
                .strip_suffix(&position)
                .map_or_else(|| message.clone(), str::to_owned),
        )
    }
}
