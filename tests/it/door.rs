//! The webhook port under attack, against the real binary on loopback: cheap clients from other addresses
//! (127.0.0.2 and up) try to hold it shut while a real webhook from 127.0.0.1 must still get its 200. Every
//! test is bounded in connections and time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{
    ADMIN_PASS, ADMIN_USER, Admin, Gowa, Server, basic_auth, eventually, free_port, heavy, message,
};

const WAIT: Duration = Duration::from_secs(20);

/// A relay with a route for inbox 7 to a GoWA stand-in.
async fn relay(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> (Server, Gowa) {
    let gowa = Gowa::start().await;
    let server = Server::spawn_logging(dir.path(), free_port(), env);
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    (server, gowa)
}

/// A TCP connection to the relay from `from` (any 127.x address is this machine).
async fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
}

/// The n-th attacking address: 127.0.0.2, 127.0.0.3, …
fn attacker(n: usize) -> Ipv4Addr {
    let n = u32::try_from(n).unwrap() + 2;
    Ipv4Addr::from(0x7f00_0000 | n)
}

/// Lets this test process hold a thousand sockets.
fn more_files() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// A real webhook from 127.0.0.1 is queued.
async fn real_webhook_gets_in(server: &Server, seq: usize) {
    let answer = tokio::time::timeout(WAIT, server.post_webhook(message(7, 1, seq)))
        .await
        .expect("the real webhook was answered in time");
    assert_eq!(answer["queued"], true, "{answer}");
}

#[tokio::test]
async fn requests_that_send_no_body_cannot_hold_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (server, gowa) = relay(&dir, &[]).await;
    // 64 chunked requests whose body never comes, from one address: before, each held a whole maximum body of
    // the budget, and every real webhook got 503.
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut tcp = connect_from(attacker(0), server.port).await.unwrap();
        tcp.write_all(
            b"POST /webhook HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
        held.push(tcp);
    }
    for seq in 0..5 {
        real_webhook_gets_in(&server, seq).await;
    }
    gowa.wait_for("the real webhooks", WAIT, |r| r.len() == 5)
        .await;
    drop(held);
}

#[tokio::test]
async fn http2_without_tls_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _gowa) = relay(&dir, &[]).await;
    // One h2c connection could carry hundreds of streams (webhooks) at once.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let refused = h2.get(format!("{}/healthz", server.base())).send().await;
    assert!(refused.is_err(), "h2c answered: {refused:?}");
    real_webhook_gets_in(&server, 0).await;
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_a_real_webhook_is_answered_meanwhile() {
    let _heavy = heavy().await;
    more_files();
    let dir = tempfile::tempdir().unwrap();
    let (server, _gowa) = relay(&dir, &[]).await;
    // 1 000 connections from 20 addresses, each with an unfinished header.
    let mut slow = Vec::new();
    for n in 0..1000 {
        let mut tcp = connect_from(attacker(n % 20), server.port).await.unwrap();
        tcp.write_all(b"POST /webhook HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(tcp);
    }
    real_webhook_gets_in(&server, 0).await;
    let rss = proc_rss_kib(server.child.id());
    eprintln!("figure: RSS under 1 000 slow headers: {rss} KiB");
    assert!(rss < 100 * 1024, "RSS {rss} KiB under 1 000 slow headers");
    let cut = std::time::Instant::now();
    // Each is closed once the header-read timeout has passed.
    for mut tcp in slow {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // an error answer, then the close
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a slow-header connection was left open");
    }
    eprintln!(
        "figure: last slow-header connection closed {:?} after the check",
        cut.elapsed()
    );
}

fn proc_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_low_file_limit_survives_a_thousand_idle_sockets() {
    let _heavy = heavy().await;
    more_files();
    let dir = tempfile::tempdir().unwrap();
    let gowa = Gowa::start().await;
    // As a service manager often starts it: 1 024 open files, and no way up.
    let server = Server::spawn_after(
        dir.path(),
        free_port(),
        &[("RUST_LOG", "chatgowa_lib=info")],
        "ulimit -n 1024",
    );
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let mut idle = Vec::new();
    for n in 0..1000 {
        // Some may wait in the kernel's backlog: the relay caps its connections below its file limit.
        if let Ok(tcp) = connect_from(attacker(n % 20), server.port).await {
            idle.push(tcp);
        }
    }
    let started = std::time::Instant::now();
    real_webhook_gets_in(&server, 0).await;
    eprintln!(
        "figure: {} idle sockets open, real webhook answered in {:?}",
        idle.len(),
        started.elapsed()
    );
    gowa.wait_for("the real webhook", WAIT, |r| r.len() == 1)
        .await;
    drop(idle);
    assert!(server.healthcheck(), "still healthy");
    let log = server.stop_and_read_log();
    assert!(log.contains("all connection slots are taken"), "{log}");
}

#[tokio::test]
async fn guesses_from_ten_thousand_addresses_do_not_lock_out_the_admin() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _gowa) = relay(&dir, &[]).await;
    let wrong = basic_auth(ADMIN_USER, "wrong password");
    let request = format!(
        "GET /admin/stats HTTP/1.1\r\nHost: relay\r\nAuthorization: {wrong}\r\nConnection: close\r\n\r\n"
    );
    let guesses: Vec<_> = (0..16)
        .map(|worker| {
            let request = request.clone();
            let port = server.port;
            tokio::spawn(async move {
                for n in (worker..10_050).step_by(16) {
                    // 127.1.0.0 and up: one guess per address.
                    let from = Ipv4Addr::from(0x7f01_0000 | u32::try_from(n).unwrap());
                    let mut tcp = connect_from(from, port).await.unwrap();
                    tcp.write_all(request.as_bytes()).await.unwrap();
                    let mut answer = Vec::new();
                    tcp.read_to_end(&mut answer).await.unwrap();
                    assert!(answer.starts_with(b"HTTP/1.1 401"), "guess {n}");
                }
            })
        })
        .collect();
    for guess in guesses {
        guess.await.unwrap();
    }
    // The admin, from an address that never failed, gets in with the right password.
    let admin = format!(
        "GET /admin/stats HTTP/1.1\r\nHost: relay\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic_auth(ADMIN_USER, ADMIN_PASS)
    );
    let mut tcp = connect_from(Ipv4Addr::new(127, 200, 0, 1), server.port)
        .await
        .unwrap();
    tcp.write_all(admin.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_route_back_to_the_relay_is_refused_and_so_is_its_own_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (server, gowa) = relay(&dir, &[]).await;
    let admin = Admin::new(server.base());
    for url in [
        format!("http://127.0.0.1:{}/webhook", server.port),
        format!("http://localhost:{}/webhook/", server.port),
    ] {
        let (status, body) = admin
            .post_json(
                "/admin/routes",
                serde_json::json!({"inboxId": 8, "webhookUrl": url}),
            )
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["field"], "webhookUrl");
    }
    // A webhook that a relay sent (a loop through another relay, or a route made before this check).
    let looped = crate::support::http_client()
        .post(format!("{}/webhook", server.base()))
        .header("content-type", "application/json")
        .header("x-chatgowa-delivery", "12")
        .body(message(7, 1, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(looped.status(), 400);
    real_webhook_gets_in(&server, 1).await;
    gowa.wait_for("only the real one", WAIT, |r| r.len() == 1)
        .await;
    assert_eq!(gowa.arrivals(), 1);
}

#[tokio::test]
async fn a_sender_that_hangs_up_at_once_is_still_logged_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, gowa) = relay(&dir, &[("RUST_LOG", "chatgowa_lib=info,warn")]).await;
    const SENT: usize = 20;
    for seq in 0..SENT {
        let body = message(7, 2, seq);
        let mut tcp = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let head = format!(
            "POST /webhook HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&body).await.unwrap();
        drop(tcp); // gone before the answer
    }
    gowa.wait_for("every webhook delivered", WAIT, |r| r.len() == SENT)
        .await;
    let admin = Admin::new(server.base());
    eventually("the metric to count them all", WAIT, || async {
        admin
            .metrics()
            .await
            .contains(&format!(
                "chatgowa_webhooks_received_total{{decision=\"queued\"}} {SENT}"
            ))
            .then_some(())
    })
    .await;
    let log = server.stop_and_read_log();
    let logged = log
        .lines()
        .filter(|l| l.contains("webhook") && l.contains("decision=\"queued\""))
        .count();
    assert_eq!(logged, SENT, "{log}");
}

#[tokio::test]
async fn every_admin_error_is_json_with_its_status_and_a_stalled_request_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _gowa) = relay(&dir, &[]).await;
    let admin = Admin::new(server.base());
    let huge = vec![b' '; 50 * 1024 * 1024];
    let too_large = admin
        .request(reqwest::Method::POST, "/admin/routes")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let status = too_large.status();
    let body: serde_json::Value = too_large.json().await.unwrap();
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    for (method, path, expected) in [
        (reqwest::Method::GET, "/admin/deliveries/%FF%FE", 404),
        (reqwest::Method::PATCH, "/admin/routes", 405),
        (reqwest::Method::GET, "/admin/deliveries?limit=%FF", 400),
    ] {
        let response = admin.request(method.clone(), path).send().await.unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e})"));
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
    // A logged-in request whose body never comes is ended (the relay's attempt timeout is 2 s here, plus 10 s).
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let head = format!(
        "POST /admin/routes HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        server.port,
        basic_auth(ADMIN_USER, ADMIN_PASS)
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"timeout\""), "{answer}");
}

#[tokio::test]
async fn huge_headers_are_refused_and_memory_stays_bounded() {
    let _heavy = heavy().await;
    more_files();
    let dir = tempfile::tempdir().unwrap();
    let (server, _gowa) = relay(&dir, &[]).await;
    // 400 connections from 20 addresses, each pushing an unfinished header of 400 KB.
    let header = format!(
        "POST /webhook HTTP/1.1\r\nHost: relay\r\nX-Huge: {}",
        "a".repeat(400 * 1024)
    );
    let pushes: Vec<_> = (0..400)
        .map(|n| {
            let (header, port) = (header.clone(), server.port);
            tokio::spawn(async move {
                let mut tcp = connect_from(attacker(n % 20), port).await.unwrap();
                // The relay answers 431 and closes after its header limit; the rest cannot be written.
                let _ = tcp.write_all(header.as_bytes()).await;
                let mut answer = Vec::new();
                let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
                answer
            })
        })
        .collect();
    let mut refused = 0;
    for push in pushes {
        let answer = push.await.unwrap();
        refused += usize::from(answer.starts_with(b"HTTP/1.1 431"));
    }
    assert!(refused > 0, "no 431 seen");
    let rss = proc_rss_kib(server.child.id());
    eprintln!("figure: RSS after 400 huge headers: {rss} KiB, {refused} answered 431");
    assert!(rss < 100 * 1024, "RSS {rss} KiB after 400 huge headers");
    real_webhook_gets_in(&server, 0).await;
}

#[tokio::test]
async fn a_page_under_a_name_pointed_at_the_relay_cannot_change_anything() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = "https://relay.example.com";
    let (server, _gowa) = relay(&dir, &[("CHATGOWA_ADMIN_ORIGINS", allowed)]).await;
    let admin = Admin::new(server.base());
    let create = |host: String, origin: String| {
        admin
            .request(reqwest::Method::POST, "/admin/routes")
            .header("host", host)
            .header("origin", origin)
            .json(&serde_json::json!({"inboxId": 9, "webhookUrl": "http://gowa:3000/chatwoot/webhook"}))
            .send()
    };
    // DNS rebinding: the attacker's name resolves to this machine, and its page sends the same Host and Origin.
    let rebound = format!("evil.example:{}", server.port);
    let answer = create(rebound.clone(), format!("http://{rebound}"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("CHATGOWA_ADMIN_ORIGINS"),
        "{body}"
    );
    // The name the panel is opened by, as configured, and the panel by its IP address.
    let answer = create("relay.example.com".into(), allowed.into())
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let by_ip = format!("127.0.0.1:{}", server.port);
    let answer = admin
        .request(reqwest::Method::DELETE, "/admin/routes/2")
        .header("origin", format!("http://{by_ip}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "by IP address, no setting needed");
}

/// A request through the tunnel (which connects from 127.0.0.1) for `client`, as the tunnel forwards it.
fn through_tunnel(client: &str, request: &str) -> String {
    request.replacen("\r\n", &format!("\r\nX-Forwarded-For: {client}\r\n"), 1)
}

/// What the relay answers `request` sent from 127.0.0.1: the status line.
async fn status_line(port: u16, request: &str) -> String {
    let mut tcp = connect_from(Ipv4Addr::LOCALHOST, port).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn behind_a_trusted_tunnel_one_stranger_cannot_shut_the_door_or_lock_out_the_admin() {
    let _heavy = heavy().await;
    more_files();
    let dir = tempfile::tempdir().unwrap();
    // cloudflared, ngrok or nginx on this machine: every peer is 127.0.0.1.
    let (server, gowa) = relay(&dir, &[("CHATGOWA_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let stranger = "198.51.100.66";
    // More empty chunked requests through the tunnel than one address may hold: before, every real webhook
    // after them was answered 503 (and Chatwoot never sends it again).
    let mut held = Vec::new();
    for _ in 0..136 {
        let mut tcp = connect_from(Ipv4Addr::LOCALHOST, server.port)
            .await
            .unwrap();
        let request = through_tunnel(
            stranger,
            "POST /webhook HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        held.push(tcp);
    }
    for seq in 0..5 {
        real_webhook_gets_in(&server, seq).await;
    }
    gowa.wait_for("the real webhooks", WAIT, |r| r.len() == 5)
        .await;
    drop(held);

    // Five wrong passwords from the stranger pause the stranger, not the admin behind the same tunnel.
    let ask = |password: &str| {
        format!(
            "GET /admin/stats HTTP/1.1\r\nHost: relay\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            basic_auth(ADMIN_USER, password)
        )
    };
    for guess in 0..5 {
        let answer = status_line(server.port, &through_tunnel(stranger, &ask("wrong"))).await;
        assert!(answer.contains(" 401 "), "guess {guess}: {answer}");
    }
    let answer = status_line(server.port, &through_tunnel(stranger, &ask(ADMIN_PASS))).await;
    assert!(answer.contains(" 429 "), "the stranger is paused: {answer}");
    let answer = status_line(
        server.port,
        &through_tunnel("203.0.113.5", &ask(ADMIN_PASS)),
    )
    .await;
    assert!(answer.contains(" 200 "), "the admin gets in: {answer}");
    let log = server.stop_and_read_log();
    assert!(
        log.contains(stranger),
        "the log names the client, not the tunnel: {log}"
    );
}

#[tokio::test]
async fn forwarding_headers_of_an_untrusted_peer_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // No trusted proxy: a stranger's X-Forwarded-For must not buy a new address for each guess.
    let (server, _gowa) = relay(&dir, &[]).await;
    let ask = |client: &str, password: &str| {
        through_tunnel(
            client,
            &format!(
                "GET /admin/stats HTTP/1.1\r\nHost: relay\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
                basic_auth(ADMIN_USER, password)
            ),
        )
    };
    for guess in 0..5 {
        let answer = status_line(server.port, &ask(&format!("203.0.113.{guess}"), "wrong")).await;
        assert!(answer.contains(" 401 "), "guess {guess}: {answer}");
    }
    let answer = status_line(server.port, &ask("203.0.113.99", "wrong")).await;
    assert!(answer.contains(" 429 "), "{answer}");
}

#[tokio::test]
async fn one_address_cannot_hold_the_whole_body_budget_with_slow_bodies() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let (server, gowa) = relay(&dir, &[]).await;
    // Sixteen maximum-size bodies (4 MiB) sent all but their last kilobyte, from one address: before, they held
    // the whole 64 MiB budget (each request counts a kilobyte more than it sent) and every real webhook was shed
    // with 503 until they timed out.
    let size = 4 * 1024 * 1024;
    let chunk = vec![b' '; size - 1024 - 32];
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut tcp = connect_from(attacker(0), server.port).await.unwrap();
        let head = format!(
            "POST /webhook HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        // A body that is refused midway is answered at once; the rest is not sent.
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&chunk)).await;
        held.push(tcp);
    }
    eventually("the relay to have read what was sent", WAIT, || async {
        (unread_by(server.port, attacker(0)) == Some(0)).then_some(())
    })
    .await;
    for seq in 0..3 {
        real_webhook_gets_in(&server, seq).await;
    }
    gowa.wait_for("the real webhooks", WAIT, |r| r.len() == 3)
        .await;
    drop(held);
}

/// Bytes that connections from `from` sent to the relay on `port` and the relay has not read yet, from the kernel's
/// socket table (`None` while there is no such connection).
fn unread_by(port: u16, from: Ipv4Addr) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("{:08X}:", u32::from(from).swap_bytes());
    let local = format!(":{port:04X}");
    let queues: Vec<u64> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1)?.ends_with(&local) && fields.get(2)?.starts_with(&remote)).then(|| {
                let (_, rx) = fields[4].split_once(':').unwrap();
                u64::from_str_radix(rx, 16).unwrap()
            })
        })
        .collect();
    (!queues.is_empty()).then(|| queues.iter().sum())
}

#[tokio::test]
async fn a_client_that_pipelines_and_never_reads_holds_up_neither_the_door_nor_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _gowa) = relay(&dir, &[]).await;
    let port = server.port;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::V4(attacker(0)), 0))
        .unwrap();
    let mut stream = socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap();
    // Requests for a small answer, pipelined without end; not one answer is read.
    let pipelining = tokio::spawn(async move {
        let requests = b"GET /nowhere HTTP/1.1\r\nHost: relay\r\n\r\n".repeat(1_000);
        while stream.write_all(&requests).await.is_ok() {}
    });
    eventually("the relay's answers to back up", WAIT, || async {
        backed_up(port, attacker(0)).then_some(())
    })
    .await;
    // A webhook from elsewhere still gets in.
    let answer = Admin::new(server.base())
        .request(reqwest::Method::POST, "/webhook")
        .header("content-type", "application/json")
        .body(message(7, 1, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // The relay gives up on the connection whose answers are not read, rather than hold it for ever.
    eventually(
        "the stuck connection closed",
        Duration::from_secs(60),
        || async { (!backed_up(port, attacker(0))).then_some(()) },
    )
    .await;
    // SIGTERM ends the relay within its grace.
    let term = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = crate::support::wait_exit(&mut server.child, "the relay's stop", WAIT).await;
    assert!(status.success(), "{status}");
    pipelining.abort();
}

/// Whether the relay's connection from `from` on `port` is open and stuck: the relay has answers queued that the
/// client does not take, and requests queued that it does not read (the kernel's socket table).
fn backed_up(port: u16, from: Ipv4Addr) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("{:08X}:", u32::from(from).swap_bytes());
    let local = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ours = fields.get(1).is_some_and(|f| f.ends_with(&local))
            && fields.get(2).is_some_and(|f| f.starts_with(&remote));
        let queued = |text: &str| u64::from_str_radix(text, 16).unwrap_or(0);
        let established = fields.get(3) == Some(&"01");
        ours && established
            && fields
                .get(4)
                .and_then(|q| q.split_once(':'))
                .is_some_and(|(tx, rx)| queued(tx) > 32 * 1024 && queued(rx) > 32 * 1024)
    })
}
