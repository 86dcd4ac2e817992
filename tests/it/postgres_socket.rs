//! The TCP connections to PostgreSQL send each message at once (`TCP_NODELAY`): without it,
//! a message longer than one segment waits up to 40 ms for the server's delayed
//! acknowledgement (vendor/README.md).

use std::net::{SocketAddr, ToSocketAddrs};

use sqlx::Connection;

use crate::support::{TestDb, assert_sends_at_once, postgres_url};

/// The addresses `url`'s host and port resolve to; none if it names a Unix socket.
fn server_addresses(url: &str) -> Vec<SocketAddr> {
    let url = url::Url::parse(url).unwrap();
    if url
        .query_pairs()
        .any(|(k, v)| k == "host" && v.starts_with('/'))
    {
        return Vec::new();
    }
    let host = url.host_str().unwrap().trim_matches(['[', ']']).to_string();
    (host.as_str(), url.port().unwrap_or(5432))
        .to_socket_addrs()
        .unwrap()
        .collect()
}

#[tokio::test]
async fn connections_to_postgres_send_each_message_at_once() {
    let Some(admin) = postgres_url() else {
        return;
    };
    let servers = server_addresses(&admin);
    if servers.is_empty() {
        eprintln!("NOTE: BILLRUN_TEST_POSTGRES names a Unix socket: no TCP to look at");
        return;
    }
    let db = TestDb::postgres(&admin).await;
    // Held open while its socket is looked at.
    let conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    assert_sends_at_once(&servers, "PostgreSQL");
    conn.close().await.unwrap();
}
