//! The TCP connections to PostgreSQL send each message at once (`TCP_NODELAY`): without it,
//! a message longer than one segment waits up to 40 ms for the server's delayed
//! acknowledgement (vendor/README.md).

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{BorrowedFd, RawFd};

use sqlx::Connection;

use crate::support::{TestDb, postgres_url};

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

/// Every socket of this process connected to one of `servers`, and whether it has
/// `TCP_NODELAY`. Other tests open and close connections meanwhile: a descriptor closed or
/// reused between listing and asking is not a socket to `servers` and is passed over.
fn sockets_to(servers: &[SocketAddr]) -> Vec<(RawFd, bool)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is only asked for its peer and an option, both of which
        // fail harmlessly if another thread has closed it since it was listed.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let Some(peer) = socket.peer_addr().ok().and_then(|a| a.as_socket()) else {
            continue;
        };
        if servers.contains(&peer)
            && let Ok(nodelay) = socket.tcp_nodelay()
        {
            out.push((fd, nodelay));
        }
    }
    out
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
