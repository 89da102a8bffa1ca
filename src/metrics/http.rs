//! `GET /metrics` over a blocking `std::net` listener (`--metrics-addr`):
//! one thread, `metrics-http`, serving one connection at a time. A scrape
//! is one short request every few seconds, so a thread per connection would
//! only add a way to exhaust the node. Each connection gets a deadline for
//! its whole request, so a slow or silent client holds the thread for at
//! most `REQUEST_TIMEOUT`; a malformed request gets a 400, another path a
//! 404, another method a 405, and nothing a client sends can end the thread
//! or touch the node.

use super::text::CONTENT_TYPE;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The path Prometheus scrapes.
pub const METRICS_PATH: &str = "/metrics";
/// A request line and headers beyond this are refused (400).
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Time for a client to send its whole request, and for its answer to go.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

pub struct MetricsServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Serves `render()` at `GET /metrics` on a listener bound earlier (so a
    /// port in use fails at start-up, DESIGN.md 2.7).
    pub fn from_listener(
        listener: TcpListener,
        render: impl Fn() -> String + Send + 'static,
    ) -> io::Result<MetricsServer> {
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || accept_loop(listener, &render, &stop))?;
        Ok(MetricsServer {
            addr,
            stopping,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the thread (at most one request's
    /// timeout).
    pub fn shutdown(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, render: &dyn Fn() -> String, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, say: the node goes on, and so
                // does this thread, a little later.
                log::warn!("metrics endpoint: accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // Rendering only reads counters and a copy of the status; a panic
        // there would be our bug, and must not end the endpoint either.
        match catch_unwind(AssertUnwindSafe(|| serve(stream, render))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::debug!("metrics endpoint: request failed: {e}"),
            Err(_) => log::error!("metrics endpoint: rendering panicked; still serving"),
        }
    }
}

fn serve(mut stream: TcpStream, render: &dyn Fn() -> String) -> io::Result<()> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let response = match read_head(&mut stream, deadline)? {
        Some(head) => respond(&head, render),
        None => Response::error(400, "Bad Request", "request head too large\n"),
    };
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    stream.write_all(&response.to_bytes())?;
    stream.flush()
}

/// Reads up to the blank line that ends the headers. None when the head
/// exceeds `REQUEST_HEAD_BYTES_MAX`; an error at the deadline or EOF.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(Some(head));
        }
        if head.len() > REQUEST_HEAD_BYTES_MAX {
            return Ok(None);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request not complete in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the request ended",
            ));
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    crlf.into_iter().chain(lf).min()
}

#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    /// HEAD: the headers of the GET, without its body.
    head_only: bool,
    allow: bool,
}

impl Response {
    fn error(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            head_only: false,
            allow: false,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

/// The answer to one request head (request line and headers). Headers are
/// not needed: every answer closes the connection.
fn respond(head: &[u8], render: &dyn Fn() -> String) -> Response {
    let Some(line) = std::str::from_utf8(head)
        .ok()
        .and_then(|text| text.lines().next())
    else {
        return Response::error(400, "Bad Request", "request line is not UTF-8\n");
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Response::error(400, "Bad Request", "malformed request line\n");
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Response::error(400, "Bad Request", "malformed request line\n");
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    if path != METRICS_PATH {
        return Response::error(404, "Not Found", "not found; metrics are at /metrics\n");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut response =
                Response::error(405, "Method Not Allowed", "only GET and HEAD are served\n");
            response.allow = true;
            return response;
        }
    };
    Response {
        status: 200,
        reason: "OK",
        content_type: CONTENT_TYPE,
        body: render(),
        head_only,
        allow: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(request: &str) -> Response {
        let head = request.as_bytes();
        let end = head_end(head).expect("a complete head");
        respond(&head[..end], &|| "sraft_term 3\n".to_string())
    }

    #[test]
    fn get_metrics_returns_the_text_format() {
        let r = answer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((r.status, r.body.as_str()), (200, "sraft_term 3\n"));
        assert_eq!(r.content_type, CONTENT_TYPE);
        let bytes = String::from_utf8(r.to_bytes()).unwrap();
        assert!(bytes.starts_with("HTTP/1.1 200 OK\r\n"), "{bytes}");
        assert!(bytes.contains("Content-Length: 13\r\n"), "{bytes}");
        assert!(bytes.ends_with("\r\n\r\nsraft_term 3\n"), "{bytes}");
        // Query strings are ignored; bare-LF clients are tolerated.
        assert_eq!(answer("GET /metrics?x=1 HTTP/1.0\n\n").status, 200);
    }

    #[test]
    fn head_has_the_headers_of_get_and_no_body() {
        let r = answer("HEAD /metrics HTTP/1.1\r\n\r\n");
        let bytes = String::from_utf8(r.to_bytes()).unwrap();
        assert!(bytes.contains("Content-Length: 13\r\n"), "{bytes}");
        assert!(bytes.ends_with("\r\n\r\n"), "{bytes}");
    }

    #[test]
    fn other_paths_methods_and_garbage_are_refused() {
        assert_eq!(answer("GET / HTTP/1.1\r\n\r\n").status, 404);
        assert_eq!(answer("GET /metricsx HTTP/1.1\r\n\r\n").status, 404);
        let post = answer("POST /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(post.status, 405);
        assert!(
            String::from_utf8(post.to_bytes())
                .unwrap()
                .contains("Allow: GET, HEAD")
        );
        for garbage in [
            "GET\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET /metrics SMTP/1.0\r\n\r\n",
            "\u{1}\u{2}\r\n\r\n",
        ] {
            assert_eq!(answer(garbage).status, 400, "{garbage:?}");
        }
        let not_utf8 = respond(b"GET /\xff HTTP/1.1", &String::new);
        assert_eq!(not_utf8.status, 400);
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn the_thread_serves_on_after_bad_and_abandoned_requests() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut server =
            MetricsServer::from_listener(listener, || "sraft_term 1\n".into()).unwrap();
        let addr = server.local_addr();
        // Abandoned mid-request, and a head that never ends.
        drop(TcpStream::connect(addr).unwrap());
        let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(20_000));
        let mut stream = TcpStream::connect(addr).unwrap();
        let _ = stream.write_all(long.as_bytes());
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
        assert!(exchange(addr, b"BREW /pot HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("sraft_term 1\n"), "{ok}");
        server.shutdown();
    }
}
