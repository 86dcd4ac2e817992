//! The SQL of re-runs, for both databases: what was issued for a boundary, one document by
//! number, the usage later closes rated late, and recording a re-run with its adjustment.
//! Issued documents are only ever inserted; triggers of migration 0007 refuse anything else.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use super::backend::Backend;
use super::rows::{self, AdjustmentNoteRow, InvoiceRow, LineRow};
use super::sql::SqlStore;
use super::{Adjustment, IssuedAt, IssuedDocument, RerunCommit, RerunRun};
use crate::domain::invoice::{Document, DocumentKind};
use crate::domain::job::{Job, JobStatus};
use crate::domain::rerun::DocumentNumber;
use crate::domain::words::CompanyId;

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
    /// The documents of boundary `k` of `company` (its document and its adjustments), with
    /// their lines, and the notes of the adjustments by number.
    pub(super) async fn read_issued_at(
        &self,
        company: &CompanyId,
        k: u32,
    ) -> anyhow::Result<IssuedAt> {
        let heads: Vec<InvoiceRow> = sqlx::query_as(
            "SELECT company_id, number, kind, boundary_index, boundary, period_start, period_end, \
             currency FROM invoices WHERE company_id = $1 AND boundary_index = $2",
        )
        .bind(company.to_string())
        .bind(i64::from(k))
        .fetch_all(&self.pool)
        .await?;
        let lines: Vec<LineRow> = sqlx::query_as(
            "SELECT l.company_id, l.number, l.kind, l.office, l.product, l.description, \
             l.quantity, l.unit_price, l.amount, l.source, l.corrects FROM invoice_lines l \
             JOIN invoices i ON i.company_id = l.company_id AND i.number = l.number \
             WHERE i.company_id = $1 AND i.boundary_index = $2 ORDER BY l.number, l.line_no",
        )
        .bind(company.to_string())
        .bind(i64::from(k))
        .fetch_all(&self.pool)
        .await?;
        let mut docs: BTreeMap<String, Document> = BTreeMap::new();
        for h in heads {
            let d = h.into_domain()?;
            docs.insert(d.number.clone(), d);
        }
        for l in lines {
            // A document and its lines are inserted in one transaction and never change, so
            // the lines of every head read are all here; lines whose head was not read belong
            // to a document issued between the two reads, left for the next read.
            if let Some(d) = docs.get_mut(&l.number) {
                d.lines.push(l.into_domain()?);
            }
        }
        let mut issued = IssuedAt::default();
        let mut adjustments = Vec::new();
        for document in docs.into_values() {
            if document.kind == DocumentKind::Adjustment {
                adjustments.push(document);
            } else {
                issued.document = Some(document);
            }
        }
        if adjustments.is_empty() {
            return Ok(issued);
        }
        let invoice = issued.document.as_ref().map_or_else(
            || crate::domain::invoice::invoice_number(company, adjustments[0].boundary),
            |d| d.number.clone(),
        );
        let mut notes = self.adjustment_notes(company, &invoice).await?;
        // Oldest first: by their `n`, which a text sort would put A10 before A2.
        adjustments.sort_by_key(|d| DocumentNumber::parse(&d.number).and_then(|n| n.adjustment));
        for document in adjustments {
            let note = notes.remove(&document.number).ok_or_else(|| {
                anyhow::anyhow!("adjustment {} has no record of its issue", document.number)
            })?;
            issued.adjustments.push(Adjustment { document, note });
        }
        Ok(issued)
    }

    /// Who issued each adjustment of the document numbered `invoice`, by adjustment number.
    async fn adjustment_notes(
        &self,
        company: &CompanyId,
        invoice: &str,
    ) -> anyhow::Result<BTreeMap<String, crate::domain::rerun::AdjustmentNote>> {
        let rows: Vec<AdjustmentNoteRow> = sqlx::query_as(
            "SELECT number, adjusts, reason, issued_by, issued_at FROM invoice_adjustments \
             WHERE company_id = $1 AND adjusts = $2",
        )
        .bind(company.to_string())
        .bind(invoice.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| Ok((r.number.clone(), r.into_domain()?)))
            .collect()
    }

    /// One document by number, with its note or its adjustments.
    pub(super) async fn read_issued_document(
        &self,
        company: &CompanyId,
        number: &str,
    ) -> anyhow::Result<Option<IssuedDocument>> {
        let head: Option<InvoiceRow> = sqlx::query_as(
            "SELECT company_id, number, kind, boundary_index, boundary, period_start, period_end, \
             currency FROM invoices WHERE company_id = $1 AND number = $2",
        )
        .bind(company.to_string())
        .bind(number.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(head) = head else {
            return Ok(None);
        };
        let k = head.into_domain()?.boundary_index;
        let mut issued = self.read_issued_at(company, k).await?;
        if let Some(i) = issued
            .adjustments
            .iter()
            .position(|a| a.document.number == number)
        {
            let a = issued.adjustments.remove(i);
            return Ok(Some(IssuedDocument {
                document: a.document,
                note: Some(a.note),
                adjustments: Vec::new(),
            }));
        }
        Ok(issued.document.map(|document| IssuedDocument {
            document,
            note: None,
            adjustments: issued.adjustments,
        }))
    }

    /// The usage of `company` that closes after boundary `k` rated late.
    pub(super) async fn read_rated_late_after(
        &self,
        company: &CompanyId,
        k: u32,
    ) -> anyhow::Result<BTreeSet<String>> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM usage_ratings WHERE company_id = $1 AND late AND boundary_index > $2",
        )
        .bind(company.to_string())
        .bind(i64::from(k))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// Records a re-run; its adjustment is claimed by number first.
    pub(super) async fn write_rerun(&self, run: &RerunRun) -> anyhow::Result<RerunCommit> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let mut items = 0;
        if let Some(Adjustment { document, note }) = &run.adjustment {
            let claimed: Option<(String,)> = sqlx::query_as(
                "INSERT INTO invoice_adjustments (company_id, number, adjusts, reason, issued_by, \
                 issued_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (company_id, number) DO NOTHING RETURNING number",
            )
            .bind(run.company.to_string())
            .bind(document.number.clone())
            .bind(note.adjusts.clone())
            .bind(note.reason.clone())
            .bind(note.by.clone())
            .bind(rows::instant(note.at))
            .fetch_optional(&mut *tx)
            .await?;
            if claimed.is_none() {
                tx.rollback().await?;
                return Ok(RerunCommit::Raced);
            }
            Self::insert_document(&mut tx, document).await?;
            Self::insert_card_charges(&mut tx, run.card_charge.as_slice()).await?;
            items = document.lines.len() as i64;
        }
        let status = if run.adjustment.is_some() {
            JobStatus::Adjusted
        } else {
            JobStatus::Identical
        };
        sqlx::query(
            "INSERT INTO job_runs (company_id, boundary_index, boundary_at, boundary_date, job, \
             status, items, started_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(run.company.to_string())
        .bind(i64::from(run.boundary_index))
        .bind(rows::instant(run.boundary_at))
        .bind(rows::date(run.boundary))
        .bind(Job::Rerun.as_str())
        .bind(status.as_str())
        .bind(items)
        .bind(rows::instant(run.started_at))
        .bind(rows::instant(run.finished_at))
        .execute(&mut *tx)
        .await?;
        crate::failpoint::hit("commit:rerun");
        tx.commit().await?;
        Ok(RerunCommit::Recorded)
    }
}
