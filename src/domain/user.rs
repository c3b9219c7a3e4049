use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Department, Email, Role, UserName};

/// A user as the API shows it. It has no password field at all, so no
/// serialisation of a `User` can leak one.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    /// As entered at sign-up, trimmed; unique without regard to case.
    pub email: String,
    /// Whether the address is proven: made by the CLI, `[bootstrap]` or a
    /// sign-in whose provider verified it (later also Rampart's own email
    /// verification). A provider sign-in is linked by email only to such an
    /// account.
    pub email_verified: bool,
    pub name: String,
    pub role: Role,
    #[schema(value_type = Option<String>, required = true)]
    pub department: Option<Department>,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// What creating a user needs; `password_hash` is a PHC string, or `None`
/// for accounts that sign in only through an identity provider.
#[derive(Debug)]
pub struct NewUser {
    pub email: Email,
    pub name: UserName,
    pub role: Role,
    pub department: Option<Department>,
    pub password_hash: Option<String>,
    /// See `User::email_verified`; false for a sign-up.
    pub email_verified: bool,
}
