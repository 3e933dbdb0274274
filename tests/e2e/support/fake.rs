//! A fake upstream on 127.0.0.1 that answers with scripted bytes: whole,
//! chunked in pieces (so frames split across reads), or cut short.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`.
    Length,
    /// `Transfer-Encoding: chunked`, one chunk per part, then the last chunk.
    Chunked,
    /// Chunked, but the connection closes before the last chunk.
    ChunkedCut,
    /// No length: the body ends when the connection closes.
    Close,
    /// No answer at all: the connection closes once the request is read.
    Reset,
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub parts: Vec<Vec<u8>>,
    pub framing: Framing,
    /// Wait before answering at all.
    pub delay: Duration,
    /// Stop sending (but keep the connection open) after this many parts.
    pub stall_after: Option<usize>,
    /// Headers besides the content type and framing.
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self::whole(status, "application/json", body.to_string())
    }

    pub fn whole(status: u16, content_type: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type,
            parts: vec![body.into().into_bytes()],
            framing: Framing::Length,
            delay: Duration::ZERO,
            stall_after: None,
            headers: Vec::new(),
        }
    }

    /// `body` sent in pieces of `size` bytes, each its own chunk and write.
    pub fn pieces(content_type: &'static str, body: &str, size: usize) -> Self {
        Self {
            status: 200,
            content_type,
            parts: body.as_bytes().chunks(size).map(<[u8]>::to_vec).collect(),
            framing: Framing::Chunked,
            delay: Duration::ZERO,
            stall_after: None,
            headers: Vec::new(),
        }
    }

    pub fn sse(body: &str, size: usize) -> Self {
        Self::pieces("text/event-stream", body, size)
    }

    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn stall_after(mut self, parts: usize) -> Self {
        self.stall_after = Some(parts);
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Closes the connection without a byte of answer.
    pub fn reset() -> Self {
        Self::whole(200, "text/plain", "").framing(Framing::Reset)
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A running fake upstream.
pub struct FakeUpstream {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    received: watch::Receiver<usize>,
}

impl FakeUpstream {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        let (count, received) = watch::channel(0);
        let count = Arc::new(count);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (handler, recorded, count) = (handler.clone(), recorded.clone(), count.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, &*handler, &recorded, &count).await;
                });
            }
        });
        Self {
            url,
            requests,
            received,
        }
    }

    /// Waits until `n` requests have arrived (each is recorded before it is answered).
    pub async fn until_received(&self, n: usize) {
        let mut received = self.received.clone();
        received.wait_for(|count| *count >= n).await.unwrap();
    }

    /// Always answers `reply`.
    pub async fn always(reply: Reply) -> Self {
        Self::start(move |_| reply.clone()).await
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the fake received a request")
    }
}

async fn serve(
    mut socket: TcpStream,
    handler: &Handler,
    recorded: &Mutex<Vec<Recorded>>,
    count: &watch::Sender<usize>,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let request = read_request(&mut socket).await?;
    let reply = handler(&request);
    recorded.lock().unwrap().push(request);
    count.send_modify(|count| *count += 1);
    tokio::time::sleep(reply.delay).await;
    if reply.framing == Framing::Reset {
        return Ok(());
    }
    let mut head = format!(
        "HTTP/1.1 {} Fake\r\ncontent-type: {}\r\nconnection: close\r\n",
        reply.status, reply.content_type
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match reply.framing {
        Framing::Length => {
            let length: usize = reply.parts.iter().map(Vec::len).sum();
            head.push_str(&format!("content-length: {length}\r\n"));
        }
        Framing::Chunked | Framing::ChunkedCut => head.push_str("transfer-encoding: chunked\r\n"),
        Framing::Close | Framing::Reset => {}
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await?;
    let chunked = matches!(reply.framing, Framing::Chunked | Framing::ChunkedCut);
    for (i, part) in reply.parts.iter().enumerate() {
        if reply.stall_after == Some(i) {
            // Bounded: the gateway under test gives up long before.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        if chunked {
            socket.write_all(format!("{:x}\r\n", part.len()).as_bytes()).await?;
            socket.write_all(part).await?;
            socket.write_all(b"\r\n").await?;
        } else {
            socket.write_all(part).await?;
        }
        socket.flush().await?;
        // Separate writes reach the gateway as separate reads.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if reply.framing == Framing::Chunked {
        socket.write_all(b"0\r\n\r\n").await?;
    }
    socket.shutdown().await
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next().unwrap_or("").split(' ').nth(1).unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Recorded { path, headers, body })
}
