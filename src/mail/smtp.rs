//! Sending to an SMTP server with lettre: `smtp://` upgrades with STARTTLS when the server
//! offers it, `smtps://` speaks TLS from the first byte (rustls on the ring provider, the same
//! one sqlx uses). Credentials come from the URL and never reach a log or an error message.
//! Each send runs under a timeout of its own: lettre's covers only the connection.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::SendError;
use crate::store::redact_url;

/// Where and how to reach the SMTP server.
#[derive(Clone)]
pub struct SmtpSettings {
    /// `smtp://[user:password@]host[:port]` or `smtps://…`.
    pub url: String,
    /// Extra trusted root certificates (PEM), for a relay with a private authority.
    pub ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("url", &redact_url(&self.url))
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .finish()
    }
}

/// An SMTP transport ready to send.
pub struct Smtp {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

impl SmtpSettings {
    /// Checks the URL and builds the transport (nothing is sent or connected yet).
    pub fn transport(&self, timeout: Duration) -> anyhow::Result<Smtp> {
        let shown = redact_url(&self.url);
        let url = url::Url::parse(&self.url).map_err(|e| anyhow!("SMTP URL {shown}: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| anyhow!("SMTP URL {shown}: no host"))?
            .trim_matches(['[', ']'])
            .to_string();
        let mut tls = TlsParameters::builder(host.clone());
        if let Some(pem) = &self.ca_pem {
            tls = tls.add_root_certificate(
                Certificate::from_pem(pem).context("reading the SMTP CA certificate")?,
            );
        }
        let tls = tls
            .build_rustls()
            .with_context(|| format!("TLS settings for {shown}"))?;
        let (tls, default_port) = match url.scheme() {
            "smtp" => (Tls::Opportunistic(tls), 587),
            "smtps" => (Tls::Wrapper(tls), 465),
            other => bail!("SMTP URL {shown}: scheme {other:?} is not smtp or smtps"),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(url.port().unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(timeout));
        if !url.username().is_empty() {
            let decode = |s: &str| {
                percent_decode(s).with_context(|| format!("SMTP URL {shown}: credentials"))
            };
            builder = builder.credentials(Credentials::new(
                decode(url.username())?,
                decode(url.password().unwrap_or(""))?,
            ));
        }
        Ok(Smtp {
            inner: builder.build(),
            timeout,
        })
    }
}

impl Smtp {
    /// Sends one message. A 5xx reply is permanent; anything else (connection refused, TLS,
    /// a 4xx, the timeout) is worth another try later.
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.inner.send(message)).await {
            Err(_) => Err(SendError::Transient(format!(
                "no answer from the SMTP server within {} s",
                self.timeout.as_secs()
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Ok(Err(e)) => Err(SendError::Transient(e.to_string())),
        }
    }
}

/// Decodes `%XX` escapes of a URL's user or password.
fn percent_decode(s: &str) -> anyhow::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| anyhow!("bad % escape"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| anyhow!("bad % escape"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow!("not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Building a pooled transport spawns its pool's task: it needs a runtime.
    #[tokio::test]
    async fn urls_are_checked_and_passwords_never_shown() {
        let s = SmtpSettings {
            url: "smtp://bill:s3cr%40t@mail.example:2525".into(),
            ca_pem: None,
        };
        assert!(!format!("{s:?}").contains("s3cr"));
        assert!(s.transport(Duration::from_secs(5)).is_ok());
        let bad = SmtpSettings {
            url: "http://bill:s3cret@mail.example".into(),
            ca_pem: None,
        };
        let e = bad
            .transport(Duration::from_secs(5))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not smtp") && !e.contains("s3cret"), "{e}");
        assert_eq!(percent_decode("s3cr%40t").unwrap(), "s3cr@t");
    }
}
