//! `JsonBody<T>`: the JSON extractor every handler uses.
//!
//! Unlike `axum::Json`, its failures are `ApiError`s with our own words:
//! 415 for a non-JSON content type, 413 past the body limit, 400 for broken
//! JSON, and 400 with `errors` naming each offending field (unknown fields
//! included, since request types deny them). Parser and type names never
//! reach the client.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{StatusCode, header},
};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(&request) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::bad_request("The request body could not be read.")
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

fn has_json_content_type(request: &Request) -> bool {
    let Some(value) = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON object body into `T`, mapping every failure to a client
/// error. Every request body of the API is an object.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
            return Err(ApiError::bad_request("The request body must be a JSON object."));
        }
        _ => return Err(ApiError::bad_request("The request body is not valid JSON.")),
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(value) => value,
        Err(error) => return Err(describe(&error)),
    };
    deserializer.end().map_err(|_| ApiError::bad_request("The request body is not valid JSON."))?;
    Ok(value)
}

fn describe(error: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let inner = error.inner();
    if !matches!(inner.classify(), Category::Data) {
        return ApiError::bad_request("The request body is not valid JSON.");
    }
    let path = error.path().to_string();
    let text = inner.to_string();
    let at_root = path.is_empty() || path == ".";
    // serde's messages name Rust types; only their category is kept.
    let (field, message) = if let Some(rest) = text.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let field = if at_root { name.to_owned() } else { format!("{path}.{name}") };
        (field, "is required")
    } else if text.starts_with("unknown field") {
        (path, "is not an accepted field")
    } else if at_root {
        return ApiError::bad_request("The request body must be a JSON object.");
    } else if text.starts_with("invalid type") {
        (path, "has the wrong type")
    } else if text.starts_with("invalid length") {
        (path, "has the wrong number of items")
    } else {
        (path, "has an invalid value")
    };
    ApiError::Validation(vec![FieldError::new(field, message)])
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Signup {
        email: String,
        age: u32,
    }

    fn fields(error: ApiError) -> Vec<FieldError> {
        match error {
            ApiError::Validation(errors) => errors,
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn field_problems_name_the_field_without_type_names() {
        let unknown = fields(parse::<Signup>(br#"{"email":"a@b","age":1,"role":"admin"}"#).unwrap_err());
        assert_eq!(unknown, [FieldError::new("role", "is not an accepted field")]);
        let missing = fields(parse::<Signup>(br#"{"email":"a@b"}"#).unwrap_err());
        assert_eq!(missing, [FieldError::new("age", "is required")]);
        let wrong = fields(parse::<Signup>(br#"{"email":"a@b","age":"x"}"#).unwrap_err());
        assert_eq!(wrong, [FieldError::new("age", "has the wrong type")]);
    }

    #[test]
    fn broken_json_and_non_objects_are_bad_requests() {
        for body in [&b"{"[..], b"", b"{\"email\":", b"nul", br#"{"email":"a","age":1} trailing"#] {
            assert!(matches!(parse::<Signup>(body), Err(ApiError::BadRequest(_))), "{body:?}");
        }
        assert!(matches!(parse::<Signup>(b"[1,2]"), Err(ApiError::BadRequest(_))));
    }
}

/// For `#[serde(default, deserialize_with = …)]` on an `Option<Option<String>>`
/// member: `Some(None)` for an explicit `null`, `None` when the member is
/// absent (which a plain `Option` cannot tell apart).
pub fn explicit_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    <Option<String> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// `?limit=&cursor=` of a list route: `limit` defaults to 20 and is
/// clamped to 100; a non-integer, zero or negative limit, or a cursor this
/// server did not make, is 400. Other query parameters are ignored. Values
/// are taken as sent (no trimming), as the OpenAPI parameters say.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u32,
    pub after: Option<uuid::Uuid>,
}

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
            .map_err(|_| ApiError::bad_request("The query string is malformed."))?;
        let mut page = Page { limit: DEFAULT_PAGE, after: None };
        let mut errors = Vec::new();
        for (name, value) in pairs {
            match name.as_str() {
                "limit" => match value.parse::<i64>() {
                    Ok(limit) if limit >= 1 => {
                        page.limit = u32::try_from(limit.min(i64::from(MAX_PAGE))).unwrap_or(MAX_PAGE)
                    }
                    Ok(_) => errors.push(FieldError::new("limit", "must be at least 1")),
                    Err(_) => errors.push(FieldError::new("limit", "must be a whole number")),
                },
                "cursor" => match decode_cursor(&value) {
                    Some(after) => page.after = Some(after),
                    None => errors.push(FieldError::new("cursor", "is not a cursor from this API")),
                },
                _ => {}
            }
        }
        if errors.is_empty() { Ok(page) } else { Err(ApiError::Validation(errors)) }
    }
}

/// An opaque cursor for "items after this id".
pub fn encode_cursor(id: uuid::Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(text: &str) -> Option<uuid::Uuid> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
    uuid::Uuid::from_slice(&bytes).ok()
}

impl utoipa::IntoParams for Page {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::{
            ObjectBuilder, Type,
            path::{ParameterBuilder, ParameterIn},
        };
        let limit = ParameterBuilder::new()
            .name("limit")
            .parameter_in(ParameterIn::Query)
            .description(Some("Items per page: default 20; values above 100 count as 100."))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
                    .minimum(Some(1))
                    .maximum(Some(i64::MAX)),
            ))
            .build();
        let cursor = ParameterBuilder::new()
            .name("cursor")
            .parameter_in(ParameterIn::Query)
            .description(Some("The `next_cursor` of the previous page; opaque."))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    // 16 bytes in unpadded base64url: the last character
                    // carries 2 bits of data and 4 of padding, which must be zero.
                    .pattern(Some("^[A-Za-z0-9_-]{21}[AQgw]$")),
            ))
            .build();
        vec![limit, cursor]
    }
}

/// A list response: `{items, next_cursor}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    /// From up to `limit + 1` rows: the extra one only says there is more.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, id_of: impl Fn(&T) -> uuid::Uuid) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|last| encode_cursor(id_of(last))) } else { None };
        Self { items: rows, next_cursor }
    }
}
