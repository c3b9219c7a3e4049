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
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
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
    let Some(value) = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON object body into `T`, mapping every failure to a client
/// error. Every request body of the API is an object.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
            return Err(ApiError::bad_request(
                "The request body must be a JSON object.",
            ));
        }
        _ => return Err(ApiError::bad_request("The request body is not valid JSON.")),
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(value) => value,
        Err(error) => return Err(describe(&error)),
    };
    deserializer
        .end()
        .map_err(|_| ApiError::bad_request("The request body is not valid JSON."))?;
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
        let field = if at_root {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
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
        let unknown =
            fields(parse::<Signup>(br#"{"email":"a@b","age":1,"role":"admin"}"#).unwrap_err());
        assert_eq!(
            unknown,
            [FieldError::new("role", "is not an accepted field")]
        );
        let missing = fields(parse::<Signup>(br#"{"email":"a@b"}"#).unwrap_err());
        assert_eq!(missing, [FieldError::new("age", "is required")]);
        let wrong = fields(parse::<Signup>(br#"{"email":"a@b","age":"x"}"#).unwrap_err());
        assert_eq!(wrong, [FieldError::new("age", "has the wrong type")]);
    }

    #[test]
    fn broken_json_and_non_objects_are_bad_requests() {
        for body in [
            &b"{"[..],
            b"",
            b"{\"email\":",
            b"nul",
            br#"{"email":"a","age":1} trailing"#,
        ] {
            assert!(
                matches!(parse::<Signup>(body), Err(ApiError::BadRequest(_))),
                "{body:?}"
            );
        }
        assert!(matches!(
            parse::<Signup>(b"[1,2]"),
            Err(ApiError::BadRequest(_))
        ));
    }
}
