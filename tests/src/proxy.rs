//! A TCP proxy for outages: a server (NATS, PostgreSQL) going away and coming back.

/// A TCP proxy in front of a server that can be taken down (every connection cut, the port
/// refusing) and brought back on the same port: the server going away, as a service sees it.
pub struct Proxy {
    /// Where the proxy listens, to give a service instead of the server's address.
    pub addr: std::net::SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// A proxy to `upstream` (`host:port`), up.
    pub async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = tokio::sync::watch::channel(true);
        let states = up.subscribe();
        tokio::spawn(async move {
            let mut listener = Some(listener);
            let mut states = states;
            loop {
                let Some(open) = &listener else {
                    // The proxy dropped: the test is over.
                    if states.changed().await.is_err() {
                        return;
                    }
                    if *states.borrow() {
                        listener = Some(tokio::net::TcpListener::bind(addr).await.unwrap());
                    }
                    continue;
                };
                tokio::select! {
                    accepted = open.accept() => {
                        let (mut inbound, _) = accepted.unwrap();
                        let upstream = upstream.clone();
                        let mut down = states.clone();
                        tokio::spawn(async move {
                            let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = down.wait_for(|up| !*up) => {}
                            }
                        });
                    }
                    changed = states.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if !*states.borrow() {
                            listener = None;
                        }
                    }
                }
            }
        });
        Proxy { addr, up }
    }

    /// Takes the proxy down (every connection cut, the port refusing) or brings it back.
    pub fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}
