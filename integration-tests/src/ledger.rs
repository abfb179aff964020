//! The versioned projection the version tests rebuild: one row per aggregate counting the events
//! applied to it, and a record of every event applied with how many times, so a test can tell
//! afterwards that a version applied every event exactly once.

use std::time::Duration;

use strata_event::{Event, InstanceId};
use strata_projection::{
    Projection, ProjectionConfig, Reads, ReduceError, SqlValue, Statement, SwitchWhen, Table,
};

/// The declared name readers read.
pub const LEDGER: &str = "public.ledger";

/// Version `version` of the ledger; every version writes the same rows, stamped with its number.
#[derive(Debug, Clone, Copy)]
pub struct Ledger {
    /// Its version.
    pub version: u32,
    /// Sleep a little per event, so that a kill lands mid-batch.
    pub slow: bool,
    /// When it takes over.
    pub switch: SwitchWhen,
}

impl Projection for Ledger {
    fn name(&self) -> &str {
        "ledger"
    }

    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }

    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        let key = vec![
            ("instance_id", event.aggregate.instance_id.as_str().into()),
            ("aggregate_id", event.aggregate.aggregate_id.as_str().into()),
        ];
        let mut statements = vec![
            Statement::Increment {
                table: LEDGER,
                key,
                amounts: vec![("events", 1i64.into())],
                values: vec![
                    ("last_sequence", event.sequence.into()),
                    ("version", i64::from(self.version).into()),
                ],
            },
            // Raw SQL names the version's table through its placeholder.
            Statement::sql(
                "INSERT INTO {public.ledger_applied} AS applied \
                 (instance_id, aggregate_id, sequence, times) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (instance_id, aggregate_id, sequence) \
                 DO UPDATE SET times = applied.times + 1",
                vec![
                    SqlValue::from(event.aggregate.instance_id.as_str()),
                    event.aggregate.aggregate_id.as_str().into(),
                    event.sequence.into(),
                ],
            ),
        ];
        if self.slow {
            statements.push(Statement::sql("SELECT pg_sleep(0.002)", vec![]));
        }
        Ok(statements)
    }

    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![
            Statement::delete(LEDGER, vec![("instance_id", instance.as_str().into())]),
            Statement::delete(
                "public.ledger_applied",
                vec![("instance_id", instance.as_str().into())],
            ),
        ]
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn tables(&self) -> Vec<Table> {
        vec![
            Table::new(
                LEDGER,
                "instance_id TEXT NOT NULL, aggregate_id TEXT NOT NULL, events BIGINT NOT NULL, \
                 last_sequence BIGINT NOT NULL, version BIGINT NOT NULL, \
                 PRIMARY KEY (instance_id, aggregate_id)",
            ),
            Table::new(
                "public.ledger_applied",
                "instance_id TEXT NOT NULL, aggregate_id TEXT NOT NULL, sequence BIGINT NOT NULL, \
                 times INTEGER NOT NULL, PRIMARY KEY (instance_id, aggregate_id, sequence)",
            ),
        ]
    }

    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            bulk_limit: 100,
            requeue_every: Duration::from_millis(500),
            switch: self.switch,
            drop_retired_after: None,
            ..ProjectionConfig::default()
        }
    }
}
