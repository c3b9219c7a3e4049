//! Validated input types. A value of these types has passed its rules, so
//! the code after the edge never re-checks (or forgets to check) them.
//!
//! Constructors return a plain message on failure; callers attach the field
//! name (`FieldError`) and turn it into a 400 with `errors`. No type here imports axum or
//! the store.

mod api_key;
mod audit;
mod department;
mod email;
mod field_error;
mod password;
mod post;
mod role;
mod sign_in;
mod text_enum;
mod user;
mod user_name;

pub use api_key::{API_KEY_PREFIX, ApiKeyName, PresentedKey, Scope, Scopes};
pub use audit::{AuditEvent, AuditKind, AuditPriority, Outcome};
pub use department::Department;
pub use email::Email;
pub use field_error::FieldError;
pub use password::{Password, normalize_password};
pub use post::{Post, PostBody, PostTitle, PostWithAuthor};
pub use role::Role;
pub use sign_in::SignInMethod;
pub(crate) use text_enum::text_enum;
pub use user::{NewUser, User};
pub use user_name::UserName;
