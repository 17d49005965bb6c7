//! The tests' one HTTP server on 127.0.0.1 (or on an address inside a test network
//! namespace): it answers boot guests with a script chosen per request, or serves a directory like a public bucket behind a CDN (HEAD, `Range: bytes=N-`,
//! and optionally a connection cut mid-body). Every request path is recorded.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the server answers.
enum Content {
    /// The body for each request path.
    Script(Box<dyn Fn(&str) -> String + Send>),
    /// Files under a directory; with `cut_after`, the first GET of a longer body stops after
    /// that many bytes, as a network failure would.
    Dir {
        root: PathBuf,
        cut_after: Option<u64>,
        cut_done: AtomicBool,
    },
}

/// A running server (its thread lives as long as the test process).
pub struct HttpServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

/// One parsed request: method, path (without the leading `/`), and the `Range` start.
struct Request {
    method: String,
    path: String,
    from: u64,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut from = 0;
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        if let Some(v) = header.to_ascii_lowercase().strip_prefix("range: bytes=") {
            from = v.trim().trim_end_matches('-').parse().unwrap_or(0);
        }
        header.clear();
    }
    let mut words = line.split_whitespace();
    Some(Request {
        method: words.next()?.to_owned(),
        path: words.next().unwrap_or("/").to_owned(),
        from,
    })
}

impl HttpServer {
    /// Serves `body` for every GET.
    pub fn start(body: &str) -> HttpServer {
        let body = body.to_owned();
        HttpServer::start_with(move |_| body.clone())
    }

    /// Serves what `respond` returns for each request path.
    pub fn start_with(respond: impl Fn(&str) -> String + Send + 'static) -> HttpServer {
        HttpServer::spawn(Content::Script(Box::new(respond)))
    }

    /// Like [`HttpServer::start_with`], listening on `addr` inside the network namespace
    /// `netns` (`/run/netns/NAME`).
    pub fn start_in(
        netns: &str,
        addr: &str,
        respond: impl Fn(&str) -> String + Send + 'static,
    ) -> HttpServer {
        HttpServer::serve(bind_in(netns, addr), Content::Script(Box::new(respond)))
    }

    /// Like [`HttpServer::serve_dir`], listening on `addr` inside `netns`.
    pub fn serve_dir_in(netns: &str, addr: &str, root: PathBuf) -> HttpServer {
        let content = Content::Dir {
            root,
            cut_after: None,
            cut_done: AtomicBool::new(true),
        };
        HttpServer::serve(bind_in(netns, addr), content)
    }

    /// Serves the files under `root`, cutting the first long GET after `cut_after` bytes.
    pub fn serve_dir(root: PathBuf, cut_after: Option<u64>) -> HttpServer {
        HttpServer::spawn(Content::Dir {
            root,
            cut_after,
            cut_done: AtomicBool::new(cut_after.is_none()),
        })
    }

    fn spawn(content: Content) -> HttpServer {
        HttpServer::serve(TcpListener::bind("127.0.0.1:0").unwrap(), content)
    }

    fn serve(listener: TcpListener, content: Content) -> HttpServer {
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(req) = read_request(&stream) else {
                    continue;
                };
                seen.lock().unwrap().push(req.path.clone());
                let _ = respond(&content, &req, &mut stream);
            }
        });
        HttpServer { port, requests }
    }

    /// The guest's view of this server (QEMU user networking maps 10.0.2.2 to the host).
    pub fn guest_url(&self, path: &str) -> String {
        format!("http://10.0.2.2:{}/{path}", self.port)
    }

    /// The host's view of this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// Every request path so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// A listener on `addr` (any port) inside the network namespace `netns`: a socket stays in
/// the namespace it was made in, so one thread enters it to bind.
fn bind_in(netns: &str, addr: &str) -> TcpListener {
    use std::os::fd::AsRawFd;
    let (ns, addr) = (format!("/run/netns/{netns}"), addr.to_owned());
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).unwrap_or_else(|e| panic!("{ns}: {e}"));
        // SAFETY: setns on this thread only, with an fd that stays open for the call.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
        TcpListener::bind(format!("{addr}:0")).unwrap()
    })
    .join()
    .unwrap()
}

fn respond(content: &Content, req: &Request, stream: &mut TcpStream) -> std::io::Result<()> {
    match content {
        Content::Script(script) => {
            let body = script(&req.path);
            write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        Content::Dir {
            root,
            cut_after,
            cut_done,
        } => {
            let Ok(body) = std::fs::read(root.join(req.path.trim_start_matches('/'))) else {
                return stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            };
            let from = req.from.min(body.len() as u64) as usize;
            let status = if from > 0 {
                "206 Partial Content"
            } else {
                "200 OK"
            };
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len() - from
            )?;
            if req.method == "HEAD" {
                return Ok(());
            }
            let mut end = body.len();
            if let Some(cut) = cut_after
                && body.len() - from > *cut as usize
                && !cut_done.swap(true, Ordering::SeqCst)
            {
                end = from + *cut as usize;
            }
            stream.write_all(&body[from..end])
        }
    }
}
