//! A PostgreSQL schema of its own for one test: created on a connection of
//! its own, named by a URL whose `options` set the search path, dropped at
//! the end. Shared by `tests/store.rs` and `tests/api` (`#[path]` modules).

use sqlx::{Connection, PgConnection};

pub struct TestSchema {
    admin_url: String,
    name: String,
    /// The database URL that puts everything in this schema.
    pub url: String,
}

impl TestSchema {
    /// `prefix` is letters and `_`; a random suffix keeps runs apart.
    pub async fn create(admin_url: &str, prefix: &str) -> Self {
        let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(admin_url).await.expect("cannot reach PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}"))).execute(&mut admin).await.unwrap();
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{name}");
        Self { admin_url: admin_url.to_owned(), name, url }
    }

    pub async fn drop(self) {
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("cannot reach PostgreSQL");
        let statement = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.unwrap();
    }
}
