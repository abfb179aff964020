//! [`SubjectKeyStore`] on PostgreSQL: eventstore.subject_keys and eventstore.erased_subjects,
//! written only through their functions (the writer role cannot touch the tables itself).

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rust_decimal::Decimal;
use strata_event::{Command, InstanceId, Position, SubjectId};
use strata_store::{
    Erasure, Error, Result, SubjectKeyStore, SubjectKeys, WrappedKey, validate_erasure_record,
    validate_key, validate_master_key_id, validate_rewrap,
};

use crate::error::{from_sqlx, unexpected_answer};
use crate::push::{metadata_json, stored};
use crate::store::PgStore;

/// A subject asked for, one of its keys if it has any (version, master key id, wrapped key), and
/// whether it was erased.
type SubjectKeyRow = (String, Option<i32>, Option<String>, Option<Vec<u8>>, bool);

/// The SQLSTATE eventstore.create_subject_key raises for an erased subject.
const SUBJECT_ERASED: &str = "SE001";

impl SubjectKeyStore for PgStore {
    fn subject_keys<'a>(
        &'a self,
        instance_id: &'a InstanceId,
        subjects: &'a [SubjectId],
    ) -> BoxFuture<'a, Result<Vec<SubjectKeys>>> {
        Box::pin(async move {
            let mut asked: Vec<&SubjectId> = Vec::with_capacity(subjects.len());
            for subject in subjects {
                if !asked.contains(&subject) {
                    asked.push(subject);
                }
            }
            let names: Vec<&str> = asked.iter().map(|subject| subject.as_str()).collect();
            // One round trip for the keys and the erasure marks of every subject asked.
            let rows: Vec<SubjectKeyRow> = sqlx::query_as(
                "SELECT s.subject_id, k.key_version, k.master_key_id, k.wrapped_key, \
                            EXISTS (SELECT 1 FROM eventstore.erased_subjects e \
                                    WHERE e.instance_id = $1 AND e.subject_id = s.subject_id) \
                     FROM unnest($2::text[]) AS s(subject_id) \
                     LEFT JOIN eventstore.subject_keys k \
                            ON k.instance_id = $1 AND k.subject_id = s.subject_id \
                     ORDER BY s.subject_id, k.key_version",
            )
            .bind(instance_id.as_str())
            .bind(&names)
            .fetch_all(self.reads())
            .await
            .map_err(|err| from_sqlx("reading subject keys", err))?;
            let mut found: Vec<SubjectKeys> = asked
                .iter()
                .map(|subject| SubjectKeys {
                    subject_id: (*subject).clone(),
                    keys: Vec::new(),
                    erased: false,
                })
                .collect();
            for (subject, version, master_key_id, wrapped, erased) in rows {
                let Some(entry) = found
                    .iter_mut()
                    .find(|entry| entry.subject_id.as_str() == subject)
                else {
                    continue;
                };
                entry.erased = erased;
                if let (Some(version), Some(master_key_id), Some(wrapped)) =
                    (version, master_key_id, wrapped)
                {
                    entry.keys.push(WrappedKey {
                        instance_id: instance_id.clone(),
                        subject_id: entry.subject_id.clone(),
                        version: u32::try_from(version).map_err(|_| {
                            unexpected_answer("eventstore.subject_keys", "a negative key version")
                        })?,
                        master_key_id,
                        wrapped,
                    });
                }
            }
            Ok(found)
        })
    }

    fn create_subject_key<'a>(&'a self, key: WrappedKey) -> BoxFuture<'a, Result<WrappedKey>> {
        Box::pin(async move {
            validate_key(&key)?;
            let version = i32::try_from(key.version)
                .map_err(|_| Error::invalid_input("a subject key's version is at most 2^31 - 1"))?;
            let stored: (String, Vec<u8>) =
                sqlx::query_as("SELECT * FROM eventstore.create_subject_key($1, $2, $3, $4, $5)")
                    .bind(key.instance_id.as_str())
                    .bind(key.subject_id.as_str())
                    .bind(version)
                    .bind(&key.master_key_id)
                    .bind(&key.wrapped)
                    .fetch_one(self.writes())
                    .await
                    .map_err(|err| erased_or(&key.instance_id, &key.subject_id, err))?;
            Ok(WrappedKey {
                master_key_id: stored.0,
                wrapped: stored.1,
                ..key
            })
        })
    }

    fn erase_subject<'a>(
        &'a self,
        instance_id: &'a InstanceId,
        subject_id: &'a SubjectId,
        record: Command,
    ) -> BoxFuture<'a, Result<Erasure>> {
        Box::pin(async move {
            validate_erasure_record(instance_id, &record)?;
            let row: (i64, Option<i64>, Option<Decimal>, Option<DateTime<Utc>>) = sqlx::query_as(
                "SELECT * FROM eventstore.erase_subject($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(instance_id.as_str())
            .bind(subject_id.as_str())
            .bind(record.aggregate().aggregate_type.as_str())
            .bind(record.aggregate().aggregate_id.as_str())
            .bind(record.event_type().as_str())
            .bind(i32::from(record.revision()))
            .bind(record.creator().as_str())
            .bind(record.owner().as_str())
            .bind(record.payload().json())
            .bind(metadata_json(record.metadata())?)
            .fetch_one(self.writes())
            .await
            .map_err(|err| from_sqlx("erasing a subject", err))?;
            let (keys_deleted, sequence, position, created_at) = row;
            let recorded = match (sequence, position, created_at) {
                (Some(sequence), Some(position), Some(created_at)) => {
                    let position = Position::new(position).map_err(|_| {
                        unexpected_answer("eventstore.erase_subject", "a negative position")
                    })?;
                    Some(stored(&record, sequence, 0, position, created_at))
                }
                _ => None,
            };
            if let Some(event) = &recorded {
                self.announce(std::slice::from_ref(event));
            }
            self.erasure_notices().announce(instance_id, subject_id);
            Ok(Erasure {
                keys_deleted: keys_deleted as u64,
                recorded,
            })
        })
    }

    fn forget_subject<'a>(
        &'a self,
        instance_id: &'a InstanceId,
        subject_id: &'a SubjectId,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let deleted: i64 = sqlx::query_scalar(
                "SELECT r_keys_deleted FROM eventstore.erase_subject($1, $2, NULL, NULL, NULL, \
                 NULL, NULL, NULL, NULL, NULL)",
            )
            .bind(instance_id.as_str())
            .bind(subject_id.as_str())
            .fetch_one(self.writes())
            .await
            .map_err(|err| from_sqlx("forgetting a subject", err))?;
            self.erasure_notices().announce(instance_id, subject_id);
            Ok(deleted as u64)
        })
    }

    fn keys_not_wrapped_by<'a>(
        &'a self,
        master_key_id: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<WrappedKey>>> {
        Box::pin(async move {
            validate_master_key_id(master_key_id)?;
            let rows: Vec<(String, String, i32, String, Vec<u8>)> = sqlx::query_as(
                "SELECT instance_id, subject_id, key_version, master_key_id, wrapped_key \
                 FROM eventstore.subject_keys WHERE master_key_id <> $1 \
                 ORDER BY instance_id, subject_id, key_version LIMIT $2",
            )
            .bind(master_key_id)
            .bind(i64::from(limit))
            .fetch_all(self.reads())
            .await
            .map_err(|err| from_sqlx("listing subject keys to rewrap", err))?;
            rows.into_iter()
                .map(|(instance, subject, version, master_key_id, wrapped)| {
                    let corrupt = |what: &str| unexpected_answer("eventstore.subject_keys", what);
                    Ok(WrappedKey {
                        instance_id: InstanceId::new(instance)
                            .map_err(|_| corrupt("an invalid instance id"))?,
                        subject_id: SubjectId::new(subject)
                            .map_err(|_| corrupt("an invalid subject id"))?,
                        version: u32::try_from(version)
                            .map_err(|_| corrupt("a negative key version"))?,
                        master_key_id,
                        wrapped,
                    })
                })
                .collect()
        })
    }

    fn erasures(&self) -> Option<tokio::sync::broadcast::Receiver<strata_store::ErasedSubject>> {
        Some(self.erasure_notices().subscribe())
    }

    fn rewrap_key<'a>(
        &'a self,
        old: &'a WrappedKey,
        new: &'a WrappedKey,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            validate_rewrap(old, new)?;
            let version = i32::try_from(old.version)
                .map_err(|_| Error::invalid_input("a subject key's version is at most 2^31 - 1"))?;
            sqlx::query_scalar("SELECT eventstore.rewrap_subject_key($1, $2, $3, $4, $5, $6, $7)")
                .bind(old.instance_id.as_str())
                .bind(old.subject_id.as_str())
                .bind(version)
                .bind(&old.master_key_id)
                .bind(&old.wrapped)
                .bind(&new.master_key_id)
                .bind(&new.wrapped)
                .fetch_one(self.writes())
                .await
                .map_err(|err| from_sqlx("rewrapping a subject key", err))
        })
    }
}

/// [`Error::SubjectErased`] for the erased-subject SQLSTATE, the usual mapping otherwise.
fn erased_or(instance_id: &InstanceId, subject_id: &SubjectId, err: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &err
        && db.code().as_deref() == Some(SUBJECT_ERASED)
    {
        return Error::SubjectErased {
            instance_id: instance_id.clone(),
            subject_id: subject_id.clone(),
        };
    }
    from_sqlx("creating a subject key", err)
}
