//! The TCP connections to PostgreSQL send each message at once (`TCP_NODELAY`): without it,
//! a message longer than one segment waits up to 40 ms for the server's delayed
//! acknowledgement (vendor/README.md).

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;

use sqlx::Connection;

use crate::support::{TestDb, postgres_url, sockets_to};

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
    let sockets = sockets_to(&servers);
    assert!(
        !sockets.is_empty(),
        "no socket of this process is connected to {servers:?}"
    );
    let slow: Vec<RawFd> = sockets
        .iter()
        .filter(|(_, nodelay)| !nodelay)
        .map(|(fd, _)| *fd)
        .collect();
    assert!(
        slow.is_empty(),
        "sockets to PostgreSQL without TCP_NODELAY: {slow:?} of {sockets:?}"
    );
    conn.close().await.unwrap();
}
