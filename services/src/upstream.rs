//! The HTTP client every network provider shares: reqwest, with pooled
//! keep-alive connections, HTTP/2 where the upstream offers it (ALPN),
//! rustls with the platform's verifier, the proxies of `HTTPS_PROXY`,
//! `HTTP_PROXY` and `NO_PROXY`, and optionally a private CA bundle.
//!
//! Each thread keeps its own `reqwest::Client`: a pooled connection is
//! driven by a task on the runtime that opened it, so a call that borrowed
//! another thread's connection would hop threads twice.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;

use crate::client::describe;
use crate::error::ErrorKind;

/// Error bodies are read up to this much (their message is all we keep).
const ERROR_BODY_LIMIT: usize = 64 << 10;

/// The largest whole answer read from an upstream: a chat completion is
/// kilobytes; a broken upstream must not grow memory without bound.
const ANSWER_BODY_LIMIT: usize = 16 << 20;

/// The HTTP client: how each thread's `reqwest::Client` is built. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpClient {
    settings: Arc<Settings>,
}

#[derive(Debug)]
struct Settings {
    /// Tells this client's per-thread copies from other clients'.
    id: usize,
    /// Roots trusted besides the platform's.
    extra_roots: Vec<reqwest::Certificate>,
    /// How long connecting may take.
    connect_timeout: Duration,
}

/// How long connecting may take when nothing else is said.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client with the platform's roots and the environment's proxies.
pub fn http_client() -> HttpClient {
    HttpClient::new(None, DEFAULT_CONNECT_TIMEOUT).expect("a client with default settings builds")
}

thread_local! {
    static CLIENTS: RefCell<Vec<(usize, reqwest::Client)>> = const { RefCell::new(Vec::new()) };
}

/// Every client made, so a thread can build its copies before its first call.
static MADE: Mutex<Vec<Weak<Settings>>> = Mutex::new(Vec::new());

/// Builds this thread's copy of every client made so far. Building one
/// loads the trusted roots (milliseconds): a server calls this on each
/// worker thread as it starts, so no request pays for it.
pub fn warm_this_thread() {
    let made: Vec<_> = MADE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for settings in made {
        HttpClient { settings }.on_this_thread();
    }
}

impl HttpClient {
    /// A client that also trusts the certificates of `ca_bundle` (PEM), for
    /// an upstream or proxy behind a private CA. Fails if the bundle does not
    /// parse, or the environment names a proxy that is not a URL. A
    /// connection not made within `connect_timeout` is a connect error.
    pub fn new(ca_bundle: Option<&[u8]>, connect_timeout: Duration) -> Result<Self, String> {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        let extra_roots = match ca_bundle {
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem).map_err(|e| describe(&e))?,
            None => Vec::new(),
        };
        let settings = Settings {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            extra_roots,
            connect_timeout,
        };
        // Built once here, so that a bad setting stops start-up, not a call.
        settings.build().map_err(|e| describe(&e))?;
        let settings = Arc::new(settings);
        let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
        made.retain(|s| s.strong_count() > 0);
        made.push(Arc::downgrade(&settings));
        Ok(Self { settings })
    }

    /// Sends `request`; an error means no answer came (the status is not looked at).
    pub(crate) async fn send(&self, request: reqwest::Request) -> Result<reqwest::Response, ErrorKind> {
        self.on_this_thread().execute(request).await.map_err(send_error)
    }

    fn on_this_thread(&self) -> reqwest::Client {
        CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            if let Some((_, client)) = clients.iter().find(|(id, _)| *id == self.settings.id) {
                return client.clone();
            }
            let client = self.settings.build().expect("these settings built at start-up");
            clients.push((self.settings.id, client.clone()));
            client
        })
    }
}

impl Settings {
    fn build(&self) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            // A chat call is never repeated by the client: failover decides what
            // is tried again, and a call repeated here would be charged twice.
            // With no retries the request is not copied for one either.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            // An API that redirects a POST is misconfigured: say so, do not follow.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tls_certs_merge(self.extra_roots.iter().cloned())
            .build()
    }
}

/// No answer came: a connection not made (in time, too), or one that broke
/// before the answer's first byte, is a connect error (the call may be
/// tried again); no other timeout is set on the client.
fn send_error(error: reqwest::Error) -> ErrorKind {
    if error.is_timeout() && !error.is_connect() {
        return ErrorKind::Timeout;
    }
    // The URL is the configured base URL: the attempt says which provider.
    ErrorKind::Connect(describe(&error.without_url()))
}

/// An upstream answer's body, read as it arrives.
pub(crate) fn body(response: reqwest::Response) -> impl Stream<Item = reqwest::Result<Bytes>> + Send {
    response.bytes_stream()
}

/// A whole body, or why it could not be read.
pub(crate) async fn read_body(response: reqwest::Response) -> Result<Bytes, String> {
    read_up_to(response, ANSWER_BODY_LIMIT)
        .await?
        .ok_or_else(|| format!("the answer is larger than {ANSWER_BODY_LIMIT} bytes"))
}

/// An error body, read up to a limit.
pub(crate) async fn read_error_body(response: reqwest::Response) -> Bytes {
    read_up_to(response, ERROR_BODY_LIMIT)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The body, or `None` once it is past `limit`. A body that comes in one
/// piece (most whole answers) is not copied.
async fn read_up_to(mut response: reqwest::Response, limit: usize) -> Result<Option<Bytes>, String> {
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e.without_url()))? {
        match first.take() {
            None if rest.is_empty() => first = Some(chunk),
            earlier => {
                rest.extend_from_slice(&earlier.unwrap_or_default());
                rest.extend_from_slice(&chunk);
            }
        }
        if first.as_ref().map_or(rest.len(), Bytes::len) > limit {
            return Ok(None);
        }
    }
    Ok(Some(first.unwrap_or_else(|| rest.freeze())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_here(client: &HttpClient) -> bool {
        CLIENTS.with(|c| c.borrow().iter().any(|(id, _)| *id == client.settings.id))
    }

    #[test]
    fn a_thread_warmed_up_has_its_copy_of_every_client_before_a_call() {
        let client = http_client();
        let warmed = std::thread::spawn({
            let client = client.clone();
            move || {
                let before = built_here(&client);
                warm_this_thread();
                (before, built_here(&client))
            }
        });
        assert_eq!(warmed.join().unwrap(), (false, true));
    }
}
