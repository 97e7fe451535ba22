//! Loopback ports for the servers a test starts.

/// A loopback port nothing listens on now and that this test process has not
/// handed out before.
///
/// Probing with `bind(":0")` and releasing the socket is racy: the kernel may
/// give the same port to the next probe, so two servers of one test (moto and
/// a webhook's metrics listener, say) were once told the same port. Remembering
/// every port handed out makes the ports of one process distinct; a port taken
/// by another process between the probe and the bind stays possible, and the
/// servers started on it fail loudly ("Address already in use").
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(Default::default);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a probe socket on 127.0.0.1")
            .port();
        if handed_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return port;
        }
    }
}
