//! Least-privilege roles for one database, set up only when asked: roles are server-wide, so
//! creating them is never a side effect of migrating.

use strata_store::Error;

use crate::error::from_sqlx;

/// The names of the two roles a database's Strata schema grants to. Defaults: `strata_writer` and
/// `strata_migrator`. Give each application database names of its own on a shared server: a role
/// is the server's, so a login granted `strata_writer` for one database would otherwise also be a
/// writer of every other database that uses that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleNames {
    /// The application's role: reads and pushes events (through the push functions only), runs
    /// projections and caches. Grant it to the login roles your services use.
    pub writer: String,
    /// Applies migrations and administers (instance removal, mirroring). Grant it to the login
    /// role that runs `strata migrate`.
    pub migrator: String,
}

impl Default for RoleNames {
    fn default() -> Self {
        RoleNames {
            writer: "strata_writer".into(),
            migrator: "strata_migrator".into(),
        }
    }
}

/// Which of the two roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RoleKind {
    /// [`RoleNames::writer`].
    Writer,
    /// [`RoleNames::migrator`].
    Migrator,
}

impl RoleKind {
    /// `writer` or `migrator`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleKind::Writer => "writer",
            RoleKind::Migrator => "migrator",
        }
    }
}

/// What [`set_up_roles`] did for one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSetUp {
    /// Which role.
    pub kind: RoleKind,
    /// Its name.
    pub role: String,
    /// Whether this call created it. A role that already existed may belong to another database
    /// on the same server: the caller should make sure that sharing it is meant.
    pub created: bool,
}

/// Creates the writer and migrator roles that do not exist yet (`NOLOGIN`), records them as this
/// database's roles, and grants them their rights here; a role this database named before under
/// the same kind loses its rights here. Idempotent. Needs a connection allowed to create roles
/// (`CREATEROLE`) and owning the schema; run it after [`crate::migrate`], which from then on keeps
/// the grants current as the schema grows.
///
/// The writer cannot insert, update or delete events or unique constraints itself: events enter
/// only through the push functions. See `docs/schema.md`, "Roles".
pub async fn set_up_roles(pool: &sqlx::PgPool, names: &RoleNames) -> Result<Vec<RoleSetUp>, Error> {
    for name in [&names.writer, &names.migrator] {
        check_role_name(name)?;
    }
    if names.writer == names.migrator {
        return Err(Error::invalid_input(
            "the writer and the migrator must be different roles",
        ));
    }
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT r_kind, r_role_name, r_created FROM eventstore.set_up_roles($1, $2)",
    )
    .bind(&names.writer)
    .bind(&names.migrator)
    .fetch_all(pool)
    .await
    .map_err(|err| from_sqlx("setting up roles", err))?;
    Ok(rows
        .into_iter()
        .map(|(kind, role, created)| RoleSetUp {
            kind: if kind == "writer" {
                RoleKind::Writer
            } else {
                RoleKind::Migrator
            },
            role,
            created,
        })
        .collect())
}

/// Role names Strata creates: lowercase identifiers that need no quoting, and not in the `pg_`
/// namespace PostgreSQL reserves.
fn check_role_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let well_formed = name.len() <= 63
        && chars
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !well_formed || name.starts_with("pg_") {
        return Err(Error::invalid_input(format!(
            "invalid role name {name:?}: 1 to 63 characters of [a-z0-9_], starting with a letter \
             or _, and not starting with pg_"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_identifiers() {
        for good in ["strata_writer", "app_1", "_x"] {
            assert!(check_role_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Writer", "pg_writer", "a-b", "1x", &"x".repeat(64)] {
            assert!(check_role_name(bad).is_err(), "{bad}");
        }
    }
}
