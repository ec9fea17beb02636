//! The baseline: the spreadsheet's rows inserted straight into identity's tables by batched SQL.

use std::time::{Duration, Instant};

use roster_identity::domain::username::Username;
use sea_orm::{ConnectionTrait, Statement, TransactionTrait, Value};

use super::{SQL_BATCH, row_email};
use crate::suite::{self, Options, observed};
use crate::system::Usage;

/// The same rows as the spreadsheet inserted straight into a fresh identity database with
/// multi-row INSERTs, [`SQL_BATCH`] rows per statement and transaction, on one connection. The
/// canonical forms and skeletons are computed before the clock starts. Returns the time taken,
/// and the rows inserted over time: `(seconds, rows)` from `(0, 0)` and after each commit.
pub(super) async fn bare_sql(
    options: &Options,
    rows: u64,
) -> anyhow::Result<(Duration, Usage, Vec<(f64, f64)>)> {
    let identity = suite::identity(options, roster_tests::identity_settings(), Vec::new()).await?;
    let account = uuid::Uuid::parse_str(&suite::create_account(identity.channel().await).await?)?;
    let db = suite::connect_database(&identity.database.url).await?;
    let prepared: Vec<(String, String, String, uuid::Uuid)> = (0..rows)
        .map(|n| {
            let email = row_email(n);
            let username = Username::parse(&email).map_err(|error| anyhow::anyhow!("{error:?}"))?;
            Ok((
                email,
                username.canonical().to_owned(),
                username.skeleton().to_owned(),
                uuid::Uuid::now_v7(),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let backend = db.get_database_backend();
    let (inserted, usage, _) = observed(None, async {
        let started = Instant::now();
        let mut progress = Vec::with_capacity(prepared.len().div_ceil(SQL_BATCH) + 1);
        progress.push((0.0, 0.0));
        let mut done = 0;
        for batch in prepared.chunks(SQL_BATCH) {
            let txn = db.begin().await?;
            let now = chrono_now();
            let mut registry = String::from(
                "INSERT INTO username_registry \
                 (canonical, skeleton, username, profile_id, account_id, created_at) VALUES ",
            );
            let mut registry_values: Vec<Value> = Vec::with_capacity(batch.len() * 6);
            let mut profiles = String::from(
                "INSERT INTO profiles (id, account_id, first_name, last_name, email, \
                 email_search, username, canonical_username, job_title, department, locale, \
                 time_zone, status, created_at, updated_at, version) VALUES ",
            );
            let mut profile_values: Vec<Value> = Vec::with_capacity(batch.len() * 16);
            for (index, (email, canonical, skeleton, id)) in batch.iter().enumerate() {
                let r = index * 6;
                let p = index * 16;
                if index > 0 {
                    registry.push(',');
                    profiles.push(',');
                }
                registry.push_str(&format!(
                    "(${},${},${},${},${},${})",
                    r + 1,
                    r + 2,
                    r + 3,
                    r + 4,
                    r + 5,
                    r + 6
                ));
                registry_values.extend([
                    canonical.clone().into(),
                    skeleton.clone().into(),
                    email.clone().into(),
                    (*id).into(),
                    account.into(),
                    now.into(),
                ]);
                profiles.push('(');
                profiles.push_str(
                    &(1..=16)
                        .map(|k| format!("${}", p + k))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                profiles.push(')');
                let n = &email[4..email.find('@').unwrap_or(email.len())];
                profile_values.extend([
                    (*id).into(),
                    account.into(),
                    format!("Given{n}").into(),
                    format!("Family{n}").into(),
                    email.clone().into(),
                    email.to_lowercase().into(),
                    email.clone().into(),
                    canonical.clone().into(),
                    "Engineer".into(),
                    "Research".into(),
                    "en".into(),
                    "Europe/Paris".into(),
                    "active".into(),
                    now.into(),
                    now.into(),
                    1i64.into(),
                ]);
            }
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                registry,
                registry_values,
            ))
            .await?;
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                profiles,
                profile_values,
            ))
            .await?;
            txn.commit().await?;
            done += batch.len();
            progress.push((started.elapsed().as_secs_f64(), done as f64));
        }
        anyhow::Ok((started.elapsed(), progress))
    })
    .await;
    let _ = db.close().await;
    let (elapsed, progress) = inserted?;
    Ok((elapsed, usage, progress))
}

fn chrono_now() -> sea_orm::prelude::DateTimeUtc {
    sea_orm::prelude::DateTimeUtc::from(std::time::SystemTime::now())
}
