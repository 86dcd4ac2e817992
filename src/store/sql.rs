//! The SQL both backends share. Both speak `$n` placeholders, `ON CONFLICT` and `RETURNING`,
//! and store only integers and text, so one body serves both: `sql_store!` expands it for a
//! concrete pool type. Each backend adds its connection setup, migrations, the statement that
//! begins a write transaction, and its own bulk inserts of ledger entries and ratings (many-row
//! `VALUES` on SQLite, `UNNEST` of arrays on PostgreSQL, whose planner is slow on thousands of
//! parameters).

macro_rules! sql_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Appends card charges.
            async fn insert_card_charges(
                tx: &mut sqlx::Transaction<'static, $db>,
                charges: &[$crate::store::CardCharge],
            ) -> anyhow::Result<()> {
                use $crate::store::codec;
                for c in charges {
                    sqlx::query("INSERT INTO card_charges (company_id, at, kind, amount, currency, reference) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(&c.company).bind(codec::instant(c.at)).bind(&c.kind).bind(codec::money(c.amount)?)
                        .bind(&c.currency).bind(&c.reference)
                        .execute(&mut **tx).await?;
                }
                Ok(())
            }

            fn event_from_row(r: &<$db as sqlx::Database>::Row) -> anyhow::Result<$crate::domain::model::Event> {
                use sqlx::Row as _;
                use $crate::store::codec;
                let payload: String = r.try_get("payload")?;
                Ok($crate::domain::model::Event {
                    at: codec::at(r.try_get("at")?)?,
                    company: r.try_get("company_id")?,
                    source: r.try_get("source")?,
                    line: r.try_get("line")?,
                    id: r.try_get("event_id")?,
                    kind: serde_json::from_str(&payload)?,
                })
            }

            fn ledger_from_row(r: &<$db as sqlx::Database>::Row) -> anyhow::Result<$crate::store::LedgerRow> {
                use sqlx::Row as _;
                use $crate::store::codec;
                let kind: String = r.try_get("entry")?;
                let expires: Option<i64> = r.try_get("expires_at")?;
                Ok($crate::store::LedgerRow {
                    seq: r.try_get("seq")?,
                    company: r.try_get("company_id")?,
                    entry: $crate::domain::wallets::LedgerEntry {
                        at: codec::at(r.try_get("at")?)?,
                        scope: r.try_get("scope")?,
                        wallet: r.try_get("wallet")?,
                        kind: $crate::domain::wallets::EntryKind::parse(&kind)
                            .ok_or_else(|| anyhow::anyhow!("stored ledger entry kind {kind:?}"))?,
                        amount: codec::amount(r.try_get("amount")?),
                        reference: r.try_get("reference")?,
                        expires_at: expires.map(codec::at).transpose()?,
                    },
                })
            }

            fn usage_from_row(r: &<$db as sqlx::Database>::Row) -> anyhow::Result<$crate::domain::usage::Usage> {
                use sqlx::Row as _;
                use $crate::store::codec;
                Ok($crate::domain::usage::Usage {
                    company: r.try_get("company_id")?,
                    id: r.try_get("id")?,
                    source: r.try_get("source")?,
                    line: r.try_get("line")?,
                    occurred_at: codec::at(r.try_get("occurred_at")?)?,
                    received_at: codec::at(r.try_get("received_at")?)?,
                    office: r.try_get("office")?,
                    party: r.try_get("party")?,
                    service: r.try_get("service")?,
                    usage_type: r.try_get("usage_type")?,
                    direction: r.try_get("direction")?,
                    remote_number: r.try_get("remote_number")?,
                    number_used: r.try_get("number_used")?,
                    duration_s: r.try_get("duration_s")?,
                    billable_quantity: r.try_get("billable_quantity")?,
                    unit: r.try_get("unit")?,
                    rate: r.try_get("rate")?,
                    increment: r.try_get("increment")?,
                    cost: codec::amount(r.try_get("cost")?),
                    content: r.try_get("content")?,
                })
            }
        }

        impl $crate::store::Store for $store {
            async fn migrate(&self) -> anyhow::Result<()> {
                self.run_migrations().await
            }

            async fn save_world(&self, world: &$crate::domain::model::World) -> anyhow::Result<()> {
                use $crate::store::codec;
                use $crate::domain::model::{AdminRole, PartyKind};
                let mut tx = self.begin_write().await?;
                for c in world.companies.values() {
                    for table in [
                        "DELETE FROM offices WHERE company_id = $1",
                        "DELETE FROM parties WHERE company_id = $1",
                        "DELETE FROM admins WHERE company_id = $1",
                        "DELETE FROM initial_pools WHERE company_id = $1",
                        "DELETE FROM bundles WHERE company_id = $1",
                        "DELETE FROM allowances WHERE company_id = $1",
                    ] {
                        sqlx::query(table).bind(&c.id).execute(&mut *tx).await?;
                    }
                    let (threshold, amount) = match &c.auto_recharge {
                        Some(a) => (Some(codec::money(a.threshold)?), Some(codec::money(a.amount)?)),
                        None => (None, None),
                    };
                    sqlx::query(
                        "INSERT INTO companies (id, name, time_zone, currency, anchor, billing, card_verified, \
                         credit_sharing, primary_office, ar_threshold, ar_amount) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                         ON CONFLICT (id) DO UPDATE SET name = excluded.name, time_zone = excluded.time_zone, \
                         currency = excluded.currency, anchor = excluded.anchor, billing = excluded.billing, \
                         card_verified = excluded.card_verified, credit_sharing = excluded.credit_sharing, \
                         primary_office = excluded.primary_office, ar_threshold = excluded.ar_threshold, \
                         ar_amount = excluded.ar_amount",
                    )
                    .bind(&c.id)
                    .bind(&c.name)
                    .bind(c.time_zone.name())
                    .bind(c.currency.code())
                    .bind(codec::date(c.anchor))
                    .bind(c.billing.as_str())
                    .bind(c.card_verified)
                    .bind(match c.credit_sharing {
                        $crate::domain::model::CreditSharing::Company => "company",
                        $crate::domain::model::CreditSharing::Office => "office",
                    })
                    .bind(&c.primary_office)
                    .bind(threshold)
                    .bind(amount)
                    .execute(&mut *tx)
                    .await?;
                }
                for (ord, o) in world.offices.iter().enumerate() {
                    sqlx::query("INSERT INTO offices (company_id, id, name, ord) VALUES ($1, $2, $3, $4)")
                        .bind(&o.company).bind(&o.id).bind(&o.name).bind(ord as i64)
                        .execute(&mut *tx).await?;
                }
                for (ord, p) in world.parties.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO parties (company_id, id, kind, office_id, name, phone, product, ord) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&p.company).bind(&p.id)
                    .bind(if p.kind == PartyKind::User { "user" } else { "group" })
                    .bind(&p.office).bind(&p.name).bind(&p.phone).bind(&p.product).bind(ord as i64)
                    .execute(&mut *tx).await?;
                }
                for (ord, a) in world.admins.iter().enumerate() {
                    let office = match &a.role {
                        AdminRole::Company => None,
                        AdminRole::Office(o) => Some(o.clone()),
                    };
                    sqlx::query("INSERT INTO admins (company_id, email, office_id, ord) VALUES ($1, $2, $3, $4)")
                        .bind(&a.company).bind(&a.email).bind(office).bind(ord as i64)
                        .execute(&mut *tx).await?;
                }
                for p in world.products.values() {
                    sqlx::query(
                        "INSERT INTO products (code, name, term, unit_price) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (code) DO UPDATE SET name = excluded.name, term = excluded.term, \
                         unit_price = excluded.unit_price",
                    )
                    .bind(&p.code).bind(&p.name).bind(p.term.as_str()).bind(codec::money(p.unit_price)?)
                    .execute(&mut *tx).await?;
                }
                for (ord, p) in world.pools.iter().enumerate() {
                    sqlx::query("INSERT INTO initial_pools (company_id, office_id, product, quantity, ord) VALUES ($1, $2, $3, $4, $5)")
                        .bind(&p.company).bind(&p.office).bind(&p.product).bind(p.quantity).bind(ord as i64)
                        .execute(&mut *tx).await?;
                }
                for (ord, b) in world.bundles.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO bundles (company_id, id, scope, kind, credits, fee, cadence, start, ord) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(&b.company).bind(&b.id).bind(&b.scope)
                    .bind(match b.kind {
                        $crate::domain::model::BundleKind::Telephony => "telephony",
                        $crate::domain::model::BundleKind::Ai => "ai",
                    })
                    .bind(codec::money(b.credits)?).bind(codec::money(b.fee)?)
                    .bind(b.cadence.as_str()).bind(codec::date(b.start)).bind(ord as i64)
                    .execute(&mut *tx).await?;
                }
                for (ord, a) in world.allowances.iter().enumerate() {
                    sqlx::query("INSERT INTO allowances (company_id, ord, service, amount) VALUES ($1, $2, $3, $4)")
                        .bind(&a.company).bind(ord as i64).bind(&a.service).bind(codec::money(a.amount)?)
                        .execute(&mut *tx).await?;
                }
                if !world.rates.is_empty() {
                    sqlx::query("DELETE FROM rates").execute(&mut *tx).await?;
                    for (ord, r) in world.rates.iter().enumerate() {
                        sqlx::query(
                            "INSERT INTO rates (ord, service, usage_type, direction, prefix, product, price, increment) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        )
                        .bind(ord as i64).bind(&r.service).bind(&r.usage_type).bind(&r.direction)
                        .bind(&r.prefix).bind(&r.product).bind(r.price.to_string())
                        .bind(r.increment.map(|(a, b)| format!("{a}/{b}")))
                        .execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn world(&self) -> anyhow::Result<$crate::domain::model::World> {
                use anyhow::Context as _;
                use sqlx::Row as _;
                use $crate::store::codec;
                use $crate::domain::model::*;
                let mut world = World::default();
                let rows = sqlx::query("SELECT id, name, time_zone, currency, anchor, billing, card_verified, credit_sharing, primary_office, ar_threshold, ar_amount FROM companies ORDER BY id")
                    .fetch_all(&self.pool).await?;
                for r in rows {
                    let id: String = r.try_get("id")?;
                    let tz: String = r.try_get("time_zone")?;
                    let currency: String = r.try_get("currency")?;
                    let threshold: Option<i64> = r.try_get("ar_threshold")?;
                    let amount: Option<i64> = r.try_get("ar_amount")?;
                    let company = Company {
                        name: r.try_get("name")?,
                        time_zone: tz.parse().map_err(|_| anyhow::anyhow!("stored time zone {tz:?}"))?,
                        currency: $crate::domain::money::Currency::from_code(&currency).with_context(|| format!("stored currency {currency:?}"))?,
                        anchor: codec::parse_date(&r.try_get::<String, _>("anchor")?)?,
                        billing: if r.try_get::<String, _>("billing")? == "card" { Billing::Card } else { Billing::Invoiced },
                        card_verified: r.try_get("card_verified")?,
                        credit_sharing: if r.try_get::<String, _>("credit_sharing")? == "office" { CreditSharing::Office } else { CreditSharing::Company },
                        primary_office: r.try_get("primary_office")?,
                        auto_recharge: match (threshold, amount) {
                            (Some(t), Some(a)) => Some(AutoRecharge { threshold: codec::amount(t), amount: codec::amount(a) }),
                            _ => None,
                        },
                        id: id.clone(),
                    };
                    world.companies.insert(id, company);
                }
                for r in sqlx::query("SELECT company_id, id, name FROM offices ORDER BY ord, company_id").fetch_all(&self.pool).await? {
                    world.offices.push(Office { company: r.try_get("company_id")?, id: r.try_get("id")?, name: r.try_get("name")? });
                }
                for r in sqlx::query("SELECT company_id, id, kind, office_id, name, phone, product FROM parties ORDER BY ord, company_id").fetch_all(&self.pool).await? {
                    world.parties.push(Party {
                        id: r.try_get("id")?,
                        kind: if r.try_get::<String, _>("kind")? == "group" { PartyKind::Group } else { PartyKind::User },
                        company: r.try_get("company_id")?,
                        office: r.try_get("office_id")?,
                        name: r.try_get("name")?,
                        phone: r.try_get("phone")?,
                        product: r.try_get("product")?,
                    });
                }
                for r in sqlx::query("SELECT company_id, email, office_id FROM admins ORDER BY ord, company_id").fetch_all(&self.pool).await? {
                    let office: Option<String> = r.try_get("office_id")?;
                    world.admins.push(Admin {
                        email: r.try_get("email")?,
                        company: r.try_get("company_id")?,
                        role: office.map_or(AdminRole::Company, AdminRole::Office),
                    });
                }
                for r in sqlx::query("SELECT code, name, term, unit_price FROM products ORDER BY code").fetch_all(&self.pool).await? {
                    let code: String = r.try_get("code")?;
                    world.products.insert(code.clone(), Product {
                        code,
                        name: r.try_get("name")?,
                        term: if r.try_get::<String, _>("term")? == "annual" { $crate::domain::grid::Term::Annual } else { $crate::domain::grid::Term::Monthly },
                        unit_price: codec::amount(r.try_get("unit_price")?),
                    });
                }
                for r in sqlx::query("SELECT company_id, office_id, product, quantity FROM initial_pools ORDER BY ord, company_id").fetch_all(&self.pool).await? {
                    world.pools.push(InitialPool { company: r.try_get("company_id")?, office: r.try_get("office_id")?, product: r.try_get("product")?, quantity: r.try_get("quantity")? });
                }
                for r in sqlx::query("SELECT company_id, id, scope, kind, credits, fee, cadence, start FROM bundles ORDER BY ord, company_id").fetch_all(&self.pool).await? {
                    world.bundles.push(Bundle {
                        id: r.try_get("id")?,
                        company: r.try_get("company_id")?,
                        scope: r.try_get("scope")?,
                        kind: if r.try_get::<String, _>("kind")? == "ai" { BundleKind::Ai } else { BundleKind::Telephony },
                        credits: codec::amount(r.try_get("credits")?),
                        fee: codec::amount(r.try_get("fee")?),
                        cadence: if r.try_get::<String, _>("cadence")? == "annual" { $crate::domain::grid::Term::Annual } else { $crate::domain::grid::Term::Monthly },
                        start: codec::parse_date(&r.try_get::<String, _>("start")?)?,
                    });
                }
                for r in sqlx::query("SELECT company_id, service, amount FROM allowances ORDER BY ord, company_id").fetch_all(&self.pool).await? {
                    world.allowances.push(Allowance { company: r.try_get("company_id")?, service: r.try_get("service")?, amount: codec::amount(r.try_get("amount")?) });
                }
                for r in sqlx::query("SELECT service, usage_type, direction, prefix, product, price, increment FROM rates ORDER BY ord").fetch_all(&self.pool).await? {
                    let increment: Option<String> = r.try_get("increment")?;
                    world.rates.push(Rate {
                        service: r.try_get("service")?,
                        usage_type: r.try_get("usage_type")?,
                        direction: r.try_get("direction")?,
                        prefix: r.try_get("prefix")?,
                        product: r.try_get("product")?,
                        price: {
                            let p: String = r.try_get("price")?;
                            p.parse().with_context(|| format!("stored price {p:?}"))?
                        },
                        increment: increment.map(|s| $crate::fixture::values::increment(&s)).transpose().map_err(anyhow::Error::msg)?,
                    });
                }
                Ok(world.indexed())
            }

            async fn record_events(&self, batch: &$crate::store::EventBatch) -> anyhow::Result<()> {
                use $crate::store::codec;
                if batch.events.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM events")
                    .fetch_one(&mut *tx).await?;
                for (i, r) in batch.events.iter().enumerate() {
                    let e = &r.event;
                    sqlx::query(
                        "INSERT INTO events (company_id, seq, at, source, line, event_id, kind, payload, accepted) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(&e.company).bind(next + i as i64).bind(codec::instant(e.at))
                    .bind(&e.source).bind(e.line).bind(&e.id).bind(e.kind.type_name())
                    .bind(serde_json::to_string(&e.kind)?).bind(r.rejection.is_none())
                    .execute(&mut *tx).await?;
                    if let Some(reason) = &r.rejection {
                        sqlx::query("INSERT INTO rejections (company_id, source, line, item_id, reason) VALUES ($1, $2, $3, $4, $5)")
                            .bind(&e.company).bind(&e.source).bind(e.line).bind("").bind(reason)
                            .execute(&mut *tx).await?;
                    }
                }
                let entries: Vec<(&str, &$crate::domain::wallets::LedgerEntry)> =
                    batch.ledger.iter().map(|(c, e)| (c.as_str(), e)).collect();
                Self::insert_ledger(&mut tx, &entries).await?;
                Self::insert_card_charges(&mut tx, &batch.card_charges).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn record_usage(&self, batch: &$crate::store::UsageBatch) -> anyhow::Result<()> {
                use $crate::store::codec;
                if batch.accepted.is_empty() && batch.rejections.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                for chunk in batch.accepted.chunks(400) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO usage (company_id, id, source, line, occurred_at, received_at, office, party, service, \
                         usage_type, direction, remote_number, number_used, duration_s, billable_quantity, unit, rate, \
                         increment, cost, content) ",
                    );
                    let mut bad = None;
                    qb.push_values(chunk, |mut b, u| {
                        let cost = codec::money(u.cost).unwrap_or_else(|e| { bad = Some(e); 0 });
                        b.push_bind(u.company.clone()).push_bind(u.id.clone()).push_bind(u.source.clone())
                            .push_bind(u.line).push_bind(codec::instant(u.occurred_at)).push_bind(codec::instant(u.received_at))
                            .push_bind(u.office.clone()).push_bind(u.party.clone()).push_bind(u.service.clone())
                            .push_bind(u.usage_type.clone()).push_bind(u.direction.clone()).push_bind(u.remote_number.clone())
                            .push_bind(u.number_used.clone()).push_bind(u.duration_s.clone()).push_bind(u.billable_quantity)
                            .push_bind(u.unit.clone()).push_bind(u.rate.clone()).push_bind(u.increment.clone())
                            .push_bind(cost).push_bind(u.content.clone());
                    });
                    if let Some(e) = bad {
                        return Err(e);
                    }
                    qb.build().execute(&mut *tx).await?;
                }
                for (company, r) in &batch.rejections {
                    sqlx::query("INSERT INTO rejections (company_id, source, line, item_id, reason) VALUES ($1, $2, $3, $4, $5)")
                        .bind(company).bind(&r.source).bind(r.line).bind(&r.id).bind(&r.reason)
                        .execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn usage_contents(&self, ids: &[String]) -> anyhow::Result<Vec<(String, String)>> {
                use sqlx::Row as _;
                let mut out = Vec::new();
                for chunk in ids.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT id, content FROM usage WHERE id IN (");
                    let mut sep = qb.separated(", ");
                    for id in chunk {
                        sep.push_bind(id.clone());
                    }
                    qb.push(")");
                    for r in qb.build().fetch_all(&self.pool).await? {
                        out.push((r.try_get("id")?, r.try_get("content")?));
                    }
                }
                Ok(out)
            }

            async fn unrated_usage(&self, bounds: &[(String, chrono::DateTime<chrono::Utc>)]) -> anyhow::Result<Vec<$crate::domain::usage::Unrated>> {
                use sqlx::Row as _;
                use $crate::store::codec;
                let mut out = Vec::new();
                for chunk in bounds.chunks(400) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("WITH bounds (company_id, until) AS (");
                    qb.push_values(chunk, |mut b, (company, until)| {
                        b.push_bind(company.clone()).push_bind(codec::instant(*until));
                    });
                    qb.push(
                        ") SELECT u.company_id, u.id, u.occurred_at, u.received_at, u.office, u.service, u.cost \
                         FROM usage u JOIN bounds b ON b.company_id = u.company_id \
                         WHERE u.occurred_at < b.until AND u.received_at < b.until \
                         AND NOT EXISTS (SELECT 1 FROM usage_ratings r WHERE r.company_id = u.company_id AND r.id = u.id)",
                    );
                    for r in qb.build().fetch_all(&self.pool).await? {
                        out.push($crate::domain::usage::Unrated {
                            company: r.try_get("company_id")?,
                            id: r.try_get("id")?,
                            occurred_at: codec::at(r.try_get("occurred_at")?)?,
                            received_at: codec::at(r.try_get("received_at")?)?,
                            office: r.try_get("office")?,
                            service: r.try_get("service")?,
                            cost: codec::amount(r.try_get("cost")?),
                        });
                    }
                }
                Ok(out)
            }

            async fn accepted_events_in(&self, companies: &[String], types: Option<&[&str]>) -> anyhow::Result<Vec<$crate::domain::model::Event>> {
                let mut out = Vec::new();
                for chunk in companies.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT company_id, at, source, line, event_id, payload FROM events WHERE accepted AND company_id IN (",
                    );
                    let mut sep = qb.separated(", ");
                    for c in chunk {
                        sep.push_bind(c.clone());
                    }
                    qb.push(")");
                    if let Some(types) = types {
                        qb.push(" AND kind IN (");
                        let mut sep = qb.separated(", ");
                        for t in types {
                            sep.push_bind(t.to_string());
                        }
                        qb.push(")");
                    }
                    qb.push(" ORDER BY seq");
                    for r in qb.build().fetch_all(&self.pool).await? {
                        out.push(Self::event_from_row(&r)?);
                    }
                }
                Ok(out)
            }

            async fn ledger_in(&self, companies: &[String]) -> anyhow::Result<Vec<$crate::store::LedgerRow>> {
                let mut out = Vec::new();
                for chunk in companies.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT seq, company_id, at, scope, wallet, entry, amount, reference, expires_at FROM ledger_entries WHERE company_id IN (",
                    );
                    let mut sep = qb.separated(", ");
                    for c in chunk {
                        sep.push_bind(c.clone());
                    }
                    qb.push(") ORDER BY seq");
                    for r in qb.build().fetch_all(&self.pool).await? {
                        out.push(Self::ledger_from_row(&r)?);
                    }
                }
                Ok(out)
            }

            async fn usage_records(&self, company: Option<&str>) -> anyhow::Result<Vec<($crate::domain::usage::Usage, $crate::domain::usage::Rating)>> {
                use sqlx::Row as _;
                let sql = "SELECT u.*, r.boundary_index, r.wallet_sources, r.late FROM usage u \
                           JOIN usage_ratings r ON r.company_id = u.company_id AND r.id = u.id";
                let rows = match company {
                    Some(c) => sqlx::query(sqlx::AssertSqlSafe(format!("{sql} WHERE u.company_id = $1 ORDER BY u.occurred_at, u.id")))
                        .bind(c).fetch_all(&self.pool).await?,
                    None => sqlx::query(sqlx::AssertSqlSafe(format!("{sql} ORDER BY u.occurred_at, u.id")))
                        .fetch_all(&self.pool).await?,
                };
                rows.iter()
                    .map(|r| {
                        let usage = Self::usage_from_row(r)?;
                        let rating = $crate::domain::usage::Rating {
                            id: usage.id.clone(),
                            boundary_index: $crate::store::codec::index(r.try_get("boundary_index")?)?,
                            wallet_sources: r.try_get("wallet_sources")?,
                            late: r.try_get("late")?,
                        };
                        Ok((usage, rating))
                    })
                    .collect()
            }

            async fn ledger(&self, company: Option<&str>) -> anyhow::Result<Vec<$crate::store::LedgerRow>> {
                let sql = "SELECT seq, company_id, at, scope, wallet, entry, amount, reference, expires_at FROM ledger_entries";
                let rows = match company {
                    Some(c) => sqlx::query(sqlx::AssertSqlSafe(format!("{sql} WHERE company_id = $1 ORDER BY seq")))
                        .bind(c).fetch_all(&self.pool).await?,
                    None => sqlx::query(sqlx::AssertSqlSafe(format!("{sql} ORDER BY seq")))
                        .fetch_all(&self.pool).await?,
                };
                rows.iter().map(Self::ledger_from_row).collect()
            }

            async fn accepted_events(&self, company: Option<&str>) -> anyhow::Result<Vec<$crate::domain::model::Event>> {
                let rows = match company {
                    Some(c) => sqlx::query("SELECT company_id, at, source, line, event_id, payload FROM events WHERE accepted AND company_id = $1 ORDER BY seq")
                        .bind(c).fetch_all(&self.pool).await?,
                    None => sqlx::query("SELECT company_id, at, source, line, event_id, payload FROM events WHERE accepted ORDER BY seq")
                        .fetch_all(&self.pool).await?,
                };
                rows.iter().map(Self::event_from_row).collect()
            }

            async fn last_event_at(&self, company: &str) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
                let at: Option<i64> = sqlx::query_scalar("SELECT MAX(at) FROM events WHERE company_id = $1")
                    .bind(company).fetch_one(&self.pool).await?;
                at.map($crate::store::codec::at).transpose()
            }

            async fn completed_steps(&self) -> anyhow::Result<Vec<(String, u32, String)>> {
                use sqlx::Row as _;
                sqlx::query("SELECT company_id, boundary_index, job FROM job_runs WHERE status = 'ok'")
                    .fetch_all(&self.pool).await?
                    .into_iter()
                    .map(|r| Ok((r.try_get("company_id")?, $crate::store::codec::index(r.try_get("boundary_index")?)?, r.try_get("job")?)))
                    .collect()
            }

            async fn open_steps(&self, companies: &[String]) -> anyhow::Result<Vec<(String, u32, String)>> {
                use sqlx::Row as _;
                let mut out = Vec::new();
                for chunk in companies.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT j.company_id, j.boundary_index, j.job FROM job_runs j \
                         WHERE j.status = 'ok' AND j.boundary_index >= COALESCE((SELECT MAX(g.boundary_index) FROM job_runs g \
                         WHERE g.company_id = j.company_id AND g.job = 'grant' AND g.status = 'ok'), 0) AND j.company_id IN (",
                    );
                    let mut sep = qb.separated(", ");
                    for c in chunk {
                        sep.push_bind(c.clone());
                    }
                    qb.push(")");
                    for r in qb.build().fetch_all(&self.pool).await? {
                        out.push((
                            r.try_get("company_id")?,
                            $crate::store::codec::index(r.try_get("boundary_index")?)?,
                            r.try_get("job")?,
                        ));
                    }
                }
                Ok(out)
            }

            async fn latest_closes(&self) -> anyhow::Result<Vec<(String, u32)>> {
                use sqlx::Row as _;
                sqlx::query("SELECT company_id, MAX(boundary_index) AS k FROM job_runs WHERE status = 'ok' GROUP BY company_id")
                    .fetch_all(&self.pool).await?
                    .into_iter()
                    .map(|r| Ok((r.try_get("company_id")?, $crate::store::codec::index(r.try_get("k")?)?)))
                    .collect()
            }

            async fn commit_steps(&self, steps: &[($crate::store::StepRun, $crate::store::StepEffects)]) -> anyhow::Result<bool> {
                use $crate::store::codec;
                if steps.is_empty() {
                    return Ok(true);
                }
                let mut tx = self.begin_write().await?;
                // Every company whose steps run under a lease must still be held by it: same
                // owner, same fence. The leases are renewed as they are checked.
                let mut held: std::collections::BTreeMap<&str, (&$crate::store::Lease, i64)> = Default::default();
                for (run, _) in steps {
                    if let Some(lease) = &run.lease {
                        let until = codec::instant(run.finished_at).saturating_add(lease.ttl_micros);
                        let e = held.entry(run.company.as_str()).or_insert((lease, until));
                        e.1 = e.1.max(until);
                    }
                }
                let leases: Vec<(&str, &$crate::store::Lease, i64)> = held.into_iter().map(|(c, (l, u))| (c, l, u)).collect();
                for chunk in leases.chunks(200) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE company_leases SET lease_until = CASE company_id");
                    for (company, _, until) in chunk {
                        qb.push(" WHEN ").push_bind(company.to_string()).push(" THEN ").push_bind(*until);
                    }
                    qb.push(" END WHERE ");
                    let mut sep = qb.separated(" OR ");
                    for (company, lease, _) in chunk {
                        sep.push("(company_id = ").push_bind_unseparated(company.to_string())
                            .push_unseparated(" AND owner = ").push_bind_unseparated(lease.owner.clone())
                            .push_unseparated(" AND fence = ").push_bind_unseparated(lease.fence)
                            .push_unseparated(")");
                    }
                    let renewed = qb.build().execute(&mut *tx).await?.rows_affected();
                    if renewed < chunk.len() as u64 {
                        tx.rollback().await?;
                        let company = chunk.iter().map(|(c, _, _)| *c).collect::<Vec<_>>().join(", ");
                        return Err($crate::store::Fenced { company }.into());
                    }
                }
                // One claim row per step, in few statements; a step someone else completed
                // returns no row, and then nothing of this commit is written.
                let mut claimed = 0;
                for chunk in steps.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO job_runs (company_id, boundary_index, boundary_at, boundary_date, job, status, items, started_at, finished_at) ",
                    );
                    qb.push_values(chunk, |mut b, (run, effects)| {
                        b.push_bind(run.company.clone()).push_bind(i64::from(run.boundary_index))
                            .push_bind(codec::instant(run.boundary_at)).push_bind(codec::date(run.boundary))
                            .push_bind(run.job).push_bind("ok").push_bind(effects.items)
                            .push_bind(codec::instant(run.started_at)).push_bind(codec::instant(run.finished_at));
                    });
                    qb.push(" ON CONFLICT (company_id, boundary_index, job) DO NOTHING RETURNING seq");
                    claimed += qb.build().fetch_all(&mut *tx).await?.len();
                }
                if claimed < steps.len() {
                    tx.rollback().await?;
                    return Ok(false);
                }
                for (run, effects) in steps {
                    for r in &effects.removals {
                        sqlx::query("INSERT INTO license_removals (company_id, boundary_index, office_id, product, quantity) VALUES ($1, $2, $3, $4, $5)")
                            .bind(&run.company).bind(i64::from(r.boundary)).bind(&r.pool.0).bind(&r.pool.1).bind(r.removed)
                            .execute(&mut *tx).await?;
                    }
                    if let Some(d) = &effects.document {
                        sqlx::query(
                            "INSERT INTO invoices (company_id, number, kind, boundary_index, boundary, period_start, period_end, currency, total) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        )
                        .bind(&d.company).bind(&d.number).bind(d.kind.as_str()).bind(i64::from(d.boundary_index))
                        .bind(codec::date(d.boundary)).bind(codec::date(d.period_start)).bind(codec::date(d.period_end))
                        .bind(&d.currency).bind(codec::money(d.total())?)
                        .execute(&mut *tx).await?;
                        let mut lines = Vec::with_capacity(d.lines.len());
                        for (i, l) in d.lines.iter().enumerate() {
                            lines.push((i as i64 + 1, l, l.unit_price.map(codec::money).transpose()?, codec::money(l.amount)?));
                        }
                        for chunk in lines.chunks(400) {
                            let mut qb = sqlx::QueryBuilder::<$db>::new(
                                "INSERT INTO invoice_lines (company_id, number, line_no, kind, office, product, description, quantity, unit_price, amount, source) ",
                            );
                            qb.push_values(chunk, |mut b, (no, l, price, amount)| {
                                b.push_bind(d.company.clone()).push_bind(d.number.clone()).push_bind(*no)
                                    .push_bind(l.kind.as_str()).push_bind(l.office.clone()).push_bind(l.product.clone())
                                    .push_bind(l.description.clone()).push_bind(l.quantity).push_bind(*price)
                                    .push_bind(*amount).push_bind(l.source.clone());
                            });
                            qb.build().execute(&mut *tx).await?;
                        }
                    }
                    Self::insert_card_charges(&mut tx, &effects.card_charges).await?;
                    $crate::failpoint::hit(&format!("commit:{}", run.job));
                }
                // The ledger entries and ratings of all the steps, in step order, in as few
                // statements as their number allows.
                let entries: Vec<(&str, &$crate::domain::wallets::LedgerEntry)> = steps
                    .iter()
                    .flat_map(|(run, effects)| effects.ledger.iter().map(move |e| (run.company.as_str(), e)))
                    .collect();
                Self::insert_ledger(&mut tx, &entries).await?;
                let ratings: Vec<(&str, &$crate::domain::usage::Rating)> = steps
                    .iter()
                    .flat_map(|(run, effects)| effects.ratings.iter().map(move |r| (run.company.as_str(), r)))
                    .collect();
                Self::insert_ratings(&mut tx, &ratings).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn acquire_leases(
                &self,
                companies: &[String],
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                until: chrono::DateTime<chrono::Utc>,
            ) -> anyhow::Result<Vec<(String, i64)>> {
                use sqlx::Row as _;
                use $crate::store::codec;
                let mut taken = Vec::new();
                for chunk in companies.chunks(500) {
                    let mut tx = self.begin_write().await?;
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO company_leases (company_id, owner, fence, lease_until) ",
                    );
                    qb.push_values(chunk, |mut b, company| {
                        b.push_bind(company.clone()).push_bind(owner.to_string()).push_bind(1_i64)
                            .push_bind(codec::instant(until));
                    });
                    qb.push(
                        " ON CONFLICT (company_id) DO UPDATE SET owner = excluded.owner, \
                         fence = company_leases.fence + 1, lease_until = excluded.lease_until \
                         WHERE company_leases.lease_until <= ",
                    );
                    qb.push_bind(codec::instant(now));
                    qb.push(" OR company_leases.owner = excluded.owner RETURNING company_id, fence");
                    for r in qb.build().fetch_all(&mut *tx).await? {
                        taken.push((r.try_get("company_id")?, r.try_get("fence")?));
                    }
                    tx.commit().await?;
                }
                Ok(taken)
            }

            async fn release_leases(&self, companies: &[String], owner: &str) -> anyhow::Result<()> {
                for chunk in companies.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE company_leases SET lease_until = 0 WHERE owner = ");
                    qb.push_bind(owner.to_string()).push(" AND company_id IN (");
                    let mut sep = qb.separated(", ");
                    for c in chunk {
                        sep.push_bind(c.clone());
                    }
                    qb.push(")");
                    qb.build().execute(&self.pool).await?;
                }
                Ok(())
            }

            async fn record_failure(&self, f: &$crate::store::StepFailure) -> anyhow::Result<()> {
                use $crate::store::codec;
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO job_failures (company_id, boundary_index, boundary_date, job, error, failed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&f.company).bind(i64::from(f.boundary_index)).bind(codec::date(f.boundary))
                .bind(&f.job).bind(&f.error).bind(codec::instant(f.failed_at))
                .execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn failures(&self) -> anyhow::Result<Vec<$crate::store::StepFailure>> {
                use sqlx::Row as _;
                use $crate::store::codec;
                sqlx::query("SELECT company_id, boundary_index, boundary_date, job, error, failed_at FROM job_failures ORDER BY seq")
                    .fetch_all(&self.pool).await?
                    .into_iter()
                    .map(|r| Ok($crate::store::StepFailure {
                        job: r.try_get("job")?,
                        company: r.try_get("company_id")?,
                        boundary_index: codec::index(r.try_get("boundary_index")?)?,
                        boundary: codec::parse_date(&r.try_get::<String, _>("boundary_date")?)?,
                        error: r.try_get("error")?,
                        failed_at: codec::at(r.try_get("failed_at")?)?,
                    }))
                    .collect()
            }

            async fn documents(&self) -> anyhow::Result<Vec<$crate::domain::invoice::Document>> {
                use sqlx::Row as _;
                use $crate::store::codec;
                use $crate::domain::invoice::{Document, DocumentKind, Line, LineKind};
                let mut docs = Vec::new();
                let mut index = std::collections::BTreeMap::new();
                for r in sqlx::query("SELECT company_id, number, kind, boundary_index, boundary, period_start, period_end, currency FROM invoices ORDER BY boundary, company_id, number")
                    .fetch_all(&self.pool).await?
                {
                    let kind: String = r.try_get("kind")?;
                    let doc = Document {
                        number: r.try_get("number")?,
                        company: r.try_get("company_id")?,
                        kind: DocumentKind::parse(&kind).ok_or_else(|| anyhow::anyhow!("stored document kind {kind:?}"))?,
                        boundary_index: codec::index(r.try_get("boundary_index")?)?,
                        boundary: codec::parse_date(&r.try_get::<String, _>("boundary")?)?,
                        period_start: codec::parse_date(&r.try_get::<String, _>("period_start")?)?,
                        period_end: codec::parse_date(&r.try_get::<String, _>("period_end")?)?,
                        lines: Vec::new(),
                        currency: r.try_get("currency")?,
                    };
                    index.insert((doc.company.clone(), doc.number.clone()), docs.len());
                    docs.push(doc);
                }
                for r in sqlx::query("SELECT company_id, number, kind, office, product, description, quantity, unit_price, amount, source FROM invoice_lines ORDER BY company_id, number, line_no")
                    .fetch_all(&self.pool).await?
                {
                    let key: (String, String) = (r.try_get("company_id")?, r.try_get("number")?);
                    let kind: String = r.try_get("kind")?;
                    let unit_price: Option<i64> = r.try_get("unit_price")?;
                    let line = Line {
                        kind: LineKind::parse(&kind).ok_or_else(|| anyhow::anyhow!("stored line kind {kind:?}"))?,
                        office: r.try_get("office")?,
                        product: r.try_get("product")?,
                        description: r.try_get("description")?,
                        quantity: r.try_get("quantity")?,
                        unit_price: unit_price.map(codec::amount),
                        amount: codec::amount(r.try_get("amount")?),
                        source: r.try_get("source")?,
                    };
                    let i = *index.get(&key).ok_or_else(|| anyhow::anyhow!("invoice line of unknown invoice {}", key.1))?;
                    docs[i].lines.push(line);
                }
                Ok(docs)
            }

            async fn job_runs(&self) -> anyhow::Result<Vec<$crate::store::JobRun>> {
                use sqlx::Row as _;
                use $crate::store::codec;
                sqlx::query("SELECT job, company_id, boundary_index, boundary_date, status, items, error FROM job_runs ORDER BY seq")
                    .fetch_all(&self.pool).await?
                    .into_iter()
                    .map(|r| Ok($crate::store::JobRun {
                        job: r.try_get("job")?,
                        company: r.try_get("company_id")?,
                        boundary_index: codec::index(r.try_get("boundary_index")?)?,
                        boundary: codec::parse_date(&r.try_get::<String, _>("boundary_date")?)?,
                        status: r.try_get("status")?,
                        items: r.try_get("items")?,
                        error: r.try_get("error")?,
                    }))
                    .collect()
            }

            async fn rejections(&self) -> anyhow::Result<Vec<$crate::store::Rejection>> {
                use sqlx::Row as _;
                sqlx::query("SELECT source, line, item_id, reason FROM rejections ORDER BY seq")
                    .fetch_all(&self.pool).await?
                    .into_iter()
                    .map(|r| Ok($crate::store::Rejection {
                        source: r.try_get("source")?,
                        line: r.try_get("line")?,
                        id: r.try_get("item_id")?,
                        reason: r.try_get("reason")?,
                    }))
                    .collect()
            }

            async fn card_charges(&self) -> anyhow::Result<Vec<$crate::store::CardCharge>> {
                use sqlx::Row as _;
                use $crate::store::codec;
                sqlx::query("SELECT company_id, at, kind, amount, currency, reference FROM card_charges ORDER BY seq")
                    .fetch_all(&self.pool).await?
                    .into_iter()
                    .map(|r| Ok($crate::store::CardCharge {
                        at: codec::at(r.try_get("at")?)?,
                        company: r.try_get("company_id")?,
                        kind: r.try_get("kind")?,
                        amount: codec::amount(r.try_get("amount")?),
                        currency: r.try_get("currency")?,
                        reference: r.try_get("reference")?,
                    }))
                    .collect()
            }
        }
    };
}

pub(crate) use sql_store;
