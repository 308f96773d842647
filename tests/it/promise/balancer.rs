//! The load balancer in front of the relays, as nginx stands in front of them in the compose file: each
//! connection goes to the next relay in turn, and a relay that refuses the connection (killed, not started again
//! yet) is passed over for the next. A stopped relay takes connections it never answers: a webhook sent to it
//! times out at Chatwoot (5 s) and is lost, as behind nginx, which does not send a POST again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};

pub struct Balancer {
    pub port: u16,
}

impl Balancer {
    pub async fn start(relays: Vec<u16>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let relays = Arc::new(relays);
        let turn = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(pass_on(inbound, relays.clone(), turn.clone()));
            }
        });
        Self { port }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Joins one connection to the first relay, from this connection's turn on, that takes it.
async fn pass_on(mut inbound: TcpStream, relays: Arc<Vec<u16>>, turn: Arc<AtomicUsize>) {
    let first = turn.fetch_add(1, Ordering::Relaxed);
    for i in 0..relays.len() {
        let port = relays[(first + i) % relays.len()];
        if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await {
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            return;
        }
    }
}
