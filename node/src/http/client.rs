//! A small HTTP/1.1 client over hyper, for the witness collector and `log mirror`:
//! one request per connection, plain `http://` only, every answer bounded in size and
//! time.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};

/// Time allowed for one request: connect, send, and read the whole answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// An answer: status, content type, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
}

/// Sends one request to `url` (`http://host[:port]/path`) and reads at most `limit`
/// bytes of answer, within [`TIMEOUT`].
pub async fn request(method: Method, url: &str, body: Option<Vec<u8>>, limit: usize) -> Result<Answer, String> {
    tokio::time::timeout(TIMEOUT, send(method, url, body, limit))
        .await
        .map_err(|_| format!("{url}: no answer within {} s", TIMEOUT.as_secs()))?
}

async fn send(method: Method, url: &str, body: Option<Vec<u8>>, limit: usize) -> Result<Answer, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("`{url}`: not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("`{url}`: only http:// URLs are supported"));
    }
    let host = uri.host().ok_or_else(|| format!("`{url}`: no host"))?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|e| format!("{url}: connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    tokio::spawn(conn);
    let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or(host);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority)
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| format!("{url}: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let content_type =
        resp.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| format!("{url}: reading the answer (at most {limit} bytes): {e}"))?
        .to_bytes();
    Ok(Answer { status, content_type, body })
}
