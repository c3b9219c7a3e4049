//! Renders every error response as problem+json with the request id, and
//! logs the hidden cause of 5xx responses under that id.
//!
//! `ApiError` leaves a `Problem` in the response extensions; responses that
//! the framework or tower layers made themselves (405, 413 from the body
//! limit, 414/431 from the size checks) get the generic problem for their
//! status. Either way the body is replaced, so no library text gets out.

use axum::{
    body::Body,
    http::{HeaderValue, header},
    response::Response,
};

use crate::error::{PROBLEM_CONTENT_TYPE, Problem};
use crate::request_context::RequestId;

/// Gives an error response its problem+json body (see the module doc).
pub fn render(mut response: Response, request_id: &RequestId) -> Response {
    let status = response.status();
    let problem = match response.extensions_mut().remove::<Problem>() {
        Some(problem) => problem,
        None if status.is_client_error() || status.is_server_error() => {
            let is_problem = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|value| value.as_bytes() == PROBLEM_CONTENT_TYPE.as_bytes());
            if is_problem {
                return response;
            }
            Problem::for_status(status)
        }
        None => return response,
    };
    let request_id = request_id.as_str();
    if let Some(cause) = &problem.internal {
        tracing::error!(request_id, status = status.as_u16(), cause = %cause, "request failed");
    }
    let body = problem.to_body(request_id);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.body_mut() = Body::from(body);
    response
}
