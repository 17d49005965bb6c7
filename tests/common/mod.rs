//! Test harness: runs the real `bootforge` binary against a private store in a temp
//! directory, with the test toolchain image built once and shared by hard links. The rule
//! worth copying: a test checks exit code, output and files of the real binary, with real
//! tools as the readers, never the library's own view of what it wrote.

pub mod boot;
pub mod http;
pub mod media;
pub mod s3;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

pub const TOOLCHAIN_SPEC: &str = "tests/fixtures/recipes/toolchains/test.yaml";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

fn tmp_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// A toolchain built once into a store of its own, shared by every test (and test binary)
/// through hard links.
struct SharedToolchain {
    /// Its name (the spec's file stem) and spec, relative to the repository.
    name: &'static str,
    spec: &'static str,
    store: OnceLock<PathBuf>,
}

/// The toolchain the test recipes build in.
static TEST_TOOLCHAIN: SharedToolchain = SharedToolchain {
    name: "test",
    spec: TOOLCHAIN_SPEC,
    store: OnceLock::new(),
};

/// The repository's Secure Boot toolchain (sbsign, efitools, virt-firmware), for the tests
/// that sign.
static SECURE_BOOT_TOOLCHAIN: SharedToolchain = SharedToolchain {
    name: "secure-boot",
    spec: SECURE_BOOT_SPEC,
    store: OnceLock::new(),
};

pub const SECURE_BOOT_SPEC: &str = "recipes/toolchains/secure-boot.yaml";

impl SharedToolchain {
    fn store(&self) -> &Path {
        self.store.get_or_init(|| {
            let store = tmp_root().join(format!("toolchain-store-{}", self.name));
            fs::create_dir_all(&store).unwrap();
            // Test binaries run in parallel processes: one builds, the others wait.
            let lock = fs::File::create(tmp_root().join(format!("{}.lock", self.name))).unwrap();
            lock.lock().unwrap();
            if !self.ready(&store) {
                eprintln!("building the {} toolchain (once)...", self.name);
                let out = Command::new(env!("CARGO_BIN_EXE_bootforge"))
                    .current_dir(root())
                    .arg("--store")
                    .arg(&store)
                    .args(["toolchain", "build", self.spec])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "building the {} toolchain failed:\n{}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            store
        })
    }

    fn record(&self, store: &Path) -> Option<Value> {
        let text = fs::read(store.join(record_path(self.name))).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn ready(&self, store: &Path) -> bool {
        let Some(rec) = self.record(store) else {
            return false;
        };
        let spec = fs::read(root().join(self.spec)).unwrap();
        let rootfs = rec["rootfs"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        // One made before toolchains had a squashfs is made again: the tests run steps on it.
        rec["spec_sha256"] == sha256_hex(&spec).as_str()
            && store.join("blobs/sha256").join(rootfs).is_file()
            && rec["squashfs"].is_string()
    }

    /// Links the toolchain's blobs and record into `to` (a test's store).
    fn link_into(&self, to: &Path) {
        let shared = self.store();
        let rec = self.record(shared).expect("toolchain record");
        let blobs = to.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        fs::create_dir_all(to.join("toolchains")).unwrap();
        for blob in ["rootfs", "squashfs"] {
            let hex = rec[blob].as_str().unwrap().trim_start_matches("sha256:");
            let link = blobs.join(hex);
            if !link.exists() {
                fs::hard_link(shared.join("blobs/sha256").join(hex), link).unwrap();
            }
        }
        fs::copy(
            shared.join(record_path(self.name)),
            to.join(record_path(self.name)),
        )
        .unwrap();
    }
}

/// Where a store keeps the test toolchain's record: per architecture, as Debian names it.
pub fn toolchain_record_path() -> String {
    record_path("test")
}

fn record_path(name: &str) -> String {
    static ARCH: OnceLock<String> = OnceLock::new();
    let arch = ARCH.get_or_init(|| {
        let out = Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    });
    format!("toolchains/{name}.{arch}.json")
}

/// A Debian binary package downloaded by `ci/test.sh` (`apt-get download NAME`) into
/// `$BOOTFORGE_TEST_DEBS` (default `target/debs`).
pub fn deb(name: &str) -> PathBuf {
    let dir = std::env::var_os("BOOTFORGE_TEST_DEBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debs"));
    let prefix = format!("{name}_");
    let found = fs::read_dir(&dir).ok().and_then(|entries| {
        entries.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".deb")
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name}_*.deb not found in {}: run ci/test.sh, or `apt-get download {name}` there",
            dir.display()
        )
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The sha256 of everything `r` yields, streamed.
pub fn sha256_reader(mut r: impl std::io::Read) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            return hex::encode(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "expected success:\n{self}");
        self
    }

    #[track_caller]
    pub fn fails(self) -> Run {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "expected a non-zero exit:\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    /// Asserts stderr contains each needle.
    #[track_caller]
    pub fn says(self, needles: &[&str]) -> Run {
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}:\n{self}");
        }
        self
    }

    /// Asserts the last line of stderr is exactly `error: {message}`: the words a user sees
    /// when it fails.
    #[track_caller]
    pub fn error_is(self, message: &str) -> Run {
        let last = self.stderr.lines().last().unwrap_or_default();
        assert_eq!(last, format!("error: {message}"), "\n{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A private working directory and store for one test.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A test directory with no store: for commands that never open one (fetch, ls,
    /// keygen, flash), and need not wait for the test toolchain.
    pub fn bare() -> Env {
        Env {
            dir: tempfile::tempdir_in(tmp_root()).unwrap(),
        }
    }

    /// A fresh store, seeded with the test toolchain (hard links, so it costs nothing).
    pub fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir_in(tmp_root()).unwrap(),
        };
        TEST_TOOLCHAIN.link_into(&env.store());
        env
    }

    /// Like [`Env::new`], with the Secure Boot toolchain too, and its spec in the test's
    /// recipes directory (which `cmd` then uses: signing finds its toolchain there).
    pub fn secure_boot() -> Env {
        let env = Env::new();
        SECURE_BOOT_TOOLCHAIN.link_into(&env.store());
        fs::copy(
            root().join(SECURE_BOOT_SPEC),
            env.recipes_dir().join("toolchains/secure-boot.yaml"),
        )
        .unwrap();
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The binary, run in the test's directory against its store and the fixture recipes.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bootforge"));
        let own = self.path().join("recipes/toolchains/secure-boot.yaml");
        let recipes = if own.exists() {
            self.recipes_dir()
        } else {
            fixtures().join("recipes")
        };
        c.current_dir(self.path())
            .env("BOOTFORGE_STORE", self.store())
            .env("BOOTFORGE_RECIPES", recipes)
            .env_remove("BOOTFORGE_SB_KEY")
            .env_remove("BOOTFORGE_EXECUTOR")
            .env_remove("BOOTFORGE_CONFIG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.cmd().args(args).output().unwrap().into()
    }

    /// A recipes directory of this test's own, with the test toolchain spec beside it.
    pub fn recipes_dir(&self) -> PathBuf {
        let dir = self.path().join("recipes");
        if !dir.exists() {
            fs::create_dir_all(dir.join("toolchains")).unwrap();
            fs::copy(
                root().join(TOOLCHAIN_SPEC),
                dir.join("toolchains/test.yaml"),
            )
            .unwrap();
        }
        dir
    }

    /// Writes a recipe into this test's recipes directory and returns its path.
    pub fn write_recipe(&self, name: &str, text: &str) -> PathBuf {
        let path = self.recipes_dir().join(format!("{name}.yaml"));
        fs::write(&path, text).unwrap();
        path
    }

    /// A project directory `name` holding `makefile`, and a recipe of the same name that
    /// builds it from a `path` source; `rest` is the recipe after `source`, `epoch` and
    /// `toolchain`. Returns the recipe's path as a string for the command line.
    pub fn make_project(&self, name: &str, makefile: &str, rest: &str) -> String {
        let src = self.path().join(name);
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("Makefile"), makefile).unwrap();
        let text = format!("source:\n  path: ../{name}\nepoch: 1\ntoolchain: test\n{rest}");
        self.write_recipe(name, &text).to_str().unwrap().to_owned()
    }

    /// `cache import`s a file and returns its `sha256:` digest.
    pub fn import(&self, file: &Path) -> String {
        let imported = self
            .run(&["--json", "cache", "import", file.to_str().unwrap()])
            .ok()
            .json();
        imported[0]["sha256"].as_str().unwrap().to_owned()
    }

    /// A recipe making a GRUB EFI network image (`images/grubx64.efi`) from Debian's GRUB
    /// modules, its source the downloaded .deb pinned by sha256, with a placeholder config.
    pub fn grubnet_recipe(&self) -> String {
        let sha = self.import(&deb("grub-efi-amd64-bin"));
        let text = format!(
            "source:
  url: https://debian.example.invalid/pool/main/g/grub2/grub-efi-amd64-bin.deb
  sha256: {sha}
epoch: 1700000000
toolchain: test
placeholder:
  kind: grub
  capacity: 4096
  template: {}/embed/grub.cfg.j2
steps:
  - run: [mkdir, images]
  - run: [grub-mkimage, -d, usr/lib/grub/x86_64-efi, -O, x86_64-efi, -p, /EFI/BOOT,
          -c, \"{{embed}}\", -o, images/grubx64.efi,
          efinet, http, tftp, net, normal, configfile, echo, test, halt, reboot, sleep]
outputs: [images/grubx64.efi]
",
            root().display()
        );
        self.write_recipe("grubnet", &text)
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// A recipe whose outputs are files of a Debian package (downloaded by ci/test.sh),
    /// pinned by the sha256 of the .deb.
    pub fn deb_recipe(&self, name: &str, package: &str, outputs: &[&str]) -> String {
        let sha = self.import(&deb(package));
        let text = format!(
            "source:\n  url: https://debian.example.invalid/{package}.deb\n  sha256: {sha}\n\
             epoch: 1700000000\nsteps: []\noutputs: [{}]\n",
            outputs.join(", ")
        );
        self.write_recipe(name, &text).to_str().unwrap().to_owned()
    }

    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.trim_start_matches("sha256:");
        fs::read(self.store().join("blobs/sha256").join(hex)).unwrap()
    }

    pub fn blob_count(&self) -> usize {
        fs::read_dir(self.store().join("blobs/sha256"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn action_count(&self) -> usize {
        fs::read_dir(self.store().join("actions"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// `cache verify` must find the store intact.
    #[track_caller]
    pub fn assert_store_intact(&self) {
        let v = self.run(&["cache", "verify"]);
        assert_eq!(v.code, Some(0), "store damaged:\n{v}");
    }
}

/// The single build report of a `--json` build.
pub fn only_build(run: &Run) -> Value {
    let v = run.json();
    let builds = v["builds"].as_array().expect("builds array");
    assert_eq!(builds.len(), 1, "{run}");
    builds[0].clone()
}

/// The sha256 of the named output in a build report.
pub fn output(build: &Value, name: &str) -> String {
    build["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {build}"))["sha256"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The tests' one source of randomness: a small seeded generator (xorshift64*), so a
/// failing run can be replayed, and test data no run of zeros or pattern can pass for.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `[0, 1)`.
    pub fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `len` deterministic pseudo-random bytes: big test files that do not compress away.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}
