//! The monthly usage email: what a close spent (by office, service and wallet), the spending
//! alert, the email each admin is sent (subject, summary, attachment name, a deterministic
//! `Message-ID`), its file name in an outbox, and how long a failed send waits.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;

use super::model::{Admin, Company};
use super::money::Currency;
use super::usage_history::{ExportScope, export_file_name};
use super::words::{CompanyId, OfficeId, Service, Wallet};

/// What the usage rated by one close cost, by (office, service, wallet drawn from). The sum
/// over wallets of a row's debits is its cost, so totals by service and by wallet agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spend {
    amounts: BTreeMap<(OfficeId, Service, Wallet), Decimal>,
}

impl Spend {
    /// Adds `amount` drawn from `wallet` for usage of `service` in `office`.
    pub fn add(&mut self, office: &OfficeId, service: Service, wallet: Wallet, amount: Decimal) {
        *self
            .amounts
            .entry((office.clone(), service, wallet))
            .or_default() += amount;
    }

    /// Every (office, service, wallet, amount), in that order.
    pub fn lines(&self) -> impl Iterator<Item = (&OfficeId, Service, Wallet, Decimal)> {
        self.amounts.iter().map(|((o, s, w), a)| (o, *s, *w, *a))
    }

    /// Totals by service within `scope`.
    pub fn by_service(&self, scope: &ExportScope) -> BTreeMap<Service, Decimal> {
        let mut out = BTreeMap::new();
        for (office, service, _, amount) in self.lines() {
            if scope.covers(office) {
                *out.entry(service).or_default() += amount;
            }
        }
        out
    }

    /// Totals by wallet within `scope`.
    pub fn by_wallet(&self, scope: &ExportScope) -> BTreeMap<Wallet, Decimal> {
        let mut out = BTreeMap::new();
        for (office, _, wallet, amount) in self.lines() {
            if scope.covers(office) {
                *out.entry(wallet).or_default() += amount;
            }
        }
        out
    }
}

/// A period's spend rose sharply: at least 1.5 × the previous period's and at least 10
/// currency units more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendingAlert {
    /// This period's spend.
    pub current: Decimal,
    /// The previous period's spend.
    pub previous: Decimal,
    /// The service whose spend rose most (the first in file order on a tie).
    pub service: Service,
    /// How much that service rose.
    pub rise: Decimal,
}

/// The spending alert of a period, compared with the previous close (`None` for the first
/// period, which has none).
pub fn spending_alert(
    current: &BTreeMap<Service, Decimal>,
    previous: Option<&BTreeMap<Service, Decimal>>,
) -> Option<SpendingAlert> {
    let previous = previous?;
    let now: Decimal = current.values().sum();
    let before: Decimal = previous.values().sum();
    if now < before * Decimal::new(15, 1) || now - before < Decimal::TEN {
        return None;
    }
    let rise = |s: &Service| {
        current.get(s).copied().unwrap_or_default() - previous.get(s).copied().unwrap_or_default()
    };
    let mut top: Option<(Service, Decimal)> = None;
    for s in Service::ALL {
        let r = rise(&s);
        if top.is_none_or(|(_, best)| r > best) {
            top = Some((s, r));
        }
    }
    let (service, rise) = top?;
    Some(SpendingAlert {
        current: now,
        previous: before,
        service,
        rise,
    })
}

/// An email queued by the `usage-email` step, before its attachment is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailDraft {
    /// The admin's address.
    pub recipient: String,
    /// Whose usage the attached CSV holds.
    pub scope: ExportScope,
    /// The deterministic `Message-ID`, angle brackets included.
    pub message_id: String,
    /// The subject, free of control characters.
    pub subject: String,
    /// The body's summary: totals and the spending alert.
    pub summary: String,
    /// The attachment's file name (`usage-history-<boundary date>.csv`).
    pub attachment: String,
}

/// What the email of one admin says about the period ending at boundary `k`.
pub struct EmailContext<'a> {
    /// The company.
    pub company: &'a Company,
    /// The admin's office name, for an office admin.
    pub office_name: Option<&'a str>,
    /// First local day of the period.
    pub period_start: NaiveDate,
    /// The boundary that closed it (its local date).
    pub boundary: NaiveDate,
    /// The spend of this close.
    pub current: &'a Spend,
    /// The spend of the previous close; `None` for the first period.
    pub previous: Option<&'a Spend>,
}

/// The email of `admin` for the close described by `cx`.
pub fn draft(admin: &Admin, cx: &EmailContext<'_>) -> EmailDraft {
    let scope = ExportScope::for_admin(admin);
    let company = cx.company;
    let whose = match cx.office_name {
        Some(name) => format!("{} – {}", company.name, name),
        None => company.name.clone(),
    };
    let last_day = cx.boundary.pred_opt().unwrap_or(cx.boundary);
    let subject = header_text(&format!(
        "Usage history of {whose}, {} to {last_day}",
        cx.period_start
    ));
    let current = cx.current.by_service(&scope);
    let previous = cx.previous.map(|p| p.by_service(&scope));
    let summary = summary_text(
        &whose,
        cx,
        &current,
        &cx.current.by_wallet(&scope),
        spending_alert(&current, previous.as_ref()).as_ref(),
    );
    EmailDraft {
        message_id: message_id(&company.id, cx.boundary, &admin.email),
        recipient: admin.email.clone(),
        scope,
        subject,
        summary,
        attachment: export_file_name(cx.boundary),
    }
}

fn summary_text(
    whose: &str,
    cx: &EmailContext<'_>,
    by_service: &BTreeMap<Service, Decimal>,
    by_wallet: &BTreeMap<Wallet, Decimal>,
    alert: Option<&SpendingAlert>,
) -> String {
    let cur = &cx.company.currency;
    let code = cur.code();
    let total: Decimal = by_service.values().sum();
    let last_day = cx.boundary.pred_opt().unwrap_or(cx.boundary);
    let mut out = format!(
        "Usage history of {}\nBilling period: {} to {last_day} (closed {})\nTotal: {} {code}\n",
        header_text(whose),
        cx.period_start,
        cx.boundary,
        cur.format_amount(total)
    );
    if let Some(a) = alert {
        out.push_str(&format!(
            "\nSpending alert: this period's usage ({} {code}) is at least 1.5 times the previous \
             period's ({} {code}); {} rose the most (+{} {code}).\n",
            cur.format_amount(a.current),
            cur.format_amount(a.previous),
            a.service.as_str(),
            cur.format_amount(a.rise),
        ));
    }
    if by_service.is_empty() {
        out.push_str("\nNo usage was charged in this period.\n");
    } else {
        out.push_str("\nBy service:\n");
        out.push_str(&table(
            by_service.iter().map(|(s, a)| (s.as_str().to_string(), *a)),
            cur,
        ));
        out.push_str("\nBy wallet:\n");
        out.push_str(&table(
            by_wallet.iter().map(|(w, a)| (w.to_string(), *a)),
            cur,
        ));
    }
    out
}

fn table(rows: impl Iterator<Item = (String, Decimal)>, cur: &Currency) -> String {
    rows.map(|(name, amount)| format!("  {name:<20} {:>14}\n", cur.format_amount(amount)))
        .collect()
}

/// The paragraph naming the attachment, written when the attachment's size is known:
/// a CSV larger than `gzip_above` bytes is sent gzip-compressed, and the body says so.
pub fn attachment_note(file: &str, csv_bytes: u64, gzip_above: u64) -> String {
    if csv_bytes > gzip_above {
        format!(
            "\nAttached: {file}.gz, the usage history as a CSV file compressed with gzip \
             ({csv_bytes} bytes uncompressed, above the {gzip_above}-byte limit for plain \
             attachments). Open it with any unzip tool, then with a spreadsheet.\n"
        )
    } else {
        format!("\nAttached: {file}, the usage history as a CSV file ({csv_bytes} bytes).\n")
    }
}

/// A header value with every control character (CR and LF included) replaced by a space,
/// so that no name can start a header of its own.
pub fn header_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The `Message-ID` of the usage email of (company, boundary, recipient): the same every
/// time it is built, so a resend after a crash is recognisable as the same message.
pub fn message_id(company: &CompanyId, boundary: NaiveDate, recipient: &str) -> String {
    format!(
        "<usage-history.{company}.{}.{:016x}@billrun.invalid>",
        boundary.format("%Y%m%d"),
        fnv1a(recipient.to_ascii_lowercase().as_bytes())
    )
}

/// 64-bit FNV-1a: a fixed, documented hash, so identifiers stay the same across builds
/// (the standard library's hasher may change between releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The file name of an email in an outbox folder: `<company>-<YYYYMMDD>-<recipient>.eml`,
/// any character of the address that a file name should not hold replaced by `_`.
pub fn outbox_file_name(company: &CompanyId, boundary: NaiveDate, recipient: &str) -> String {
    let safe: String = recipient
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '+' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{company}-{}-{safe}.eml", boundary.format("%Y%m%d"))
}

/// How long a send that failed for the `failures`-th time in a row waits before the next
/// try: 30 seconds, doubling, at most an hour.
pub fn retry_delay(failures: u32) -> Duration {
    let seconds = 30_i64.saturating_mul(1_i64 << failures.saturating_sub(1).min(20));
    Duration::seconds(seconds.min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::AdminRole;
    use crate::testkit::{company, d, dec};

    fn services(pairs: &[(Service, &str)]) -> BTreeMap<Service, Decimal> {
        pairs.iter().map(|(s, a)| (*s, dec(a))).collect()
    }

    #[test]
    fn an_alert_needs_half_as_much_again_and_ten_units_more() {
        let prev = services(&[(Service::Calling, "10"), (Service::Messaging, "10")]);
        // 30 = 1.5 × 20 and 10 more: alert; messaging rose most.
        let cur = services(&[(Service::Calling, "12"), (Service::Messaging, "18")]);
        let a = spending_alert(&cur, Some(&prev)).unwrap();
        assert_eq!(
            (a.current, a.previous, a.service, a.rise),
            (dec("30"), dec("20"), Service::Messaging, dec("8"))
        );
        // 29.99 is short of 1.5 ×.
        let cur = services(&[(Service::Calling, "12"), (Service::Messaging, "17.99")]);
        assert!(spending_alert(&cur, Some(&prev)).is_none());
        // Tripled, but only 8 units more.
        let small = services(&[(Service::Fax, "4")]);
        let tripled = services(&[(Service::Fax, "12")]);
        assert!(spending_alert(&tripled, Some(&small)).is_none());
        // From nothing to 10: an alert naming the new service.
        let fresh = services(&[(Service::AiAgent, "10")]);
        let a = spending_alert(&fresh, Some(&BTreeMap::new())).unwrap();
        assert_eq!(a.service, Service::AiAgent);
        // The first period has nothing to compare with.
        assert!(spending_alert(&fresh, None).is_none());
        // A tie goes to the first service in file order.
        let tie = services(&[(Service::Calling, "10"), (Service::Fax, "10")]);
        assert_eq!(
            spending_alert(&tie, Some(&BTreeMap::new()))
                .unwrap()
                .service,
            Service::Calling
        );
    }

    fn spend() -> Spend {
        let mut s = Spend::default();
        let (nyc, sf) = (OfficeId::from("nyc"), OfficeId::from("sf"));
        s.add(
            &nyc,
            Service::Calling,
            Wallet::Allowance(Service::Calling),
            dec("5"),
        );
        s.add(&nyc, Service::Calling, Wallet::Universal, dec("1.25"));
        s.add(&sf, Service::Messaging, Wallet::Universal, dec("2"));
        s.add(&sf, Service::Messaging, Wallet::Universal, dec("0.5"));
        s
    }

    #[test]
    fn totals_by_service_and_wallet_follow_the_scope() {
        let s = spend();
        assert_eq!(
            s.by_service(&ExportScope::Company),
            services(&[(Service::Calling, "6.25"), (Service::Messaging, "2.5")])
        );
        assert_eq!(
            s.by_wallet(&ExportScope::Office("sf".into())),
            [(Wallet::Universal, dec("2.5"))].into_iter().collect()
        );
        let sum_services: Decimal = s.by_service(&ExportScope::Company).values().sum();
        let sum_wallets: Decimal = s.by_wallet(&ExportScope::Company).values().sum();
        assert_eq!(sum_services, sum_wallets);
    }

    #[test]
    fn each_admin_gets_their_scope_and_a_stable_message_id() {
        let mut c = company("acme");
        c.name = "Acme\r\nBcc: victim@example.com".into();
        let current = spend();
        let cx = EmailContext {
            company: &c,
            office_name: Some("San Francisco"),
            period_start: d("2026-01-01"),
            boundary: d("2026-02-01"),
            current: &current,
            previous: None,
        };
        let admin = Admin {
            email: "sf-lead@acme.example".into(),
            company: "acme".into(),
            role: AdminRole::Office("sf".into()),
        };
        let e = draft(&admin, &cx);
        assert_eq!(e.scope, ExportScope::Office("sf".into()));
        assert!(!e.subject.contains(['\r', '\n']), "{:?}", e.subject);
        assert_eq!(
            e.subject,
            "Usage history of Acme  Bcc: victim@example.com – San Francisco, 2026-01-01 to 2026-01-31"
        );
        assert!(e.summary.contains("Total: 2.50 USD"), "{}", e.summary);
        assert!(!e.summary.contains("calling"), "{}", e.summary);
        assert_eq!(e.attachment, "usage-history-2026-02-01.csv");
        assert_eq!(e.message_id, draft(&admin, &cx).message_id);
        assert_eq!(
            e.message_id,
            message_id(&c.id, d("2026-02-01"), "SF-Lead@acme.example")
        );
        assert_ne!(
            e.message_id,
            message_id(&c.id, d("2026-02-01"), "finance@acme.example")
        );
        assert!(e.message_id.starts_with("<usage-history.acme.20260201."));
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn an_empty_period_still_gets_an_email() {
        let c = company("acme");
        let nothing = Spend::default();
        let cx = EmailContext {
            company: &c,
            office_name: None,
            period_start: d("2026-01-01"),
            boundary: d("2026-02-01"),
            current: &nothing,
            previous: Some(&nothing),
        };
        let admin = Admin {
            email: "finance@acme.example".into(),
            company: "acme".into(),
            role: AdminRole::Company,
        };
        let e = draft(&admin, &cx);
        assert!(e.summary.contains("No usage was charged"), "{}", e.summary);
        assert!(!e.summary.contains("Spending alert"));
    }

    #[test]
    fn attachments_above_the_limit_are_said_to_be_gzipped() {
        assert!(attachment_note("u.csv", 100, 100).contains("Attached: u.csv,"));
        let big = attachment_note("u.csv", 101, 100);
        assert!(big.contains("u.csv.gz") && big.contains("gzip"), "{big}");
    }

    #[test]
    fn outbox_names_are_deterministic_and_safe() {
        assert_eq!(
            outbox_file_name(&"acme".into(), d("2026-02-28"), "sf-lead@acme.example"),
            "acme-20260228-sf-lead@acme.example.eml"
        );
        assert_eq!(
            outbox_file_name(&"acme".into(), d("2026-02-28"), "../x/y@e"),
            "acme-20260228-.._x_y@e.eml"
        );
    }

    #[test]
    fn retries_wait_30_seconds_doubling_to_an_hour() {
        let waits: Vec<i64> = (1..=9).map(|n| retry_delay(n).num_seconds()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_delay(1000).num_seconds(), 3600);
    }
}
