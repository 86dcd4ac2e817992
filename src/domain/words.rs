//! The words of billing as types: services and their usage types, directions, wallet scopes,
//! wallets, card-charge kinds and the ids that could be mixed up. Each is parsed once, where
//! text enters (a file, a column, a flag), and written back with `as_str` or `Display`; the
//! names used in files live here and nowhere else.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A metered service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// Calls: local, domestic, toll-free, international.
    Calling,
    /// SMS and MMS.
    Messaging,
    /// Fax pages.
    Fax,
    /// AI-agent sessions.
    AiAgent,
    /// Speech IVR units.
    SpeechIvr,
    /// Omnichannel units.
    Omnichannel,
}

impl Service {
    /// Every service, in the order files and reports list them.
    pub const ALL: [Service; 6] = [
        Service::Calling,
        Service::Messaging,
        Service::Fax,
        Service::AiAgent,
        Service::SpeechIvr,
        Service::Omnichannel,
    ];

    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Calling => "calling",
            Service::Messaging => "messaging",
            Service::Fax => "fax",
            Service::AiAgent => "ai_agent",
            Service::SpeechIvr => "speech_ivr",
            Service::Omnichannel => "omnichannel",
        }
    }

    /// The usage types of the service; empty for speech IVR and omnichannel, which have none.
    pub fn types(self) -> &'static [UsageType] {
        use UsageType::*;
        match self {
            Service::Calling => &[Local, Domestic, TollFree, International],
            Service::Messaging => &[A2pSms, P2pSms, A2pMms, P2pMms],
            Service::Fax => &[UsageType::Fax],
            Service::AiAgent => &[Voice, Digital],
            Service::SpeechIvr | Service::Omnichannel => &[],
        }
    }

    /// Whether usage of the service must say its direction.
    pub fn needs_direction(self) -> bool {
        matches!(self, Service::Calling | Service::Messaging | Service::Fax)
    }

    /// The commitment wallet that pays for the service after its allowance.
    pub fn commitment(self) -> Wallet {
        match self {
            Service::AiAgent => Wallet::Ai,
            _ => Wallet::Telephony,
        }
    }
}

/// The names of every value of a word, for error messages: `a, b, c`.
fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> String {
    all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", ")
}

impl FromStr for Service {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Service::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown service {s:?} (one of {})",
                    names(&Service::ALL, Service::as_str)
                )
            })
    }
}

/// A usage type within a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UsageType {
    /// A local call.
    Local,
    /// A domestic long-distance call.
    Domestic,
    /// A toll-free call.
    TollFree,
    /// An international call.
    International,
    /// Application-to-person SMS.
    A2pSms,
    /// Person-to-person SMS.
    P2pSms,
    /// Application-to-person MMS.
    A2pMms,
    /// Person-to-person MMS.
    P2pMms,
    /// A fax.
    Fax,
    /// A voice AI-agent session.
    Voice,
    /// A digital AI-agent session.
    Digital,
}

impl UsageType {
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageType::Local => "local",
            UsageType::Domestic => "domestic",
            UsageType::TollFree => "toll_free",
            UsageType::International => "international",
            UsageType::A2pSms => "a2p_sms",
            UsageType::P2pSms => "p2p_sms",
            UsageType::A2pMms => "a2p_mms",
            UsageType::P2pMms => "p2p_mms",
            UsageType::Fax => "fax",
            UsageType::Voice => "voice",
            UsageType::Digital => "digital",
        }
    }

    /// Parses a type of `service`; the message names the types it has.
    pub fn parse_for(service: Service, s: &str) -> Result<UsageType, String> {
        let types = service.types();
        types
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                if types.is_empty() {
                    format!("service {} has no types", service.as_str())
                } else {
                    format!(
                        "unknown {} type {s:?} (one of {})",
                        service.as_str(),
                        names(types, UsageType::as_str)
                    )
                }
            })
    }

    /// Whether the type is an SMS, billed by segment.
    pub fn is_sms(self) -> bool {
        matches!(self, UsageType::A2pSms | UsageType::P2pSms)
    }
}

/// What a usage record's billable quantity counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Billed seconds of a call.
    Second,
    /// SMS segments.
    Segment,
    /// MMS messages.
    Message,
    /// Fax pages.
    Page,
    /// AI-agent sessions.
    Session,
    /// Speech IVR and omnichannel units.
    Unit,
}

impl Unit {
    const ALL: [Unit; 6] = [
        Unit::Second,
        Unit::Segment,
        Unit::Message,
        Unit::Page,
        Unit::Session,
        Unit::Unit,
    ];

    /// The unit of a usage of `service` and `usage_type`.
    pub fn of(service: Service, usage_type: Option<UsageType>) -> Unit {
        match service {
            Service::Calling => Unit::Second,
            Service::Messaging if usage_type.is_some_and(UsageType::is_sms) => Unit::Segment,
            Service::Messaging => Unit::Message,
            Service::Fax => Unit::Page,
            Service::AiAgent => Unit::Session,
            Service::SpeechIvr | Service::Omnichannel => Unit::Unit,
        }
    }

    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Segment => "segment",
            Unit::Message => "message",
            Unit::Page => "page",
            Unit::Session => "session",
            Unit::Unit => "unit",
        }
    }
}

impl FromStr for Unit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Unit::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown unit {s:?}"))
    }
}

/// Which way a call, message or fax went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Towards the company.
    Inbound,
    /// From the company.
    Outbound,
}

impl Direction {
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "inbound" => Ok(Direction::Inbound),
            "outbound" => Ok(Direction::Outbound),
            _ => Err(format!("{s:?} is not a direction (inbound or outbound)")),
        }
    }
}

/// Declares a string id newtype: it reads as a `str`, sorts, compares and prints (also with
/// `{:?}`) as one, and a map keyed by it can be searched with a `&str`. Its text is shared by
/// its clones: the many rows, keys and entries that name one company or office hold one copy.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(Arc::from(s))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(Arc::from(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}

id_type!(
    /// A company's id, `[a-z0-9_-]+`.
    CompanyId
);
id_type!(
    /// An office's id, unique in the scenario and never `company`.
    OfficeId
);

/// Who owns a set of wallets: the whole company, or one office. Sorts as files list scopes:
/// `company` first, then offices by id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// The company's own wallets (`credit_sharing = "company"`).
    Company,
    /// An office's wallets (`credit_sharing = "office"`).
    Office(OfficeId),
}

impl Scope {
    /// The name used in files: `company` or the office id.
    pub fn as_str(&self) -> &str {
        match self {
            Scope::Company => "company",
            Scope::Office(o) => o.as_str(),
        }
    }

    /// Reads a scope as files write it: `company` or an office id.
    pub fn parse(s: &str) -> Scope {
        if s == "company" {
            Scope::Company
        } else {
            Scope::Office(OfficeId::from(s))
        }
    }

    /// The office of an office scope.
    pub fn office(&self) -> Option<&OfficeId> {
        match self {
            Scope::Company => None,
            Scope::Office(o) => Some(o),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Scope::parse(&s))
    }
}

/// A wallet of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Wallet {
    /// The plan's allowance for one service, granted every period.
    Allowance(Service),
    /// Telephony bundle credits.
    Telephony,
    /// AI bundle credits.
    Ai,
    /// Universal credits: purchases and recharges; never expire, may go negative.
    Universal,
}

impl Wallet {
    /// The wallets that pay for `service`, in draw-down order: its allowance, its commitment,
    /// universal.
    pub fn draw_down(service: Service) -> [Wallet; 3] {
        [
            Wallet::Allowance(service),
            service.commitment(),
            Wallet::Universal,
        ]
    }
}

/// The name used in files: `allowance:calling`, `telephony`, `ai`, `universal`.
impl fmt::Display for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wallet::Allowance(s) => write!(f, "allowance:{}", s.as_str()),
            Wallet::Telephony => f.write_str("telephony"),
            Wallet::Ai => f.write_str("ai"),
            Wallet::Universal => f.write_str("universal"),
        }
    }
}

impl FromStr for Wallet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "telephony" => Ok(Wallet::Telephony),
            "ai" => Ok(Wallet::Ai),
            "universal" => Ok(Wallet::Universal),
            _ => match s.strip_prefix("allowance:") {
                Some(service) => service.parse().map(Wallet::Allowance),
                None => Err(format!(
                    "unknown wallet {s:?} (allowance:<service>, telephony, ai or universal)"
                )),
            },
        }
    }
}

/// What a charge to a card company's card paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CardChargeKind {
    /// A card statement's total, at its boundary.
    CardStatement,
    /// A manual credit purchase, at once.
    CreditPurchase,
    /// An auto-recharge, at once.
    AutoRecharge,
    /// A re-run's adjustment, charged or refunded at the re-run.
    Adjustment,
}

impl CardChargeKind {
    const ALL: [CardChargeKind; 4] = [
        CardChargeKind::CardStatement,
        CardChargeKind::CreditPurchase,
        CardChargeKind::AutoRecharge,
        CardChargeKind::Adjustment,
    ];

    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            CardChargeKind::CardStatement => "card_statement",
            CardChargeKind::CreditPurchase => "credit_purchase",
            CardChargeKind::AutoRecharge => "auto_recharge",
            CardChargeKind::Adjustment => "adjustment",
        }
    }
}

impl FromStr for CardChargeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        CardChargeKind::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown card charge kind {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back_what_it_writes() {
        for s in Service::ALL {
            assert_eq!(s.as_str().parse::<Service>(), Ok(s));
            for t in s.types() {
                assert_eq!(UsageType::parse_for(s, t.as_str()), Ok(*t));
            }
            let w = Wallet::Allowance(s);
            assert_eq!(w.to_string().parse::<Wallet>(), Ok(w));
        }
        for w in [Wallet::Telephony, Wallet::Ai, Wallet::Universal] {
            assert_eq!(w.to_string().parse::<Wallet>(), Ok(w));
        }
        for k in CardChargeKind::ALL {
            assert_eq!(k.as_str().parse::<CardChargeKind>(), Ok(k));
        }
        for u in Unit::ALL {
            assert_eq!(u.as_str().parse::<Unit>(), Ok(u));
        }
        for d in [Direction::Inbound, Direction::Outbound] {
            assert_eq!(d.as_str().parse::<Direction>(), Ok(d));
        }
        assert_eq!(Scope::parse("company"), Scope::Company);
        assert_eq!(Scope::parse("nyc").to_string(), "nyc");
    }

    #[test]
    fn unknown_words_are_refused_with_the_known_ones() {
        assert_eq!(
            "teleport".parse::<Service>(),
            Err("unknown service \"teleport\" (one of calling, messaging, fax, ai_agent, speech_ivr, omnichannel)".into())
        );
        assert!("allowance:teleport".parse::<Wallet>().is_err());
        assert!("credit".parse::<Wallet>().is_err());
        assert_eq!(
            UsageType::parse_for(Service::SpeechIvr, "x"),
            Err("service speech_ivr has no types".into())
        );
        assert!(UsageType::parse_for(Service::Calling, "fax").is_err());
        assert!("sideways".parse::<Direction>().is_err());
    }

    #[test]
    fn the_company_scope_sorts_before_offices() {
        let mut scopes = [
            Scope::Office("sf".into()),
            Scope::Company,
            Scope::Office("nyc".into()),
        ];
        scopes.sort();
        assert_eq!(
            scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
            ["company", "nyc", "sf"]
        );
    }

    #[test]
    fn draw_down_goes_allowance_commitment_universal() {
        assert_eq!(
            Wallet::draw_down(Service::AiAgent),
            [
                Wallet::Allowance(Service::AiAgent),
                Wallet::Ai,
                Wallet::Universal
            ]
        );
        assert_eq!(Wallet::draw_down(Service::Fax)[1], Wallet::Telephony);
        assert_eq!(
            Unit::of(Service::Messaging, Some(UsageType::A2pMms)),
            Unit::Message
        );
        assert_eq!(
            Unit::of(Service::Messaging, Some(UsageType::P2pSms)),
            Unit::Segment
        );
    }
}
