//! Authorization: "may this caller do this action on this resource?"
//!
//! Handlers ask `authorize` and contain no role checks of their own. This
//! first version encodes API.md's users table directly; the Cedar policy
//! file (schema, default policy, operator overrides) replaces the body of
//! `decide` without changing any caller.

use crate::{auth::principal::Caller, domain::Role, error::ApiError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read or change one's own profile and password.
    ManageOwnAccount,
    ListUsers,
    UpdateUser,
    DeleteUser,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ManageOwnAccount => "manage_own_account",
            Action::ListUsers => "list_users",
            Action::UpdateUser => "update_user",
            Action::DeleteUser => "delete_user",
        }
    }
}

fn decide(role: Role, action: Action) -> bool {
    match action {
        Action::ManageOwnAccount => true,
        Action::ListUsers | Action::UpdateUser | Action::DeleteUser => role == Role::Admin,
    }
}

/// `Ok` when allowed; 401 for guests and 403 for signed-in callers otherwise.
pub fn authorize(caller: &Caller, action: Action) -> Result<(), ApiError> {
    match caller {
        Caller::Guest => Err(ApiError::Unauthorized { token_sent: false }),
        Caller::User(principal) if decide(principal.role, action) => Ok(()),
        Caller::User(_) => Err(ApiError::forbidden("You are not allowed to do this.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admins_administer_users() {
        for action in [Action::ListUsers, Action::UpdateUser, Action::DeleteUser] {
            assert!(decide(Role::Admin, action));
            assert!(!decide(Role::Manager, action));
            assert!(!decide(Role::User, action));
        }
        for role in [Role::Admin, Role::Manager, Role::User] {
            assert!(decide(role, Action::ManageOwnAccount));
        }
        assert!(matches!(authorize(&Caller::Guest, Action::ManageOwnAccount), Err(ApiError::Unauthorized { .. })));
    }
}
