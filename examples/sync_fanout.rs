//! Keep the outer code sync, make the I/O section async.
//!
//! A sync service (a plain `fn main`: no `#[tokio::main]`, no runtime built
//! by hand) needs to call a backend 40 times. Doing that one call after
//! another costs the sum of the latencies and one hung call stalls the lot.
//! Instead the service hands one async section to colorseam:
//!
//! 1. `colorseam::block_on_timeout` starts a fake HTTP-ish backend on
//!    loopback. colorseam's bridge runtime supplies the reactor and timers;
//!    the sync code never builds a runtime.
//! 2. One more `block_on_timeout` call (overall deadline 2 s) fans out 40
//!    `GET /item/N` requests concurrently with `futures::future::join_all`,
//!    each under its own 300 ms `tokio::time::timeout`, and returns *every*
//!    outcome, successes and failures alike, as a `Vec`.
//! 3. Back in sync code the service summarises the outcomes, lists every
//!    failure with its reason, and compares the wall time with the sum of the
//!    per-request times to show that the requests overlapped.
//! 4. Finally it shows the guard rail: `colorseam::block_on` called from
//!    inside async code returns a typed error instead of panicking (tokio's
//!    `Runtime::block_on` panics there) or freezing the executor.
//!
//! The backend answers `GET /item/N` after `(N % 7) × 10` ms, answers
//! `503` when `N % 13 == 0`, closes the connection without answering when
//! `N % 17 == 0`, and never answers `N == 29`, like a hung dependency.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --example sync_fanout
//! ```
//!
//! It takes well under a second.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Items the service fetches: `GET /item/1` to `GET /item/ITEMS`.
const ITEMS: u32 = 40;
/// Each request's own deadline: a hung backend call costs at most this.
const PER_REQUEST_TIMEOUT: Duration = Duration::from_millis(300);
/// The whole fan-out's deadline, a backstop above the per-request one: if
/// something inside ignored its own timeout, the sync caller is still
/// released.
const FANOUT_DEADLINE: Duration = Duration::from_secs(2);
/// Binding a loopback socket is instant; a generous bound still beats none.
const STARTUP_DEADLINE: Duration = Duration::from_secs(1);
/// The backend's latency step: item N waits `(N % 7) * DELAY_STEP`.
const DELAY_STEP: Duration = Duration::from_millis(10);
/// Items divisible by this get an error status.
const FAILING_EVERY: u32 = 13;
/// Items divisible by this get the connection closed without an answer.
const DROPPED_EVERY: u32 = 17;
/// The item the backend never answers.
const HUNG_ITEM: u32 = 29;
/// Responses are tiny; cap what a client reads so a broken backend cannot
/// make it buffer without bound.
const MAX_RESPONSE: u64 = 64 * 1024;

fn main() -> Result<(), Box<dyn Error>> {
    // Plain thread, no runtime anywhere: blocking is fine here.
    println!("main: context() = {:?}", colorseam::context());

    // The backend's accept loop is spawned from inside this future, which
    // runs on colorseam's bridge runtime, so the loop keeps running there
    // after this call returns.
    let addr = colorseam::block_on_timeout(start_backend(), STARTUP_DEADLINE)??;
    println!("backend listening on {addr}\n");

    let started = Instant::now();
    let fetched = colorseam::block_on_timeout(fan_out(addr), FANOUT_DEADLINE)?;
    let wall = started.elapsed();

    print_summary(&fetched);
    print_failures(&fetched);
    print_timing(&fetched, wall);
    show_guard_rail()
}

// ---------------------------------------------------------------------------
// The sync side: reporting.
// ---------------------------------------------------------------------------

/// One request's outcome, kept whole: which item, how long it took, and
/// either the body or the reason it failed.
struct Fetched {
    item: u32,
    took: Duration,
    result: Result<String, FetchError>,
}

/// The outcome categories, in the order the summary prints them.
const CATEGORIES: [&str; 5] = [
    "ok",
    "error status",
    "timed out",
    "connection error",
    "bad response",
];

fn category(result: &Result<String, FetchError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(FetchError::Status { .. }) => "error status",
        Err(FetchError::TimedOut(_)) => "timed out",
        Err(FetchError::Connection(_)) => "connection error",
        Err(FetchError::BadResponse(_)) => "bad response",
    }
}

/// Counts per category, zeros included, so a reader can check that the
/// counts add up to every request sent.
fn print_summary(fetched: &[Fetched]) {
    println!("{} requests, by outcome:", fetched.len());
    for name in CATEGORIES {
        let count = fetched
            .iter()
            .filter(|f| category(&f.result) == name)
            .count();
        println!("  {name:<17} {count:>3}");
    }
    if let Some((item, body)) = fetched
        .iter()
        .find_map(|f| f.result.as_ref().ok().map(|body| (f.item, body)))
    {
        println!("  (a sample ok body, item {item}: {body:?})");
    }
}

fn print_failures(fetched: &[Fetched]) {
    println!("\nfailures:");
    for f in fetched {
        if let Err(err) = &f.result {
            println!(
                "  item {:>2}  {:<17} after {:>7.1?}  {err}",
                f.item,
                category(&f.result),
                f.took
            );
        }
    }
}

/// Wall time against the slowest single request and the sum of all of
/// them: concurrent fetches cost about the slowest, sequential ones the sum.
fn print_timing(fetched: &[Fetched], wall: Duration) {
    let slowest = fetched.iter().map(|f| f.took).max().unwrap_or_default();
    let sum: Duration = fetched.iter().map(|f| f.took).sum();
    println!("\ntiming:");
    println!("  wall time of the fan-out     {wall:>8.1?}");
    println!("  slowest single request       {slowest:>8.1?}");
    println!("  sum of all request times     {sum:>8.1?}");
    let overlap = sum.as_secs_f64() / wall.as_secs_f64().max(f64::EPSILON);
    println!(
        "  => they overlapped: wall ≈ slowest; one at a time would take ≈ the sum ({overlap:.1}x)"
    );
}

/// Inside a future that `colorseam::block_on` is polling, the code is
/// async: blocking there would stall the very executor that polls it. So a
/// nested `colorseam::block_on` is refused with a typed error. tokio's
/// `Runtime::block_on` / `Handle::block_on` panic in the same spot ("Cannot
/// start a runtime from within a runtime").
fn show_guard_rail() -> Result<(), Box<dyn Error>> {
    println!("\nguard rail:");
    let (context, nested) = colorseam::block_on(async {
        let context = colorseam::context();
        let nested = colorseam::block_on(async { "ran" });
        (context, nested)
    })?;
    println!("  inside block_on: context() = {context:?}");
    match nested {
        Err(err) if err.is_async_context() => {
            println!("  nested colorseam::block_on returned Err: {err}");
            Ok(())
        }
        Err(err) => Err(format!("nested block_on failed for another reason: {err}").into()),
        Ok(value) => {
            Err(format!("nested block_on was expected to be refused, got {value:?}").into())
        }
    }
}

// ---------------------------------------------------------------------------
// The async section: the fan-out client.
// ---------------------------------------------------------------------------

/// Why one request failed. Typed rather than a string so the summary can
/// group failures without parsing messages.
#[derive(Debug)]
enum FetchError {
    /// The backend answered with a non-2xx status.
    Status { code: u16, reason: String },
    /// No complete answer within the per-request timeout.
    TimedOut(Duration),
    /// Connecting, writing or reading failed, or the backend hung up early.
    Connection(io::Error),
    /// The backend answered something that is not a response.
    BadResponse(&'static str),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Status { code, reason } => write!(f, "backend answered {code} {reason}"),
            FetchError::TimedOut(limit) => write!(f, "no answer within {limit:?}"),
            FetchError::Connection(err) => write!(f, "{err}"),
            FetchError::BadResponse(why) => write!(f, "malformed response: {why}"),
        }
    }
}

impl Error for FetchError {}

/// Starts every request at once and waits for all of them. `join_all` keeps
/// each outcome, in item order; none is dropped or short-circuited.
async fn fan_out(addr: SocketAddr) -> Vec<Fetched> {
    join_all((1..=ITEMS).map(|item| fetch(addr, item))).await
}

/// One request under its own deadline, timed.
async fn fetch(addr: SocketAddr, item: u32) -> Fetched {
    let started = Instant::now();
    let result = match tokio::time::timeout(PER_REQUEST_TIMEOUT, get_item(addr, item)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(FetchError::TimedOut(PER_REQUEST_TIMEOUT)),
    };
    Fetched {
        item,
        took: started.elapsed(),
        result,
    }
}

async fn get_item(addr: SocketAddr, item: u32) -> Result<String, FetchError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(FetchError::Connection)?;
    let request = format!("GET /item/{item} HTTP/1.0\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(FetchError::Connection)?;
    // HTTP/1.0 without keep-alive: the backend closes after its answer.
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await
        .map_err(FetchError::Connection)?;
    parse_response(&raw)
}

/// `HTTP/1.0 <code> <reason>\r\n<headers>\r\n\r\n<body>` → the body, or
/// why not.
fn parse_response(raw: &[u8]) -> Result<String, FetchError> {
    if raw.is_empty() {
        return Err(FetchError::Connection(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "backend closed the connection without answering",
        )));
    }
    let text = std::str::from_utf8(raw).map_err(|_| FetchError::BadResponse("not UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(FetchError::BadResponse("no blank line after the headers"))?;
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let code: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or(FetchError::BadResponse("no numeric status code"))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    if (200..300).contains(&code) {
        Ok(body.to_owned())
    } else {
        Err(FetchError::Status { code, reason })
    }
}

// ---------------------------------------------------------------------------
// The fake backend.
// ---------------------------------------------------------------------------

/// What the backend does with a request for one item.
enum Behaviour {
    Answer { delay: Duration },
    Fail { delay: Duration },
    HangUp,
    NeverAnswer,
}

fn behaviour(item: u32) -> Behaviour {
    let delay = DELAY_STEP * (item % 7);
    if item == HUNG_ITEM {
        Behaviour::NeverAnswer
    } else if item % DROPPED_EVERY == 0 {
        Behaviour::HangUp
    } else if item % FAILING_EVERY == 0 {
        Behaviour::Fail { delay }
    } else {
        Behaviour::Answer { delay }
    }
}

/// Binds a loopback port and spawns the accept loop on the current runtime
/// (the bridge runtime, when called through `block_on_timeout`).
async fn start_backend() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener));
    Ok(addr)
}

/// Accepts forever, one task per connection. Errors go to stderr: a demo
/// backend has no caller to return them to, but they must not vanish.
async fn serve(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                tokio::spawn(async move {
                    if let Err(err) = handle(stream).await {
                        eprintln!("backend: connection failed: {err}");
                    }
                });
            }
            Err(err) => {
                eprintln!("backend: accept failed: {err}");
                // Typically out of file descriptors: back off, do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn handle(stream: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    // Read the whole request before answering: closing a socket with unread
    // input makes the OS send a reset, which could cut the answer short.
    skip_headers(&mut reader).await?;
    let Some(item) = parse_item(&request_line) else {
        return respond(reader.get_mut(), "400 Bad Request", "expected GET /item/N").await;
    };
    match behaviour(item) {
        Behaviour::Answer { delay } => {
            tokio::time::sleep(delay).await;
            let body = format!("item {item}: {} widgets", item * 3);
            respond(reader.get_mut(), "200 OK", &body).await
        }
        Behaviour::Fail { delay } => {
            tokio::time::sleep(delay).await;
            respond(reader.get_mut(), "503 Service Unavailable", "try later").await
        }
        // Returning drops the stream: the client sees the connection close
        // with no answer.
        Behaviour::HangUp => Ok(()),
        // Hold the connection open without answering until the client gives
        // up and closes it; then this task ends too, nothing leaks.
        Behaviour::NeverAnswer => {
            let mut ignored = Vec::new();
            reader.read_to_end(&mut ignored).await?;
            Ok(())
        }
    }
}

async fn skip_headers<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).await?;
        if read == 0 || line == "\r\n" || line == "\n" {
            return Ok(());
        }
    }
}

/// `GET /item/N HTTP/1.0` → `N`.
fn parse_item(request_line: &str) -> Option<u32> {
    let mut parts = request_line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(path)) => path.strip_prefix("/item/")?.parse().ok(),
        _ => None,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
