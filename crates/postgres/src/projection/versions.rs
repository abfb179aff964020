//! Versions of versioned projections on PostgreSQL: their records (`projections.versions`),
//! their tables, and the views under the declared names that a switch replaces in one
//! transaction.
//!
//! Every operation that changes a version takes the projection's switch lock exclusively
//! (`projections.switch_key`), which every batch holds shared: it waits for the batches in flight
//! and no batch overlaps it. Table names come from the projection's code and were checked
//! against `[a-z_][a-z0-9_]*` (optionally schema-qualified) at registration, so they are written
//! into the DDL as they are.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use strata_projection::{
    CurrentState, ProjectionError, ProjectionVersion, VersionOperation, VersionSetup, VersionState,
    physical_table,
};

use crate::pooling::Pooled;
use crate::projection::rows::{STATE_COLUMNS, StateRow, decode_state};
use crate::projection::{corrupt, store_error};

/// How long a switch waits for a lock (the batches in flight, readers of a view it replaces)
/// before it gives up and is tried again: readers queue behind a waiting switch, so it must not
/// wait long.
const SWITCH_LOCK_TIMEOUT: &str = "5s";

/// A switch in progress on PostgreSQL: a transaction holding the projection's switch lock
/// exclusively. Dropping it rolls the transaction back.
#[derive(Debug)]
pub struct PgSwitch {
    tx: Transaction<'static, Postgres>,
    projection: String,
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    projection_name: String,
    version: i32,
    state: String,
    tables: Vec<String>,
    created_at: DateTime<Utc>,
    switched_at: Option<DateTime<Utc>>,
    retired_at: Option<DateTime<Utc>>,
}

const VERSION_COLUMNS: &str =
    "projection_name, version, state, tables, created_at, switched_at, retired_at";

impl VersionRow {
    fn decode(self) -> Result<ProjectionVersion, ProjectionError> {
        Ok(ProjectionVersion {
            version: u32::try_from(self.version).map_err(|err| corrupt("version", err))?,
            state: VersionState::parse(&self.state)
                .ok_or_else(|| corrupt("version state", &self.state))?,
            projection: self.projection_name,
            tables: self.tables,
            created_at: self.created_at,
            switched_at: self.switched_at,
            retired_at: self.retired_at,
        })
    }
}

/// A transaction holding `projection`'s switch lock exclusively.
async fn locked(pool: Pooled<'_>, projection: &str) -> Result<PgSwitch, ProjectionError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|err| store_error("starting a version change", err))?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{SWITCH_LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await
        .map_err(|err| store_error("starting a version change", err))?;
    sqlx::query("SELECT pg_advisory_xact_lock(projections.switch_key($1))")
        .bind(projection)
        .execute(&mut *tx)
        .await
        .map_err(|err| store_error("waiting for a projection's batches to finish", err))?;
    Ok(PgSwitch {
        tx,
        projection: projection.to_owned(),
    })
}

/// The versions of `projection`, locked for update.
async fn versions_for_update(
    switch: &mut PgSwitch,
) -> Result<Vec<ProjectionVersion>, ProjectionError> {
    let rows: Vec<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM projections.versions WHERE projection_name = $1 \
         ORDER BY version FOR UPDATE"
    ))
    .bind(&switch.projection)
    .fetch_all(&mut *switch.tx)
    .await
    .map_err(|err| store_error("reading a projection's versions", err))?;
    rows.into_iter().map(VersionRow::decode).collect()
}

fn find(
    versions: &[ProjectionVersion],
    projection: &str,
    version: u32,
) -> Result<ProjectionVersion, ProjectionError> {
    versions
        .iter()
        .find(|record| record.version == version)
        .cloned()
        .ok_or_else(|| ProjectionError::UnknownVersion {
            projection: projection.to_owned(),
            version,
        })
}

async fn execute(
    switch: &mut PgSwitch,
    sql: &str,
    context: &'static str,
) -> Result<(), ProjectionError> {
    sqlx::query(sql)
        .execute(&mut *switch.tx)
        .await
        .map(drop)
        .map_err(|err| store_error(context, err))
}

async fn commit(switch: PgSwitch, context: &'static str) -> Result<(), ProjectionError> {
    switch
        .tx
        .commit()
        .await
        .map_err(|err| store_error(context, err))
}

async fn set_state(
    switch: &mut PgSwitch,
    version: u32,
    state: VersionState,
) -> Result<ProjectionVersion, ProjectionError> {
    let stamp = match state {
        VersionState::Live => ", switched_at = now()",
        VersionState::Retired => ", retired_at = now()",
        VersionState::Building | VersionState::Dropped => "",
    };
    let row: VersionRow = sqlx::query_as(&format!(
        "UPDATE projections.versions SET state = $3{stamp} \
         WHERE projection_name = $1 AND version = $2 RETURNING {VERSION_COLUMNS}"
    ))
    .bind(&switch.projection)
    .bind(version as i32)
    .bind(state.as_str())
    .fetch_one(&mut *switch.tx)
    .await
    .map_err(|err| store_error("recording a version's state", err))?;
    row.decode()
}

/// Creates a version's tables and their indexes, when missing.
async fn create_tables(switch: &mut PgSwitch, setup: &VersionSetup) -> Result<(), ProjectionError> {
    for table in &setup.tables {
        execute(
            switch,
            &format!(
                "CREATE TABLE IF NOT EXISTS {} ({})",
                table.physical, table.columns
            ),
            "creating a projection version's table",
        )
        .await?;
        let bare = unqualified(&table.physical);
        for (number, index) in table.indexes.iter().enumerate() {
            execute(
                switch,
                &format!(
                    "CREATE INDEX IF NOT EXISTS {bare}_{number} ON {} {index}",
                    table.physical
                ),
                "creating an index of a projection version's table",
            )
            .await?;
        }
    }
    Ok(())
}

/// The table part of a possibly schema-qualified name, as `ALTER TABLE … RENAME TO` and index
/// names want it.
fn unqualified(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(_, table)| table)
}

pub(super) async fn prepare(
    pool: Pooled<'_>,
    setup: &VersionSetup,
) -> Result<ProjectionVersion, ProjectionError> {
    let mut switch = locked(pool, &setup.projection).await?;
    let versions = versions_for_update(&mut switch).await?;
    if let Some(known) = versions
        .iter()
        .find(|record| record.version == setup.version)
    {
        if known.state.is_applied() {
            create_tables(&mut switch, setup).await?;
        }
        let known = known.clone();
        commit(switch, "setting a projection version up").await?;
        return Ok(known);
    }
    let ran_unversioned: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM projections.registry WHERE projection_name = $1) \
             OR EXISTS (SELECT FROM projections.current_states WHERE projection_name = $1)",
    )
    .bind(&setup.projection)
    .fetch_one(&mut *switch.tx)
    .await
    .map_err(|err| store_error("looking for an unversioned projection", err))?;
    if versions.is_empty() && ran_unversioned {
        execute_insert(&mut switch, 0, &setup.projection, VersionState::Live, &[]).await?;
    }
    let first = versions.is_empty() && !ran_unversioned;
    create_tables(&mut switch, setup).await?;
    let tables: Vec<String> = setup
        .tables
        .iter()
        .map(|table| table.name.clone())
        .collect();
    let state = if first {
        VersionState::Live
    } else {
        VersionState::Building
    };
    let pair = strata_projection::versioned_name(&setup.projection, setup.version);
    let record = execute_insert(&mut switch, setup.version, &pair, state, &tables).await?;
    if first {
        point_views(&mut switch, &record).await?;
    }
    commit(switch, "setting a projection version up").await?;
    Ok(record)
}

async fn execute_insert(
    switch: &mut PgSwitch,
    version: u32,
    pair: &str,
    state: VersionState,
    tables: &[String],
) -> Result<ProjectionVersion, ProjectionError> {
    let row: VersionRow = sqlx::query_as(&format!(
        "INSERT INTO projections.versions \
         (projection_name, version, pair_name, state, tables, switched_at) \
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $4 = 'live' THEN now() END) \
         RETURNING {VERSION_COLUMNS}"
    ))
    .bind(&switch.projection)
    .bind(version as i32)
    .bind(pair)
    .bind(state.as_str())
    .bind(tables)
    .fetch_one(&mut *switch.tx)
    .await
    .map_err(|err| store_error("recording a projection version", err))?;
    row.decode()
}

/// What kind of relation `name` is: `r` a table, `p` a partitioned table, `v` a view; `None`
/// when there is none.
async fn relation_kind(switch: &mut PgSwitch, name: &str) -> Result<Option<i8>, ProjectionError> {
    sqlx::query_scalar::<_, i8>(
        "SELECT relkind::\"char\" FROM pg_class WHERE oid = to_regclass($1)",
    )
    .bind(name)
    .fetch_optional(&mut *switch.tx)
    .await
    .map_err(|err| store_error("looking up a read-model relation", err))
}

/// One privilege a role holds on a read-model relation.
struct Grant {
    privilege: String,
    /// A quoted role name, or `PUBLIC`.
    grantee: String,
}

impl Grant {
    /// The statement that gives the same privilege on `relation`.
    fn on(&self, relation: &str) -> String {
        format!("GRANT {} ON {relation} TO {}", self.privilege, self.grantee)
    }
}

/// Who may do what with the relation `name`, to carry over to its successor: a view created by
/// a switch starts with no grants, and a reader role granted `SELECT` on the stable name must
/// keep it.
async fn grants_of(switch: &mut PgSwitch, name: &str) -> Result<Vec<Grant>, ProjectionError> {
    let grants: Vec<(String, String)> = sqlx::query_as(
        "SELECT privilege_type, \
                CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE quote_ident(grantee::regrole::text) END \
         FROM pg_class, aclexplode(relacl) \
         WHERE oid = to_regclass($1) AND grantee <> relowner",
    )
    .bind(name)
    .fetch_all(&mut *switch.tx)
    .await
    .map_err(|err| store_error("reading the grants of a read-model view", err))?;
    Ok(grants
        .into_iter()
        .map(|(privilege, grantee)| Grant { privilege, grantee })
        .collect())
}

/// Creates the views under `record`'s declared names over its tables, replacing views there,
/// with the grants the replaced views had.
async fn point_views(
    switch: &mut PgSwitch,
    record: &ProjectionVersion,
) -> Result<(), ProjectionError> {
    for table in &record.tables {
        let mut grants = Vec::new();
        match relation_kind(switch, table).await? {
            None => {}
            Some(kind) if kind == b'v' as i8 => {
                grants = grants_of(switch, table).await?;
                execute(
                    switch,
                    &format!("DROP VIEW {table}"),
                    "replacing a read-model view",
                )
                .await?;
            }
            Some(_) => {
                return Err(ProjectionError::InvalidProjection {
                    name: record.projection.clone(),
                    reason: format!(
                        "{table} is a table, not the view a versioned projection reads through: \
                         rename or drop it, or let the projection run unversioned"
                    ),
                });
            }
        }
        let physical = physical_table(table, record.version);
        execute(
            switch,
            &format!("CREATE VIEW {table} AS SELECT * FROM {physical}"),
            "creating a read-model view",
        )
        .await?;
        for grant in grants {
            execute(switch, &grant.on(table), "granting on a read-model view").await?;
        }
    }
    Ok(())
}

pub(super) async fn list(
    pool: Pooled<'_>,
    projection: Option<&str>,
) -> Result<Vec<ProjectionVersion>, ProjectionError> {
    let rows: Vec<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM projections.versions \
         WHERE $1::text IS NULL OR projection_name = $1 ORDER BY projection_name, version"
    ))
    .bind(projection)
    .fetch_all(pool)
    .await
    .map_err(|err| store_error("reading projection versions", err))?;
    rows.into_iter().map(VersionRow::decode).collect()
}

pub(super) async fn begin_switch(
    pool: Pooled<'_>,
    projection: &str,
) -> Result<PgSwitch, ProjectionError> {
    locked(pool, projection).await
}

pub(super) async fn switch_checkpoints(
    switch: &mut PgSwitch,
    pair: &str,
) -> Result<Vec<CurrentState>, ProjectionError> {
    let rows: Vec<StateRow> = sqlx::query_as(&format!(
        "SELECT {STATE_COLUMNS} FROM projections.current_states WHERE projection_name = $1"
    ))
    .bind(pair)
    .fetch_all(&mut *switch.tx)
    .await
    .map_err(|err| store_error("reading a version's checkpoints", err))?;
    rows.into_iter().map(decode_state).collect()
}

pub(super) async fn commit_switch(
    mut switch: PgSwitch,
    version: u32,
) -> Result<ProjectionVersion, ProjectionError> {
    let projection = switch.projection.clone();
    let versions = versions_for_update(&mut switch).await?;
    let target = find(&versions, &projection, version)?;
    VersionOperation::TAKE_OVER.check(&target)?;
    let live = versions
        .iter()
        .find(|record| record.state == VersionState::Live)
        .cloned();
    let mut grants = Vec::new();
    if let Some(live) = &live {
        if live.version == 0 {
            // The unversioned tables become version 0's, under `name_v0`.
            let mut renamed = Vec::new();
            for table in &target.tables {
                if matches!(relation_kind(&mut switch, table).await?, Some(kind) if kind == b'r' as i8 || kind == b'p' as i8)
                {
                    grants.extend(
                        grants_of(&mut switch, table)
                            .await?
                            .into_iter()
                            .map(|grant| (table.clone(), grant)),
                    );
                    let to = physical_table(unqualified(table), 0);
                    execute(
                        &mut switch,
                        &format!("ALTER TABLE {table} RENAME TO {to}"),
                        "renaming an unversioned read-model table",
                    )
                    .await?;
                    renamed.push(table.clone());
                }
            }
            sqlx::query(
                "UPDATE projections.versions SET tables = $2 \
                 WHERE projection_name = $1 AND version = 0",
            )
            .bind(&projection)
            .bind(&renamed)
            .execute(&mut *switch.tx)
            .await
            .map_err(|err| store_error("recording version 0's tables", err))?;
        } else {
            for table in &live.tables {
                if relation_kind(&mut switch, table).await? == Some(b'v' as i8) {
                    grants.extend(
                        grants_of(&mut switch, table)
                            .await?
                            .into_iter()
                            .map(|grant| (table.clone(), grant)),
                    );
                    execute(
                        &mut switch,
                        &format!("DROP VIEW {table}"),
                        "dropping a read-model view",
                    )
                    .await?;
                }
            }
        }
        set_state(&mut switch, live.version, VersionState::Retired).await?;
    }
    if version == 0 {
        for table in &target.tables {
            if relation_kind(&mut switch, table).await? == Some(b'v' as i8) {
                execute(
                    &mut switch,
                    &format!("DROP VIEW {table}"),
                    "dropping a read-model view",
                )
                .await?;
            }
            execute(
                &mut switch,
                &format!(
                    "ALTER TABLE {} RENAME TO {}",
                    physical_table(table, 0),
                    unqualified(table)
                ),
                "renaming version 0's table back",
            )
            .await?;
        }
    } else {
        point_views(&mut switch, &target).await?;
    }
    // Grants the replaced relations had, on the new stable names (a name the new version does
    // not have any more cannot take its grant, and is skipped).
    for (relation, grant) in grants {
        if relation_kind(&mut switch, &relation).await?.is_some() {
            execute(
                &mut switch,
                &grant.on(&relation),
                "granting on a read-model view",
            )
            .await?;
        }
    }
    let record = set_state(&mut switch, version, VersionState::Live).await?;
    commit(switch, "switching a projection version").await?;
    Ok(record)
}

/// A transaction holding `projection`'s switch lock, with the record of `version`, when
/// `operation` allows its state.
async fn locked_version(
    pool: Pooled<'_>,
    projection: &str,
    version: u32,
    operation: VersionOperation,
) -> Result<(PgSwitch, ProjectionVersion), ProjectionError> {
    let mut switch = locked(pool, projection).await?;
    let versions = versions_for_update(&mut switch).await?;
    let target = find(&versions, projection, version)?;
    operation.check(&target)?;
    Ok((switch, target))
}

pub(super) async fn rebuild(
    pool: Pooled<'_>,
    projection: &str,
    version: u32,
) -> Result<ProjectionVersion, ProjectionError> {
    let (mut switch, _) =
        locked_version(pool, projection, version, VersionOperation::BUILD_AGAIN).await?;
    let record = set_state(&mut switch, version, VersionState::Building).await?;
    commit(switch, "setting a projection version building").await?;
    Ok(record)
}

pub(super) async fn drop_version(
    pool: Pooled<'_>,
    projection: &str,
    version: u32,
) -> Result<ProjectionVersion, ProjectionError> {
    let (mut switch, target) =
        locked_version(pool, projection, version, VersionOperation::DROP).await?;
    for table in &target.tables {
        execute(
            &mut switch,
            &format!("DROP TABLE IF EXISTS {}", physical_table(table, version)),
            "dropping a projection version's table",
        )
        .await?;
    }
    let pair = target.pair_name();
    for table in ["current_states", "failed_events", "registry", "requests"] {
        sqlx::query(&format!(
            "DELETE FROM projections.{table} WHERE projection_name = $1"
        ))
        .bind(&pair)
        .execute(&mut *switch.tx)
        .await
        .map_err(|err| store_error("forgetting a dropped version", err))?;
    }
    let record = set_state(&mut switch, version, VersionState::Dropped).await?;
    commit(switch, "dropping a projection version").await?;
    Ok(record)
}
