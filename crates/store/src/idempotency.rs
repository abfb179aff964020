//! What idempotent pushes share across backends: the fingerprint a key is recorded with, and how
//! long keys are kept by default.

use std::time::Duration;

use sha2::{Digest, Sha256};
use strata_event::{Command, UniqueConstraintOp};

/// How long a backend remembers an idempotency key unless configured otherwise: 24 hours, longer
/// than any sensible retry loop, short enough that the keys of a busy store stay a small table.
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// The SHA-256 (lowercase hex) of a canonical encoding of `commands`: every field of every command,
/// in order, including metadata, unique-constraint operations and expected sequences.
///
/// A backend records it with an idempotency key; a later push with the key is a replay only when
/// its fingerprint is the same. Each field is written with its length in front, so no two different
/// lists of commands encode alike (`"ab" + "c"` is not `"a" + "bc"`). The encoding is part of what
/// is stored: changing it makes keys recorded before the change look reused, so it must stay put.
pub fn push_fingerprint(commands: &[Command]) -> String {
    let mut encoder = Encoder(Sha256::new());
    encoder.number(commands.len() as u64);
    for command in commands {
        let aggregate = command.aggregate();
        encoder.text(aggregate.instance_id.as_str());
        encoder.text(aggregate.aggregate_type.as_str());
        encoder.text(aggregate.aggregate_id.as_str());
        encoder.text(command.event_type().as_str());
        encoder.number(u64::from(command.revision()));
        encoder.optional(command.payload().json());
        encoder.text(command.creator().as_str());
        encoder.text(command.owner().as_str());
        encoder.number(command.unique_constraints().len() as u64);
        for op in command.unique_constraints() {
            match op {
                UniqueConstraintOp::Add {
                    unique_type,
                    value,
                    error_message_id,
                } => {
                    encoder.text("add");
                    encoder.text(unique_type.as_str());
                    encoder.text(value);
                    encoder.text(error_message_id);
                }
                UniqueConstraintOp::Remove { unique_type, value } => {
                    encoder.text("remove");
                    encoder.text(unique_type.as_str());
                    encoder.text(value);
                }
                UniqueConstraintOp::RemoveAllOfInstance => encoder.text("clear"),
            }
        }
        match command.expected_sequence() {
            None => encoder.number(0),
            Some(sequence) => {
                encoder.number(1);
                encoder.number(sequence);
            }
        }
        let metadata = command.metadata();
        encoder.optional(metadata.correlation_id.as_deref());
        encoder.optional(metadata.causation_id.as_deref());
        encoder.number(metadata.headers.len() as u64);
        for (name, value) in &metadata.headers {
            encoder.text(name);
            encoder.text(value);
        }
    }
    encoder
        .0
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Length-prefixed fields into the hash.
struct Encoder(Sha256);

impl Encoder {
    fn number(&mut self, value: u64) {
        self.0.update(value.to_le_bytes());
    }

    fn text(&mut self, value: &str) {
        self.number(value.len() as u64);
        self.0.update(value.as_bytes());
    }

    fn optional(&mut self, value: Option<&str>) {
        match value {
            None => self.number(0),
            Some(value) => {
                self.number(1);
                self.text(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // A failed expectation is a failed test.

    use super::*;

    fn command(aggregate_id: &str) -> strata_event::CommandBuilder {
        Command::builder("i", "user", aggregate_id, "user.added")
            .creator("c")
            .owner("o")
    }

    #[test]
    fn every_field_changes_the_fingerprint() {
        let base = push_fingerprint(&[command("u1").build().unwrap()]);
        assert_eq!(base.len(), 64);
        assert_eq!(base, push_fingerprint(&[command("u1").build().unwrap()]));
        let variants = [
            command("u2").build().unwrap(),
            command("u1").revision(2).build().unwrap(),
            command("u1").payload_json("{}").build().unwrap(),
            command("u1").expect_sequence(0).build().unwrap(),
            command("u1").correlation_id("c").build().unwrap(),
            command("u1").causation_id("c").build().unwrap(),
            command("u1").header("h", "v").build().unwrap(),
            command("u1")
                .add_unique_constraint("name", "v", "m")
                .build()
                .unwrap(),
            command("u1")
                .add_unique_constraint("name", "v", "other message")
                .build()
                .unwrap(),
        ];
        let mut seen = std::collections::HashSet::from([base]);
        for variant in variants {
            assert!(
                seen.insert(push_fingerprint(std::slice::from_ref(&variant))),
                "{variant:?} shares a fingerprint"
            );
        }
        let two = [
            command("u1").build().unwrap(),
            command("u1").build().unwrap(),
        ];
        assert!(seen.insert(push_fingerprint(&two)));
        assert!(seen.insert(push_fingerprint(&[])));
    }
}
