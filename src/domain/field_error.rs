use std::borrow::Cow;

use serde::Serialize;

/// A field-level validation failure, reported under `errors`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// The JSON path of the field (`title`, `author.name`, `items[0]`).
    pub field: String,
    /// A fixed message such as `is required` or `must be at most 200 characters`.
    #[schema(value_type = String)]
    pub message: Cow<'static, str>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<Cow<'static, str>>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}
