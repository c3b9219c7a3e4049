use serde::{Deserialize, Serialize};

use super::text_enum::text_enum;

text_enum! {
    /// A signed-in user's role. A caller without credentials is a guest,
    /// which is not a role a user can hold.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Role {
        Admin = "admin",
        Manager = "manager",
        User = "user",
    }
    unknown = "must be one of admin, manager, user";
}
