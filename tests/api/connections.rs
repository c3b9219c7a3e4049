//! Connections: the idle watch counts only request and response activity
//! (an HTTP/2 client that only PINGs is closed; a slow stream is not), one
//! address holds at most `server.max_connections_per_ip`, and the admin
//! listener has its own pool.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use axum::http::Request;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::{Instant, timeout},
};

use crate::{
    helpers::spawn_with,
    test_routes::{STREAM_EVENTS, STREAM_EVERY},
};

const IDLE: Duration = Duration::from_millis(300);
/// Bounds every wait, so a failure cannot hang the suite.
const BOUND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn an_http2_client_that_only_sends_pings_is_closed_as_idle() {
    let app = spawn_with(|options| options.config.server.header_read_timeout = "300ms".parse().unwrap()).await;
    let tcp = TcpStream::connect(app.address).await.unwrap();
    let (_requests, mut connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
    let mut ping_pong = connection.ping_pong().expect("the first ping_pong");
    let driver = tokio::spawn(connection);
    let started = Instant::now();
    let mut answered = 0;
    let pinging = async {
        // A PING every 50 ms, each answered, until the server hangs up.
        while ping_pong.ping(h2::Ping::opaque()).await.is_ok() {
            answered += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let closed = timeout(BOUND, async {
        tokio::select! {
            _ = driver => {},
            () = pinging => {},
        }
    })
    .await;
    assert!(closed.is_ok(), "a connection with PINGs and no stream should be closed as idle");
    let lasted = started.elapsed();
    assert!(answered >= 3, "the server answered the PINGs before closing ({answered})");
    assert!(lasted >= IDLE, "closed after the idle limit, not at once ({lasted:?})");
    assert_eq!(app.get("/health").await.status, 200, "other clients are unaffected");
}

#[tokio::test]
async fn a_slow_streaming_response_is_not_cut_while_it_makes_progress() {
    let app = spawn_with(|options| options.config.server.header_read_timeout = "300ms".parse().unwrap()).await;
    let whole = STREAM_EVERY * STREAM_EVENTS;
    assert!(whole > IDLE * 3, "the stream outlasts the idle limit by far");
    let expected: String = (0..STREAM_EVENTS).map(|n| format!("data: {n}\n\n")).collect();

    // HTTP/2 without TLS (h2c), with prior knowledge.
    let tcp = TcpStream::connect(app.address).await.unwrap();
    let (requests, connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(connection);
    let mut requests = requests.ready().await.unwrap();
    let request = Request::get(format!("http://{}/test/stream", app.address)).body(()).unwrap();
    let (response, _) = requests.send_request(request, true).unwrap();
    let received = timeout(BOUND, async {
        let mut body = response.await.expect("response head").into_body();
        let mut received = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("the stream goes on to its end");
            let _ = body.flow_control().release_capacity(chunk.len());
            received.extend_from_slice(&chunk);
        }
        received
    })
    .await
    .expect("the stream ends in time");
    assert_eq!(String::from_utf8_lossy(&received), expected, "over HTTP/2");

    // HTTP/1.1.
    let response = app.client.get(app.url("/test/stream")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(timeout(BOUND, response.text()).await.expect("in time").unwrap(), expected, "over HTTP/1.1");
}

/// A TCP connection to `server` from the local address `from` (any
/// 127.0.0.0/8 address reaches the loopback listener).
pub async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// Whether the server answers a request on this connection (keeping it open).
async fn answers(stream: &mut TcpStream) -> bool {
    if stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    match timeout(BOUND, stream.read_exact(&mut head)).await {
        Ok(Ok(_)) => {
            // The rest of the (small) response, so the next request starts clean.
            let mut rest = [0u8; 4096];
            let _ = timeout(Duration::from_millis(200), stream.read(&mut rest)).await;
            &head == b"HTTP/1.1 200"
        }
        Ok(Err(_)) => false,
        Err(_) => panic!("the server neither answered nor closed the connection"),
    }
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections_and_trusted_proxies_are_exempt() {
    let app = spawn_with(|options| {
        options.config.server.max_connections_per_ip = 3;
        options.config.server.trusted_proxies = vec!["127.0.0.3/32".parse().unwrap()];
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.1", app.address).await;
        assert!(answers(&mut stream).await, "within the cap");
        held.push(stream);
    }
    let mut fourth = connect_from("127.0.0.1", app.address).await;
    assert!(!answers(&mut fourth).await, "the fourth connection from one address is closed unserved");

    let mut neighbour = connect_from("127.0.0.2", app.address).await;
    assert!(answers(&mut neighbour).await, "another address still connects");
    let mut proxied = Vec::new();
    for _ in 0..5 {
        let mut stream = connect_from("127.0.0.3", app.address).await;
        assert!(answers(&mut stream).await, "a trusted proxy is many clients: no cap");
        proxied.push(stream);
    }
    for stream in &mut held {
        assert!(answers(stream).await, "the connections within the cap keep working");
    }

    // A closed connection frees its slot (once the server has seen it go).
    drop(held.pop());
    let deadline = Instant::now() + BOUND;
    loop {
        let mut again = connect_from("127.0.0.1", app.address).await;
        if answers(&mut again).await {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_answer_while_the_public_listener_is_full() {
    let app = spawn_with(|options| options.config.server.max_connections = 2).await;
    // Two connections take the public pool; more wait in the backlog.
    let mut public = Vec::new();
    for _ in 0..4 {
        public.push(TcpStream::connect(app.address).await.unwrap());
    }
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
    assert!(quick.get(app.url("/health")).send().await.is_err(), "the public pool is exhausted");
    for attempt in 0..3 {
        // A fresh connection each time: none is kept for the next.
        let fresh =
            reqwest::Client::builder().timeout(Duration::from_secs(3)).pool_max_idle_per_host(0).build().unwrap();
        let scrape = fresh.get(format!("http://{}/metrics", app.admin_address)).send().await;
        let status = scrape.map(|response| response.status().as_u16());
        assert_eq!(status.ok(), Some(200), "/metrics on connection {attempt}");
    }
    drop(public);
}
