//! The health status of a server with a database: SERVING only while the database answers and
//! its schema holds every migration of this binary, each change logged once.

use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::db::ServiceDatabase;
use crate::shutdown::Shutdown;

pub(super) async fn set_status(health: &HealthReporter, names: &[&str], status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in names {
        health.set_service_status(*name, status).await;
    }
}

/// What the health status follows: whether the database answers, and whether its schema holds
/// every migration of this binary.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Readiness {
    Ready,
    Unreachable,
    SchemaBehind { pending: Vec<String> },
}

/// Keeps the health status in step with the database, logging each change once.
pub(super) struct DatabaseWatch {
    database: ServiceDatabase,
    health: HealthReporter,
    names: Vec<&'static str>,
    /// The state last reported; `None` before the first check.
    reported: Option<Readiness>,
    /// Whether the schema was found ahead of this binary already (it is logged once).
    ahead_logged: bool,
}

impl DatabaseWatch {
    pub(super) fn new(
        database: ServiceDatabase,
        health: HealthReporter,
        names: Vec<&'static str>,
    ) -> Self {
        Self {
            database,
            health,
            names,
            reported: None,
            ahead_logged: false,
        }
    }

    /// Checks every `interval` until shutdown (when health belongs to the drain).
    pub(super) async fn run(mut self, interval: Duration, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(interval) => {}
            }
            self.check(interval, &shutdown).await;
        }
    }

    /// Pings the database, reads its schema state, and reports a change — unless the shutdown
    /// has begun, whose NOT_SERVING stands.
    pub(super) async fn check(&mut self, interval: Duration, shutdown: &Shutdown) {
        let timeout = interval.max(Duration::from_secs(1));
        let database = self.database.clone();
        let probe = async move {
            database.connection().ping().await?;
            database.schema().await
        };
        let mut failure = None;
        let readiness = match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(schema)) => {
                if !schema.unknown.is_empty() && !self.ahead_logged {
                    self.ahead_logged = true;
                    tracing::warn!(
                        unknown = ?schema.unknown,
                        "the database schema has migrations this binary does not know (a newer \
                         version migrated it); serving"
                    );
                }
                if schema.is_behind() {
                    Readiness::SchemaBehind {
                        pending: schema.pending,
                    }
                } else {
                    Readiness::Ready
                }
            }
            Ok(Err(error)) => {
                failure = Some(error.to_string());
                Readiness::Unreachable
            }
            Err(_) => {
                failure = Some(format!("no answer within {timeout:?}"));
                Readiness::Unreachable
            }
        };
        if self.reported.as_ref() == Some(&readiness) || shutdown.is_triggered() {
            return;
        }
        let first = self.reported.is_none();
        match &readiness {
            Readiness::Ready if first => {}
            Readiness::Ready => tracing::info!("database ready again; health is SERVING"),
            Readiness::Unreachable => tracing::error!(
                error = failure.as_deref().unwrap_or_default(),
                "database unreachable; health is NOT_SERVING"
            ),
            Readiness::SchemaBehind { pending } => tracing::error!(
                ?pending,
                "the database schema lacks migrations of this binary; health is NOT_SERVING \
                 until `roster migrate` has applied them"
            ),
        }
        let status = if readiness == Readiness::Ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        set_status(&self.health, &self.names, status).await;
        self.reported = Some(readiness);
    }
}
