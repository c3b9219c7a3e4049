use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// A post as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema, sqlx::FromRow)]
pub struct Post {
    pub id: Uuid,
    pub title: String,
    pub body: String,
    pub author_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// A post with what authorization needs to know about its author.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PostWithAuthor {
    #[sqlx(flatten)]
    pub post: Post,
    pub author_department: Option<super::Department>,
    pub author_role: Option<super::Role>,
}

/// A title: 1..=200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostTitle(String);

impl PostTitle {
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let title = input.trim();
        if title.is_empty() {
            return Err("is required");
        }
        if title.chars().count() > 200 {
            return Err("must be at most 200 characters");
        }
        if title.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(title.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A body: 1..=8000 characters, kept as written (line breaks are content),
/// but not only whitespace, and no NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostBody(String);

impl PostBody {
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        if input.trim().is_empty() {
            return Err("is required");
        }
        if input.chars().count() > 8000 {
            return Err("must be at most 8000 characters");
        }
        if input.contains('\0') {
            return Err("must not contain NUL characters");
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_bodies_have_bounds() {
        assert_eq!(PostTitle::parse("  Hello ").map(|t| t.0), Ok("Hello".into()));
        assert!(PostTitle::parse(" ").is_err());
        assert!(PostTitle::parse(&"t".repeat(200)).is_ok());
        assert!(PostTitle::parse(&"t".repeat(201)).is_err());
        assert!(PostBody::parse("line one\nline two").is_ok());
        assert!(PostBody::parse("\n \t").is_err());
        assert!(PostBody::parse(&"b".repeat(8000)).is_ok());
        assert!(PostBody::parse(&"b".repeat(8001)).is_err());
    }
}
