//! A hot standby of a [`ThrowawayServer`], made the way an operator makes one: `pg_basebackup -R`
//! copies the primary and configures streaming replication from it.

use crate::ThrowawayServer;

impl ThrowawayServer {
    /// Starts a hot standby of this server on a free port of its own, streaming from it.
    ///
    /// # Panics
    ///
    /// When the base backup or the standby's start fails: the test needs it.
    pub fn start_standby(&self) -> ThrowawayServer {
        let (port, dir, _) = crate::server_folder();
        let standby = ThrowawayServer {
            bindir: self.bindir.clone(),
            dir,
            port,
            as_postgres: self.as_postgres,
            settings: self.settings.clone(),
        };
        let data = standby.dir.join("data");
        let primary_port = self.port.to_string();
        let copied = standby.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port,
                "-U",
                "postgres",
                "-D",
                &data.to_string_lossy(),
                // Writes standby.signal and primary_conninfo: a standby of this server.
                "-R",
                "-X",
                "stream",
                "--no-sync",
                "-c",
                "fast",
            ],
        );
        assert!(copied, "pg_basebackup failed (its error is above)");
        assert!(
            standby.pg_ctl("start"),
            "the standby did not start: {}",
            std::fs::read_to_string(standby.dir.join("server.log")).unwrap_or_default()
        );
        standby
    }

    /// Stops replaying WAL (`pg_wal_replay_pause()`): a standby that falls behind on demand.
    pub async fn pause_replay(&self) {
        self.admin_execute("SELECT pg_wal_replay_pause()").await;
    }

    /// Resumes replaying WAL after [`ThrowawayServer::pause_replay`].
    pub async fn resume_replay(&self) {
        self.admin_execute("SELECT pg_wal_replay_resume()").await;
    }

    async fn admin_execute(&self, sql: &str) {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.url())
            .await
            .expect("the server answers");
        sqlx::query(sql)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
        admin.close().await.ok();
    }
}
