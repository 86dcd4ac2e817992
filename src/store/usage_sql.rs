//! The SQL of usage exports and emails, shared by both databases: the spend each close
//! records, the usage history streamed row by row, and the email queue.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::backend::Backend;
use super::rows::{self, CompanyNames, EmailRow, HistoryDbRow, SpendRow};
use super::sql::SqlStore;
use super::{EmailOutcome, EmailStatus, QueuedEmail, StepRun};
use crate::domain::usage_email::{EmailDraft, Spend};
use crate::domain::usage_history::{HistoryQuery, HistoryRecord, Selection};
use crate::domain::words::CompanyId;

/// Rows per multi-row statement: well under SQLite's 32 766 parameters.
const CHUNK: usize = 200;

/// The columns of `usage_emails` that [`EmailRow`] reads.
const EMAIL_COLUMNS: &str = "company_id, boundary_index, boundary_date, recipient, scope, \
     message_id, subject, summary, attachment, status, attempts, next_attempt_at, last_error";

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_literal(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl<DB> SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Records what the `rate` steps' rows drew from each wallet.
    pub(super) async fn insert_spend(
        tx: &mut sqlx::Transaction<'static, DB>,
        spends: &[(&StepRun, &Spend)],
    ) -> anyhow::Result<()> {
        let mut lines = Vec::new();
        for (run, spend) in spends {
            for (o, s, w, a) in spend.lines() {
                lines.push((
                    *run,
                    o.to_string(),
                    s.as_str(),
                    w.to_string(),
                    rows::money(a)?,
                ));
            }
        }
        for chunk in lines.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO usage_spend (company_id, boundary_index, office, service, wallet, \
                 amount) ",
            );
            qb.push_values(chunk, |mut b, (run, office, service, wallet, amount)| {
                b.push_bind(run.company.to_string())
                    .push_bind(i64::from(run.boundary_index))
                    .push_bind(office.clone())
                    .push_bind(*service)
                    .push_bind(wallet.clone())
                    .push_bind(*amount);
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Queues the `usage-email` steps' emails, due at once. The key (company, boundary,
    /// recipient) holds each email once, whatever runs twice.
    pub(super) async fn queue_emails(
        tx: &mut sqlx::Transaction<'static, DB>,
        emails: &[(&StepRun, &EmailDraft)],
    ) -> anyhow::Result<()> {
        for chunk in emails.chunks(CHUNK / 2) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO usage_emails (company_id, boundary_index, recipient, boundary_date, \
                 scope, message_id, subject, summary, attachment, status, attempts, \
                 next_attempt_at, queued_at) ",
            );
            qb.push_values(chunk, |mut b, (run, e)| {
                b.push_bind(run.company.to_string())
                    .push_bind(i64::from(run.boundary_index))
                    .push_bind(e.recipient.clone())
                    .push_bind(rows::date(run.boundary))
                    .push_bind(e.scope.as_str().to_string())
                    .push_bind(e.message_id.clone())
                    .push_bind(e.subject.clone())
                    .push_bind(e.summary.clone())
                    .push_bind(e.attachment.clone())
                    .push_bind(EmailStatus::Queued.as_str())
                    .push_bind(0_i64)
                    .push_bind(rows::instant(run.finished_at))
                    .push_bind(rows::instant(run.finished_at));
            });
            qb.push(" ON CONFLICT (company_id, boundary_index, recipient) DO NOTHING");
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub(super) async fn spend_from(
        &self,
        from: &[(CompanyId, u32)],
    ) -> anyhow::Result<BTreeMap<CompanyId, BTreeMap<u32, Spend>>> {
        let mut out: BTreeMap<CompanyId, BTreeMap<u32, Spend>> = BTreeMap::new();
        for chunk in from.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT company_id, boundary_index, office, service, wallet, amount \
                 FROM usage_spend WHERE ",
            );
            let mut sep = qb.separated(" OR ");
            for (company, k) in chunk {
                sep.push("(company_id = ")
                    .push_bind_unseparated(company.to_string())
                    .push_unseparated(" AND boundary_index >= ")
                    .push_bind_unseparated(i64::from(*k))
                    .push_unseparated(")");
            }
            let rows: Vec<SpendRow> = qb.build_query_as().fetch_all(self.pool()).await?;
            for r in rows {
                let company = CompanyId::from(r.company_id.clone());
                let (k, office, service, wallet, amount) = r.into_domain()?;
                out.entry(company)
                    .or_default()
                    .entry(k)
                    .or_default()
                    .add(&office, service, wallet, amount);
            }
        }
        Ok(out)
    }

    pub(super) async fn stream_history(
        &self,
        q: &HistoryQuery,
        sink: &mut (dyn FnMut(HistoryRecord) -> anyhow::Result<()> + Send),
    ) -> anyhow::Result<u64> {
        // Each pass is (from, until, rated by, late); its rows come in (occurred_at, id)
        // order from the primary key of usage. The late rows a close rated occurred before
        // its period, so they all come first.
        type Pass = (Option<i64>, Option<i64>, Option<(i64, bool)>);
        let passes: Vec<Pass> = match &q.selection {
            Selection::OccurredIn { from, until } => {
                vec![(
                    Some(rows::instant(*from)),
                    Some(rows::instant(*until)),
                    None,
                )]
            }
            Selection::RatedBy { k, from, until } => vec![
                (
                    None,
                    Some(rows::instant(*from)),
                    Some((i64::from(*k), true)),
                ),
                (
                    Some(rows::instant(*from)),
                    Some(rows::instant(*until)),
                    Some((i64::from(*k), false)),
                ),
            ],
        };
        let f = &q.filter;
        let min = f.min_cost.map(rows::money).transpose()?;
        let max = f.max_cost.map(rows::money).transpose()?;
        // A connection of its own, readied for a long read and put back (or closed) after.
        self.streamed(async |conn| {
            let mut n = 0;
            // Named here, not joined per row: a company has a handful of offices and parties.
            let company = q.company.to_string();
            let mut names = CompanyNames::default();
            for (sql, map) in [
                (
                    "SELECT id, name FROM offices WHERE company_id = $1",
                    &mut names.offices,
                ),
                (
                    "SELECT id, name FROM parties WHERE company_id = $1",
                    &mut names.parties,
                ),
            ] {
                let rows: Vec<(String, String)> = sqlx::query_as(sql)
                    .bind(company.clone())
                    .fetch_all(&mut *conn)
                    .await?;
                map.extend(rows);
            }
            for (from, until, rated) in passes {
                let mut qb =
                    QueryBuilder::<DB>::new(include_str!("../../sql/queries/usage_history.sql"));
                qb.push_bind(company.clone());
                // The scope first: every filter below can only narrow it.
                if let Some(office) = q.scope.office() {
                    qb.push(" AND u.office = ").push_bind(office.to_string());
                }
                if let Some(from) = from {
                    qb.push(" AND u.occurred_at >= ").push_bind(from);
                }
                if let Some(until) = until {
                    qb.push(" AND u.occurred_at < ").push_bind(until);
                }
                match rated {
                    // Few rows, found through the partial index of late ratings.
                    Some((k, true)) => {
                        qb.push(" AND r.boundary_index = ")
                            .push_bind(k)
                            .push(" AND r.late");
                    }
                    // Most rows: the company's time range from the primary key of usage, joined
                    // with its ratings. The ratings' statistics are kept (`ANALYZE` after bulk
                    // writes), so PostgreSQL sees that nearly all of them match: hiding the column
                    // in an expression made it guess a handful and fetch each usage row by id
                    // instead, four times slower (see BENCHMARKS.md).
                    Some((k, false)) => {
                        qb.push(" AND r.boundary_index = ")
                            .push_bind(k)
                            .push(" AND NOT r.late");
                    }
                    None => {}
                }
                if let Some(party) = &f.party {
                    qb.push(" AND u.party = ").push_bind(party.clone());
                }
                if let Some(service) = f.service {
                    qb.push(" AND u.service = ").push_bind(service.as_str());
                }
                if let Some(wallet) = f.wallet {
                    qb.push(" AND ('+' || r.wallet_sources || '+') LIKE ")
                        .push_bind(format!("%+{}+%", like_literal(&wallet.to_string())))
                        .push(" ESCAPE '\\'");
                }
                if let Some(min) = min {
                    qb.push(" AND u.cost >= ").push_bind(min);
                }
                if let Some(max) = max {
                    qb.push(" AND u.cost <= ").push_bind(max);
                }
                qb.push(" ORDER BY u.occurred_at, u.id");
                // Planned for its own company and range each time: a statement prepared once
                // gets PostgreSQL's generic plan, a nested loop over every rating, twice as slow
                // as the hash join it picks for the actual parameters.
                let mut rows = qb
                    .build_query_as::<HistoryDbRow>()
                    .persistent(false)
                    .fetch(&mut *conn);
                while let Some(row) = rows.try_next().await? {
                    sink(row.into_domain(&names)?)?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }

    pub(super) async fn claim_emails(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> anyhow::Result<Vec<QueuedEmail>> {
        let mut tx = DB::begin_write(self.pool()).await?;
        let rows: Vec<EmailRow> =
            sqlx::query_as(include_str!("../../sql/queries/claim_emails.sql"))
                .bind(owner.to_string())
                .bind(rows::instant(until))
                .bind(rows::instant(now))
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let mut emails = rows
            .into_iter()
            .map(EmailRow::into_domain)
            .collect::<anyhow::Result<Vec<_>>>()?;
        emails.sort_by(|a, b| {
            (&a.company, a.boundary_index, &a.recipient).cmp(&(
                &b.company,
                b.boundary_index,
                &b.recipient,
            ))
        });
        Ok(emails)
    }

    pub(super) async fn finish(
        &self,
        e: &QueuedEmail,
        owner: &str,
        outcome: &EmailOutcome,
    ) -> anyhow::Result<bool> {
        let mut qb = QueryBuilder::<DB>::new("UPDATE usage_emails SET claimed_by = NULL, ");
        match outcome {
            EmailOutcome::Sent(at) => {
                qb.push("status = ")
                    .push_bind(EmailStatus::Sent.as_str())
                    .push(", sent_at = ")
                    .push_bind(rows::instant(*at))
                    .push(", last_error = NULL");
            }
            EmailOutcome::Retry { error, next } => {
                qb.push("next_attempt_at = ")
                    .push_bind(rows::instant(*next))
                    .push(", last_error = ")
                    .push_bind(error.clone());
            }
            EmailOutcome::Failed(error) => {
                qb.push("status = ")
                    .push_bind(EmailStatus::Failed.as_str())
                    .push(", last_error = ")
                    .push_bind(error.clone());
            }
        }
        qb.push(" WHERE company_id = ")
            .push_bind(e.company.to_string())
            .push(" AND boundary_index = ")
            .push_bind(i64::from(e.boundary_index))
            .push(" AND recipient = ")
            .push_bind(e.recipient.clone())
            .push(" AND status = ")
            .push_bind(EmailStatus::Queued.as_str())
            .push(" AND claimed_by = ")
            .push_bind(owner.to_string())
            .push(" RETURNING company_id");
        let done: Vec<(String,)> = qb.build_query_as().fetch_all(self.pool()).await?;
        Ok(done.len() == 1)
    }

    pub(super) async fn backlog(
        &self,
        company: Option<&CompanyId>,
    ) -> anyhow::Result<(i64, Vec<QueuedEmail>)> {
        let mut qb = QueryBuilder::<DB>::new("SELECT COUNT(*) FROM usage_emails WHERE status = ");
        qb.push_bind(EmailStatus::Sent.as_str());
        if let Some(c) = company {
            qb.push(" AND company_id = ").push_bind(c.to_string());
        }
        let (sent,): (i64,) = qb.build_query_as().fetch_one(self.pool()).await?;
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT {EMAIL_COLUMNS} FROM usage_emails WHERE status <> "
        ));
        qb.push_bind(EmailStatus::Sent.as_str());
        if let Some(c) = company {
            qb.push(" AND company_id = ").push_bind(c.to_string());
        }
        qb.push(" ORDER BY company_id, boundary_index, recipient");
        let rows: Vec<EmailRow> = qb.build_query_as().fetch_all(self.pool()).await?;
        let pending = rows
            .into_iter()
            .map(EmailRow::into_domain)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((sent, pending))
    }
}
