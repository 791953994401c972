//! Small real HTTP clients for tests: a raw HTTP/1.1 client that shows the
//! wire (headers as sent, how the connection ended), and an h2c client
//! built on hyper.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use super::TEST_WAIT;

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request on `stream` and reads one response (content-length or chunked).
pub fn exchange(stream: &mut (impl Read + Write), request: &str) -> std::io::Result<Response> {
    stream.write_all(request.as_bytes())?;
    read_response(stream)
}

/// `GET path` over a new TCP connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(TEST_WAIT))
        .expect("read timeout");
    exchange(
        &mut stream,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"),
    )
    .expect("response")
}

/// `GET path` over a new unix-socket connection.
pub fn get_unix(path: &std::path::Path, target: &str) -> Response {
    let mut stream = std::os::unix::net::UnixStream::connect(path).expect("connect unix");
    stream
        .set_read_timeout(Some(TEST_WAIT))
        .expect("read timeout");
    exchange(
        &mut stream,
        &format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n"),
    )
    .expect("response")
}

/// Reads one response from `stream`.
pub fn read_response_from(stream: &mut impl Read) -> std::io::Result<Response> {
    read_response(stream)
}

fn read_response(stream: &mut impl Read) -> std::io::Result<Response> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        read_more(stream, &mut buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf.split_off(head_end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line `{status_line}`")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        while rest.len() < len {
            read_more(stream, &mut rest)?;
        }
        rest.truncate(len);
        rest
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(stream, rest)?
    } else {
        // Body until EOF.
        stream.read_to_end(&mut rest)?;
        rest
    };
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(stream: &mut impl Read, mut buf: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf, b"\r\n") {
                break i;
            }
            read_more(stream, &mut buf)?;
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad(&format!("bad chunk size `{size_text}`")))?;
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            read_more(stream, &mut buf)?;
        }
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

fn read_more(stream: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "eof before a complete response",
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_owned())
}

/// `GET path` over h2c with prior knowledge; returns status, pid header and body.
pub fn h2c_get(addr: SocketAddr, path: &str) -> Response {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tokio::time::timeout(TEST_WAIT, h2c_get_async(addr, path))
            .await
            .expect("h2c request within the bound")
    })
}

async fn h2c_get_async(addr: SocketAddr, path: &str) -> Response {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
    let driver = tokio::spawn(conn);
    let request = http::Request::get(format!("http://{addr}{path}"))
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("h2 response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("h2 body")
        .to_bytes();
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
