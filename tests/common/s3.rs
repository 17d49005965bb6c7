//! A real S3 server (s3s-fs, real SigV4 auth) on 127.0.0.1 for one test, and the real `aws`
//! CLI pointed at it.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Env, Run};

pub const BUCKET: &str = "bootforge";
pub const ACCESS_KEY: &str = "bootforge-test";
pub const SECRET_KEY: &str = "bootforge-test-secret";

/// A tool `ci/test.sh` installs: `$VAR`, else its cache, else on PATH.
fn tool(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return p.into();
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/bootforge/tools/bin")
        .join(name);
    if cached.exists() {
        return cached;
    }
    name.into()
}

/// Which server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// s3s-fs: objects are plain files under `data/<bucket>/`, so tests can reach behind it.
    S3sFs,
    /// Garage, single node: what we recommend people self-host.
    Garage,
    /// A Garage cluster of three nodes, replication factor 3; this server is node 1's S3 API.
    GarageCluster,
}

/// Another node of a Garage cluster (node 1 is the `S3Server` itself).
struct Peer {
    child: Option<Child>,
    config: PathBuf,
}

fn garage(config: &Path, args: &[&str]) -> Run {
    Command::new(tool("GARAGE", "garage"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("running garage: {e}; ci/test.sh installs it"))
        .into()
}

fn spawn_garage(config: &Path, log: &Path) -> Child {
    Command::new(tool("GARAGE", "garage"))
        .arg("-c")
        .arg(config)
        .arg("server")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting garage: {e}; ci/test.sh installs it"))
}

/// A running server, killed on drop.
pub struct S3Server {
    child: Option<Child>,
    kind: Kind,
    pub port: u16,
    /// The server's data directory (for s3s-fs: one folder per bucket).
    pub data: PathBuf,
    access_key: String,
    secret_key: String,
    region: &'static str,
    /// Nodes 2 and 3 of a Garage cluster.
    peers: Vec<Peer>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl S3Server {
    /// Starts s3s-fs storing under `env`'s directory, with the test bucket created.
    pub fn start(env: &Env) -> S3Server {
        let data = env.path().join("s3-data");
        fs::create_dir_all(data.join(BUCKET)).unwrap();
        let mut s = S3Server {
            child: None,
            kind: Kind::S3sFs,
            port: free_port(),
            data,
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            region: "us-east-1",
            peers: Vec::new(),
        };
        s.restart();
        s
    }

    /// Starts a single-node Garage under `env`'s directory, with the test bucket created.
    pub fn start_garage(env: &Env) -> S3Server {
        let data = env.path().join("garage");
        fs::create_dir_all(&data).unwrap();
        let (port, rpc) = (free_port(), free_port());
        fs::write(
            data.join("garage.toml"),
            format!(
                "metadata_dir = \"{0}/meta\"\ndata_dir = \"{0}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{1}\"\n[s3_api]\ns3_region = \"garage\"\n\
                 api_bind_addr = \"127.0.0.1:{port}\"\nroot_domain = \".s3.garage.localhost\"\n",
                data.display(),
                "b0".repeat(32),
            ),
        )
        .unwrap();
        // The aws CLI (v1) addresses Garage by path only when told to.
        fs::write(
            data.join("aws-config"),
            "[default]\ns3 =\n  addressing_style = path\n",
        )
        .unwrap();
        let mut s = S3Server {
            child: None,
            kind: Kind::Garage,
            port,
            data,
            access_key: "GKbootforgetest".into(),
            secret_key: SECRET_KEY.into(),
            region: "garage",
            peers: Vec::new(),
        };
        s.restart();
        s
    }

    /// Starts a Garage cluster of three nodes on 127.0.0.1 (replication factor 3, one zone),
    /// with the test bucket and key made through node 1, as NOTES.md describes.
    pub fn start_garage_cluster(env: &Env) -> S3Server {
        let data = env.path().join("garage-cluster");
        let mut configs = Vec::new();
        let mut rpc_ports = Vec::new();
        let mut s3_port = 0;
        for n in 1..=3 {
            let dir = data.join(format!("node{n}"));
            fs::create_dir_all(&dir).unwrap();
            let (port, rpc, admin) = (free_port(), free_port(), free_port());
            if n == 1 {
                s3_port = port;
            }
            let config = dir.join("garage.toml");
            fs::write(
                &config,
                format!(
                    "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                     replication_factor = 3\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                     [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{port}\"\n\
                     root_domain = \".s3.garage.localhost\"\n[admin]\n\
                     api_bind_addr = \"127.0.0.1:{admin}\"\n",
                    d = dir.display(),
                    secret = "c1".repeat(32),
                ),
            )
            .unwrap();
            configs.push(config);
            rpc_ports.push(rpc);
        }
        fs::write(
            data.join("aws-config"),
            "[default]\ns3 =\n  addressing_style = path\n",
        )
        .unwrap();
        let peers: Vec<Peer> = configs[1..]
            .iter()
            .map(|c| Peer {
                child: Some(spawn_garage(c, &c.with_extension("log"))),
                config: c.clone(),
            })
            .collect();
        let first = spawn_garage(&configs[0], &configs[0].with_extension("log"));
        let id = |config: &Path| {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let out = garage(config, &["node", "id", "-q"]);
                if out.code == Some(0) {
                    return out.stdout.trim().split('@').next().unwrap().to_owned();
                }
                assert!(Instant::now() < deadline, "garage did not start:\n{out}");
                std::thread::sleep(Duration::from_millis(200));
            }
        };
        let ids: Vec<String> = configs.iter().map(|c| id(c)).collect();
        let c1 = &configs[0];
        for (n, nid) in ids.iter().enumerate().skip(1) {
            garage(
                c1,
                &[
                    "node",
                    "connect",
                    &format!("{nid}@127.0.0.1:{}", rpc_ports[n]),
                ],
            )
            .ok();
        }
        for nid in &ids {
            garage(c1, &["layout", "assign", "-z", "dc1", "-c", "1G", nid]).ok();
        }
        garage(c1, &["layout", "apply", "--version", "1"]).ok();
        let key = "GKb00f0f9e0000000000000001";
        garage(
            c1,
            &[
                "key",
                "import",
                "--yes",
                "-n",
                "bootforge",
                key,
                &"5e".repeat(32),
            ],
        )
        .ok();
        garage(c1, &["bucket", "create", BUCKET]).ok();
        garage(
            c1,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                BUCKET,
                "--key",
                "bootforge",
            ],
        )
        .ok();
        let s = S3Server {
            child: Some(first),
            kind: Kind::GarageCluster,
            port: s3_port,
            data,
            access_key: key.into(),
            secret_key: "5e".repeat(32),
            region: "garage",
            peers,
        };
        s.wait_ready("garage cluster");
        s
    }

    /// Stops node `n` (2 or 3) of a Garage cluster at once.
    pub fn kill_node(&mut self, n: usize) {
        if let Some(mut c) = self.peers[n - 2].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `n` (2 or 3) of a Garage cluster again, with its data.
    pub fn restart_node(&mut self, n: usize) {
        self.kill_node(n);
        let peer = &mut self.peers[n - 2];
        peer.child = Some(spawn_garage(
            &peer.config,
            &peer.config.with_extension("log"),
        ));
    }

    /// Flips one byte in every data block node `n` of a Garage cluster holds on disk,
    /// returning how many it changed: what a failing disk does behind the server's back.
    pub fn corrupt_node_blocks(&self, n: usize) -> usize {
        fn walk(dir: &Path, changed: &mut usize) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, changed);
                } else if fs::metadata(&path).unwrap().len() > 64 {
                    let mut bytes = fs::read(&path).unwrap();
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 0xff;
                    fs::write(&path, bytes).unwrap();
                    *changed += 1;
                }
            }
        }
        let mut changed = 0;
        walk(&self.data.join(format!("node{n}/data")), &mut changed);
        changed
    }

    /// The cluster's status as `garage status` prints it.
    pub fn garage_status(&self) -> String {
        garage(&self.data.join("node1/garage.toml"), &["status"]).stdout
    }

    /// (Re)starts the server on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        let log = fs::File::create(self.data.with_extension("log")).unwrap();
        let (name, mut cmd) = match self.kind {
            Kind::S3sFs => {
                let mut c = Command::new(tool("S3S_FS", "s3s-fs"));
                c.args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                    .args([
                        "--access-key",
                        &self.access_key,
                        "--secret-key",
                        &self.secret_key,
                    ])
                    .arg(&self.data);
                ("s3s-fs", c)
            }
            Kind::GarageCluster => {
                let mut c = Command::new(tool("GARAGE", "garage"));
                c.arg("-c")
                    .arg(self.data.join("node1/garage.toml"))
                    .arg("server")
                    .env("RUST_LOG", "warn");
                ("garage", c)
            }
            Kind::Garage => {
                let mut c = Command::new(tool("GARAGE", "garage"));
                c.arg("-c")
                    .arg(self.data.join("garage.toml"))
                    .args(["server", "--single-node", "--default-bucket"])
                    .env("GARAGE_DEFAULT_ACCESS_KEY", &self.access_key)
                    .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret_key)
                    .env("GARAGE_DEFAULT_BUCKET", BUCKET)
                    .env("RUST_LOG", "warn");
                ("garage", c)
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}; ci/test.sh installs it"));
        self.child = Some(child);
        self.wait_ready(name);
    }

    /// Ready when an unsigned request is refused (403), as a real server would, and (for
    /// Garage, which makes its bucket once it is up) when a signed listing works.
    fn wait_ready(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ =
                    c.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
                let mut head = [0u8; 12];
                if c.read_exact(&mut head).is_ok()
                    && head.starts_with(b"HTTP/1.1 403")
                    && (self.kind == Kind::S3sFs || self.bucket_ready())
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{name} did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn bucket_ready(&self) -> bool {
        let mut c = Command::new("aws");
        self.apply(&mut c)
            .args([
                "--endpoint-url",
                &self.endpoint(),
                "s3",
                "ls",
                &format!("s3://{BUCKET}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops the server at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The location of `prefix` in the test bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// Points `cmd` at this server with the right credentials, and nothing from the host.
    pub fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        let config = match self.kind {
            Kind::S3sFs => PathBuf::from("/nonexistent"),
            Kind::Garage | Kind::GarageCluster => self.data.join("aws-config"),
        };
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_REGION", self.region)
            .env("AWS_DEFAULT_REGION", self.region)
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_CONFIG_FILE", config)
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("BOOTFORGE_SIGN_KEY")
            .env_remove("AWS_MAX_ATTEMPTS")
    }

    /// Runs bootforge in `env` against this server.
    pub fn run(&self, env: &Env, args: &[&str]) -> Run {
        self.apply(&mut env.cmd())
            .args(args)
            .output()
            .unwrap()
            .into()
    }

    /// Runs bootforge in `env` against this server with some variables changed.
    pub fn run_with(&self, env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Run {
        let mut c = env.cmd();
        self.apply(&mut c);
        c.envs(vars.iter().copied())
            .args(args)
            .output()
            .unwrap()
            .into()
    }

    /// `fetch WHAT --channel CHANNEL -o OUT` from the prefix `lab` of the test bucket.
    pub fn fetch(&self, env: &Env, what: &str, channel: &str, out: &str) -> Run {
        let from = self.url("lab");
        let args = [
            "--json",
            "fetch",
            what,
            "--from",
            &from,
            "--channel",
            channel,
            "-o",
            out,
        ];
        self.run(env, &args)
    }

    /// Runs the `aws` CLI against this server.
    pub fn aws(&self, dir: &Path, args: &[&str]) -> Run {
        let mut c = Command::new("aws");
        self.apply(&mut c)
            .current_dir(dir)
            .args(["--endpoint-url", &self.endpoint()])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running aws: {e}; .ci/run installs awscli"))
            .into()
    }

    /// The server's file for a key in the test bucket (s3s-fs only).
    pub fn object_path(&self, key: &str) -> PathBuf {
        assert_eq!(self.kind, Kind::S3sFs, "only s3s-fs keeps objects as files");
        self.data.join(BUCKET).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
        for n in 0..self.peers.len() {
            self.kill_node(n + 2);
        }
    }
}

/// Builds an unpack-only recipe whose outputs are `files` (no container runs), so tests
/// have artifacts of chosen sizes to publish. Returns the build's JSON report.
pub fn build_files(env: &Env, recipe: &str, files: &[(&str, &[u8])]) -> serde_json::Value {
    let stage = env.path().join(format!("stage-{recipe}"));
    fs::create_dir_all(&stage).unwrap();
    for (name, bytes) in files {
        fs::write(stage.join(name), bytes).unwrap();
    }
    let tarball = env.path().join(format!("{recipe}.tar"));
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    let out = Command::new("tar")
        .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-cf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&stage)
        .args(&names)
        .output()
        .unwrap();
    assert!(out.status.success());
    let sha = env.import(&tarball);
    env.write_recipe(
        recipe,
        &format!(
            "source:\n  url: https://files.example.invalid/{recipe}.tar\n  sha256: {sha}\n\
             epoch: 1700000000\nsteps: []\noutputs: [{}]\n",
            names.join(", ")
        ),
    );
    let recipes = env.recipes_dir();
    env.cmd()
        .env("BOOTFORGE_RECIPES", &recipes)
        .args(["--json", "build", recipe])
        .output()
        .map(Run::from)
        .unwrap()
        .ok()
        .json()
}
