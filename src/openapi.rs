//! The OpenAPI 3.1 description of the public API, served at `/openapi.json`.
//!
//! Each route module registers a handler and its `#[utoipa::path]`
//! description in one call (`utoipa_axum::routes!`), so a route cannot be
//! added without its description, nor described without existing
//! (`tests/api/openapi.rs` checks both directions against the live router).
//! An operation's attribute states what is particular to it: its success
//! responses, the errors its handler returns, its parameters and its
//! security. `finish` then adds what the layer stack does to every route,
//! from the same rules the layers follow: `X-Request-Id` on every response,
//! the rate-limit fields and 429 where the route class is rate limited, 403
//! for a blocked client where it is blockable (`RouteClass`, declared by
//! the routers), 400/413/415 wherever a JSON body is read, 401 with `WWW-Authenticate` wherever credentials are looked at,
//! and the problem+json body of every error.
//!
//! The schema helpers below turn the domain rules (`PostTitle`, `Email`,
//! ...) into JSON Schema patterns; their unit tests run the parsers and the
//! patterns over the same inputs, so the document promises exactly what the
//! server accepts (schemathesis checks both ways).

use serde_json::{Map, Value, json};
use utoipa::{
    OpenApi,
    openapi::{
        KnownFormat, ObjectBuilder, SchemaFormat, Type,
        schema::{AnyOfBuilder, Schema, SchemaType},
    },
};

use crate::{
    domain::Department,
    error::{FieldError, ProblemBody},
    route_class::{RouteClass, RouteClasses},
};

/// The tag of each group of operations, in the order the docs page shows them.
pub mod tags {
    pub const OPS: &str = "operations";
    pub const AUTH: &str = "authentication";
    pub const USERS: &str = "users";
    pub const POSTS: &str = "posts";
    pub const ADMIN: &str = "admin";
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rampart",
        description = "A secure-by-default API server. Every error is RFC 9457 problem details \
                       (`application/problem+json`). Signed-in callers send `Authorization: Bearer <access JWT>` \
                       or the `rampart_session` cookie; cookie-authenticated POST, PUT, PATCH and DELETE requests \
                       also need `X-CSRF-Token`.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0")
    ),
    tags(
        (name = "operations", description = "Health and readiness, and this document."),
        (name = "authentication", description = "Sign-up, sign-in (tokens or a browser session), refresh, logout."),
        (name = "users", description = "The caller's own account, and user administration."),
        (name = "posts", description = "Posts: readable by everyone, written under the authorization policy."),
        (name = "admin", description = "The audit trail, blocked clients and traffic statistics (admins)."),
    ),
    components(schemas(ProblemBody, FieldError))
)]
struct ApiDoc;

/// The document the routes are added to: info, tags and shared schemas.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

// Security requirement names, as `#[utoipa::path(security(...))]` uses them.
// An operation open to guests lists `()` first.

const PROBLEM: &str = "application/problem+json";

/// The final document: `doc` (the routes' descriptions) plus what the layer
/// stack adds to every operation (see the module documentation), by the
/// route classes the routers declared, as the layers read them.
pub fn finish(doc: utoipa::openapi::OpenApi, classes: &RouteClasses) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    let Some(root) = doc.as_object_mut() else {
        return doc;
    };
    let components = root.entry("components").or_insert_with(|| json!({}));
    if let Some(components) = components.as_object_mut() {
        components.insert("securitySchemes".into(), security_schemes());
    }
    if let Some(paths) = root.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            let class = classes.classify(path);
            // One handler for several methods (forward auth) shares one
            // operationId; OpenAPI wants each unique, so the others get
            // their method appended.
            let ids: Vec<String> =
                item.values().filter_map(|operation| operation["operationId"].as_str().map(str::to_owned)).collect();
            for (method, operation) in item.iter_mut() {
                if let Some(operation) = operation.as_object_mut() {
                    complete_operation(class, method, operation);
                    if method != "get"
                        && let Some(Value::String(id)) = operation.get_mut("operationId")
                        && ids.iter().filter(|other| *other == id).count() > 1
                    {
                        id.push('_');
                        id.push_str(method);
                    }
                }
            }
        }
    }
    doc
}

fn security_schemes() -> Value {
    json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from `POST /auth/login` or `POST /auth/refresh`."
        },
        "cookie": {
            "type": "apiKey",
            "in": "cookie",
            "name": "rampart_session",
            "description": "The browser session from `POST /auth/session`."
        },
        "csrf": {
            "type": "apiKey",
            "in": "header",
            "name": "X-CSRF-Token",
            "description": "The `csrf_token` returned by `POST /auth/session`; required with the session cookie on \
                            POST, PUT, PATCH and DELETE (else 403). Bearer requests need none."
        }
    })
}

/// What the layers add to one operation.
fn complete_operation(class: RouteClass, method: &str, operation: &mut Map<String, Value>) {
    let has_body = operation.contains_key("requestBody");
    let looks_at_credentials = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|requirements| requirements.iter().any(|r| r.as_object().is_some_and(|r| !r.is_empty())));
    let unsafe_method = matches!(method, "post" | "put" | "patch" | "delete");
    let rate_limited = class.rate_limited();
    let blockable = class.blockable();

    let responses = operation.entry("responses").or_insert_with(|| json!({}));
    let Some(responses) = responses.as_object_mut() else { return };
    let mut add = |status: &str, description: &str| {
        let entry = responses.entry(status).or_insert_with(|| json!({ "description": description }));
        if let Some(entry) = entry.as_object_mut()
            && let Some(Value::String(existing)) = entry.get_mut("description")
            && !existing.contains(description)
        {
            // The route's own meaning first, then the layer's.
            existing.push_str(" Or: ");
            existing.push_str(description);
        }
    };
    if has_body {
        add("400", "The body is not a JSON object of the documented shape (see `errors`).");
        add("413", "The body is larger than `server.body_limit`.");
        add("415", "The body is not `application/json`.");
    }
    if looks_at_credentials {
        add("401", "The credentials sent are not valid (or are required here).");
        if unsafe_method {
            add("403", "A session-cookie request without the session's `X-CSRF-Token`.");
        }
    }
    if blockable {
        add("403", "The client is blocked.");
    }
    if rate_limited {
        add("429", "A rate limit is exhausted; retry after `Retry-After` seconds.");
    }
    add("500", "Something went wrong on the server; quote the request id when reporting it.");
    add("503", "The request took longer than `server.request_timeout`, or a backing service did not answer.");

    for (status, response) in responses.iter_mut() {
        let Some(response) = response.as_object_mut() else { continue };
        let code: u16 = status.parse().unwrap_or(0);
        if code >= 400 && !response.contains_key("content") {
            response
                .insert("content".into(), json!({ PROBLEM: { "schema": { "$ref": "#/components/schemas/Problem" } } }));
        }
        let headers = response.entry("headers").or_insert_with(|| json!({}));
        let Some(headers) = headers.as_object_mut() else { continue };
        headers.insert("X-Request-Id".into(), request_id_header());
        // 403 (a block), 413 (by Content-Length), 500 (a panic) and 503 (the
        // timeout) may come from layers outside the rate limiter, so only
        // the other answers always carry its fields.
        if rate_limited {
            let always = !matches!(code, 403 | 413 | 500 | 503);
            headers.insert("RateLimit-Policy".into(), rate_limit_policy_header(always));
            headers.insert("RateLimit".into(), rate_limit_header(always));
        }
        match code {
            401 if looks_at_credentials => {
                headers.insert("WWW-Authenticate".into(), www_authenticate_header());
            }
            429 => {
                headers.insert("Retry-After".into(), retry_after_header());
            }
            _ => {}
        }
        // A documented `Location` is always sent.
        if let Some(location) = headers.get_mut("Location").and_then(Value::as_object_mut) {
            location.insert("required".into(), Value::Bool(true));
        }
    }
}

fn request_id_header() -> Value {
    json!({
        "description": "The request's id: the client's `X-Request-Id` when it is 1..64 characters of \
                        `[A-Za-z0-9._-]`, else a new UUIDv7. Problem bodies repeat it as `request_id`.",
        "required": true,
        "schema": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" }
    })
}

fn rate_limit_policy_header(required: bool) -> Value {
    json!({
        "description": "The quota policies that applied (draft-ietf-httpapi-ratelimit-headers-10), e.g. \
                        `\"api\";q=30;w=60, \"global\";q=100;w=900`.",
        "required": required,
        "schema": { "type": "string" }
    })
}

fn rate_limit_header(required: bool) -> Value {
    json!({
        "description": "What is left of each policy: `r` requests remaining, `t` seconds until the quota is \
                        fully back, e.g. `\"api\";r=29;t=60`.",
        "required": required,
        "schema": { "type": "string" }
    })
}

fn retry_after_header() -> Value {
    json!({
        "description": "Seconds until one more request would be allowed.",
        "required": true,
        "schema": { "type": "integer", "minimum": 1 }
    })
}

fn www_authenticate_header() -> Value {
    json!({
        "description": "`Bearer realm=\"rampart\"`, with `error=\"invalid_token\"` when a token was sent and refused.",
        "required": true,
        "schema": { "type": "string", "pattern": "^Bearer realm=\"rampart\"" }
    })
}

// ----- Patterns for the domain rules -----------------------------------------------------------
//
// Written in the common subset of ECMA-262 (what JSON Schema means),
// Python's `re` (what schemathesis generates from) and Rust's `regex` (what
// the tests below check against the parsers).

/// What `str::trim` removes: Unicode White_Space.
const WHITESPACE: &str = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// White_Space that is not a control character.
const SPACES: &str = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// `char::is_control` (Unicode Cc).
const CONTROLS: &str = r"\x00-\x1f\x7f-\x9f";

/// Text that is trimmed, then must be 1..=`max` characters without control
/// characters (`PostTitle`, `UserName`, a block's reason).
pub fn trimmed_text_pattern(max: usize) -> String {
    let inner = max.saturating_sub(2);
    format!("^[{WHITESPACE}]*[^{CONTROLS}{SPACES}](?:[^{CONTROLS}]{{0,{inner}}}[^{CONTROLS}{SPACES}])?[{WHITESPACE}]*$")
}

fn string_schema(description: &str, pattern: String, max_length: Option<usize>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .max_length(max_length)
}

/// `PostTitle`.
pub fn post_title() -> Schema {
    string_schema(
        "1 to 200 characters after trimming surrounding whitespace; no control characters.",
        trimmed_text_pattern(200),
        None,
    )
    .into()
}

/// `PostBody`.
pub fn post_body() -> Schema {
    string_schema(
        "1 to 8000 characters, kept as written (line breaks are content); not only whitespace; no NUL.",
        format!("^[^\\x00]*[^\\x00{WHITESPACE}][^\\x00]*$"),
        Some(8000),
    )
    .into()
}

/// `UserName`.
pub fn user_name() -> Schema {
    string_schema(
        "1 to 100 characters after trimming surrounding whitespace; no control characters.",
        trimmed_text_pattern(100),
        None,
    )
    .into()
}

/// `Email`.
pub fn email() -> Schema {
    string_schema(
        "An email address: at most 254 characters, exactly one `@` with text on both sides, no spaces or control \
         characters (surrounding whitespace is trimmed). Unique without regard to case.",
        format!("^[{WHITESPACE}]*[^@{CONTROLS}{SPACES}]+@[^@{CONTROLS}{SPACES}]+[{WHITESPACE}]*$"),
        Some(254),
    )
    .into()
}

/// `Password` (new passwords only; sign-in takes any string).
pub fn new_password() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "15 to 128 characters (NIST SP 800-63B-4), no composition rules. Also refused, with 400: a commonly \
             used password, one short unit repeated, a straight sequence (`123456789012345`), and a password that \
             contains the account's email address (or its local part) or name.",
        ))
        .min_length(Some(15))
        .max_length(Some(128))
        .into()
}

/// A department as an admin sets it: `null` or only whitespace clears it.
pub fn department() -> Schema {
    let max = Department::MAX_CHARS;
    let inner = max.saturating_sub(2);
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Null]))
        .description(Some(format!(
            "At most {max} characters after trimming, no control characters anywhere; `null`, an empty or an \
             all-space string clears the department."
        )))
        .pattern(Some(format!(
            "^[{SPACES}]*(?:[^{CONTROLS}{SPACES}](?:[^{CONTROLS}]{{0,{inner}}}[^{CONTROLS}{SPACES}])?)?[{SPACES}]*$"
        )))
        .into()
}

/// A block's reason; `null` or absent means "blocked by an admin".
pub fn block_reason() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Null]))
        .description(Some("1 to 200 characters after trimming, no control characters; default `blocked by an admin`."))
        .pattern(Some(trimmed_text_pattern(200)))
        .into()
}

const UNIT: &str = "(?:ms|s|m|h|d)";

/// A block's duration (`HumanDuration`, not zero).
pub fn block_duration() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Null]))
        .description(Some(
            "One or more `<integer><unit>` parts, units `ms`, `s`, `m`, `h`, `d` (`15m`, `1h30m`), not zero; \
             longer than 3650 days counts as 3650 days. Default: `defense.block_for`.",
        ))
        .pattern(Some(format!("^[{WHITESPACE}]*(?:[0-9]+{UNIT})*0*[1-9][0-9]*{UNIT}(?:[0-9]+{UNIT})*[{WHITESPACE}]*$")))
        .into()
}

/// An IPv4 or IPv6 address or CIDR network, as `defense::parse_network` takes it.
pub fn ip_network() -> Schema {
    let octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let v4 = format!("{octet}(?:\\.{octet}){{3}}");
    // RFC 3986's IPv6address.
    let h16 = "[0-9A-Fa-f]{1,4}";
    let ls32 = format!("(?:{h16}:{h16}|{v4})");
    let v6 = [
        format!("(?:{h16}:){{6}}{ls32}"),
        format!("::(?:{h16}:){{5}}{ls32}"),
        format!("(?:{h16})?::(?:{h16}:){{4}}{ls32}"),
        format!("(?:(?:{h16}:){{0,1}}{h16})?::(?:{h16}:){{3}}{ls32}"),
        format!("(?:(?:{h16}:){{0,2}}{h16})?::(?:{h16}:){{2}}{ls32}"),
        format!("(?:(?:{h16}:){{0,3}}{h16})?::{h16}:{ls32}"),
        format!("(?:(?:{h16}:){{0,4}}{h16})?::{ls32}"),
        format!("(?:(?:{h16}:){{0,5}}{h16})?::{h16}"),
        format!("(?:(?:{h16}:){{0,6}}{h16})?::"),
    ]
    .join("|");
    let pattern = format!(
        "^[{WHITESPACE}]*(?:{v4}(?:/(?:3[0-2]|[12]?[0-9]))?|(?:{v6})(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)\
         [{WHITESPACE}]*$"
    );
    string_schema(
        "An IPv4 or IPv6 address, or a CIDR network (`192.0.2.0/24`, `2001:db8::/64`); stored normalised. A block \
         that would include the caller's own address is 409.",
        pattern,
        None,
    )
    .into()
}

fn formatted(format: KnownFormat) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(format)))
}

/// `time`'s RFC 3339 output.
pub fn date_time() -> Schema {
    formatted(KnownFormat::DateTime).into()
}

/// An RFC 3339 time or `null`.
pub fn nullable_date_time() -> Schema {
    AnyOfBuilder::new().item(formatted(KnownFormat::DateTime)).item(ObjectBuilder::new().schema_type(Type::Null)).into()
}

/// An IPv4 or IPv6 address.
pub fn ip_address() -> Schema {
    AnyOfBuilder::new().item(formatted(KnownFormat::Ipv4)).item(formatted(KnownFormat::Ipv6)).into()
}

/// An IP address as the audit trail records it, or `null`.
pub fn nullable_ip_address() -> Schema {
    AnyOfBuilder::new()
        .item(formatted(KnownFormat::Ipv4))
        .item(formatted(KnownFormat::Ipv6))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

#[cfg(test)]
mod tests {
    use regex::Regex;
    use secrecy::SecretString;

    use super::*;
    use crate::{
        defense::parse_network,
        domain::{Email, PostBody, PostTitle, UserName},
    };

    fn pattern_of(schema: Schema) -> Regex {
        let Schema::Object(object) = schema else { panic!("an object schema") };
        Regex::new(object.pattern.as_deref().expect("a pattern")).expect("the pattern compiles")
    }

    /// Strings built from characters that sit on the rules' edges.
    fn samples() -> Vec<String> {
        let atoms = [
            "a",
            "Z",
            "é",
            "@",
            " ",
            "\t",
            "\n",
            "\u{85}",
            "\u{a0}",
            "\u{2003}",
            "\u{3000}",
            "\u{0}",
            "\u{1}",
            "\u{7f}",
            "\u{9f}",
            "\u{feff}",
            "\u{1f600}",
            ".",
            "/",
            ":",
            "0",
            "1",
            "9",
            "m",
            "s",
            "h",
            "d",
        ];
        let mut out = vec![String::new()];
        for a in atoms {
            out.push(a.to_owned());
            for b in atoms {
                out.push(format!("{a}{b}"));
                for c in ["a", " ", "\n", "@", "\u{0}", "1", "s"] {
                    out.push(format!("{a}{b}{c}"));
                    out.push(format!("{c}{a}{b}{c}"));
                }
            }
        }
        out
    }

    fn agree(name: &str, pattern: &Regex, max_length: Option<usize>, parses: impl Fn(&str) -> bool, extra: &[String]) {
        for text in samples().iter().chain(extra) {
            let by_schema = pattern.is_match(text) && max_length.is_none_or(|max| text.chars().count() <= max);
            assert_eq!(by_schema, parses(text), "{name}: schema and parser disagree on {text:?}");
        }
    }

    fn lengths(unit: &str, around: usize) -> Vec<String> {
        (around.saturating_sub(2)..=around + 2)
            .flat_map(|n| {
                let core = unit.repeat(n);
                [core.clone(), format!("  {core} "), format!("\n{core}\t"), format!("{core}\u{3000}")]
            })
            .collect()
    }

    #[test]
    fn titles_names_and_reasons_match_their_parsers() {
        agree("title", &pattern_of(post_title()), None, |t| PostTitle::parse(t).is_ok(), &lengths("t", 200));
        agree("name", &pattern_of(user_name()), None, |t| UserName::parse(t).is_ok(), &lengths("é", 100));
    }

    #[test]
    fn bodies_match_their_parser() {
        agree("body", &pattern_of(post_body()), Some(8000), |t| PostBody::parse(t).is_ok(), &lengths("b\n", 4000));
    }

    #[test]
    fn emails_match_their_parser() {
        let mut extra = lengths("a", 250).into_iter().map(|t| format!("{t}@x.y")).collect::<Vec<_>>();
        extra.extend(["a@b".into(), " a@b ".into(), "a@@b".into(), "a b@c".into(), "@b".into(), "a@".into()]);
        agree("email", &pattern_of(email()), Some(254), |t| Email::parse(t).is_ok(), &extra);
    }

    #[test]
    fn networks_match_the_block_parser() {
        let extra: Vec<String> = [
            "192.0.2.9",
            "192.0.2.0/24",
            "0.0.0.0/0",
            "255.255.255.255/32",
            "256.1.1.1",
            "1.2.3.4/33",
            "01.2.3.4",
            "1.2.3",
            "::",
            "::1",
            "::/0",
            "2001:db8::/64",
            "2001:db8::1/128",
            "2001:db8::1/129",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "::ffff:192.0.2.1",
            "::ffff:192.0.2.1/120",
            "fe80::1%eth0",
            "12345::",
            "1:2:3:4:5:6:1.2.3.4",
            " 10.0.0.1 ",
            "\t::1\n",
            "10.0.0.1/",
            "/8",
            "1.2.3.4 /8",
            "ABCD:ef01::",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        agree("ip", &pattern_of(ip_network()), None, |t| parse_network(t).is_some(), &extra);
    }

    #[test]
    fn reasons_and_durations_match_the_block_rules() {
        agree(
            "reason",
            &pattern_of(block_reason()),
            None,
            |t| {
                let t = t.trim();
                !t.is_empty() && t.chars().count() <= 200 && !t.chars().any(char::is_control)
            },
            &lengths("r", 200),
        );
        let durations: Vec<String> = [
            "15m",
            "1h30m",
            "500ms",
            "0s",
            "0m0s",
            "00h01s",
            " 1d ",
            "1",
            "m",
            "1x",
            "1msx",
            "1m5",
            "1 m",
            "10d0s",
            "0ms1ms",
            "99999999999999999999999999d",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        agree(
            "duration",
            &pattern_of(block_duration()),
            None,
            |t| crate::routes::blocks::parse_block_duration(t).is_ok(),
            &durations,
        );
    }

    #[test]
    fn departments_match_the_admin_rule() {
        agree(
            "department",
            &pattern_of(department()),
            None,
            // The schema documents the subset without control characters:
            // the parser also takes whitespace that includes some (`"\t"`,
            // `" \n"`) as "no department", which the document does not offer.
            |t| Department::parse(t).is_ok() && !t.chars().any(char::is_control),
            &lengths("d", Department::MAX_CHARS),
        );
    }

    #[test]
    fn passwords_are_bounded_as_documented() {
        let email = Email::parse("ada@example.com").expect("email");
        let name = UserName::parse("Ada").expect("name");
        let ok = |t: &str| crate::domain::Password::parse(SecretString::from(t), &email, &name).is_ok();
        assert!(!ok(&"q".repeat(14)) && ok("a quiet tuesday of turnips"));
    }
}
