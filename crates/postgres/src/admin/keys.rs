//! What an operator sees of personal-data keys: how many, wrapped by which master key, how many
//! subjects erased. Never a key.

use sqlx::PgPool;
use strata_store::Result;

use crate::error::from_sqlx;

/// The state of the personal-data keys of a database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectKeyStatus {
    /// `(master key id, keys it wraps)`, by id: more than one means a rotation is unfinished.
    pub by_master_key: Vec<(String, u64)>,
    /// Subjects with at least one key.
    pub subjects: u64,
    /// Subjects erased.
    pub erased_subjects: u64,
}

/// Counts the keys by master key, the subjects and the erased subjects.
pub async fn subject_key_status(pool: &PgPool) -> Result<SubjectKeyStatus> {
    let by_master_key: Vec<(String, i64)> = sqlx::query_as(
        "SELECT master_key_id, count(*) FROM eventstore.subject_keys \
         GROUP BY master_key_id ORDER BY master_key_id",
    )
    .fetch_all(pool)
    .await
    .map_err(|err| from_sqlx("counting subject keys", err))?;
    let (subjects, erased_subjects): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM (SELECT DISTINCT instance_id, subject_id \
                                       FROM eventstore.subject_keys) s), \
                (SELECT count(*) FROM eventstore.erased_subjects)",
    )
    .fetch_one(pool)
    .await
    .map_err(|err| from_sqlx("counting subjects", err))?;
    Ok(SubjectKeyStatus {
        by_master_key: by_master_key
            .into_iter()
            .map(|(id, count)| (id, count as u64))
            .collect(),
        subjects: subjects as u64,
        erased_subjects: erased_subjects as u64,
    })
}
