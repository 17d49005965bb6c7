//! The pxe-bundle's DHCP snippets as shipped, through real DHCP servers. dnsmasq gives
//! leases and TFTP from an unpacked bundle, with the bundle's own `dhcp/dnsmasq.conf`, in a
//! network namespace the test makes (a bridge, a tap device per QEMU guest); BIOS, x86_64
//! UEFI and arm64 UEFI guests boot from it to the chain URL, served from inside the
//! namespace. ISC dhcpd's snippet is checked with `dhcpd -t` in the shape a dhcpd.conf
//! includes it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::boot::{AAVMF_CODE, QemuRun, qemu_watch_in};
use crate::common::http::HttpServer;
use crate::common::media::{package, unpack_bundle, write_profile};
use crate::common::{Env, Run};

/// The test network: the bridge's address, and the leases dnsmasq hands out.
const SERVER: &str = "10.77.0.1";
const RANGE: &str = "10.77.0.50,10.77.0.99,1h";

/// The query iPXE's `${net0/mac:hexhyp}`, `${platform}` and `${buildarch}` expand to for a
/// guest with `mac` (hyphens), on `platform` and `arch`.
fn query(mac: &str, platform: &str, arch: &str) -> String {
    format!(
        "mac={}&platform={platform}&arch={arch}",
        mac.replace(':', "-")
    )
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}; these tests need root (network namespaces, tap devices)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with a bridge at [`SERVER`]; removed (its devices with it) on drop.
struct TestNet {
    name: String,
    taps: usize,
    dnsmasq: Option<Child>,
}

impl TestNet {
    fn new() -> TestNet {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "bftest{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let net = TestNet {
            name,
            taps: 0,
            dnsmasq: None,
        };
        net.ip(&["link", "set", "lo", "up"]);
        net.ip(&["link", "add", "br0", "type", "bridge"]);
        net.ip(&["addr", "add", &format!("{SERVER}/24"), "dev", "br0"]);
        net.ip(&["link", "set", "br0", "up"]);
        net
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend(args);
        ip(&all);
    }

    /// A new tap device on the bridge, for one guest.
    fn tap(&mut self) -> String {
        let tap = format!("tap{}", self.taps);
        self.taps += 1;
        self.ip(&["tuntap", "add", &tap, "mode", "tap"]);
        self.ip(&["link", "set", &tap, "master", "br0"]);
        self.ip(&["link", "set", &tap, "up"]);
        tap
    }

    /// Starts dnsmasq on the bridge with the bundle's own `dhcp/dnsmasq.conf`. Its
    /// `tftp-root` (/srv/tftp, as shipped) is the bundle, bind-mounted in a mount namespace
    /// of dnsmasq's own, so nothing is written outside the test's directory.
    fn serve(&mut self, bundle: &Path, log: &Path) {
        let script = r#"set -e
mount -t tmpfs bootforge-test /srv
mkdir /srv/tftp
mount --bind "$1" /srv/tftp
exec ip netns exec "$2" dnsmasq --no-daemon --conf-file=/srv/tftp/dhcp/dnsmasq.conf \
  --port=0 --interface=br0 --bind-interfaces --dhcp-range="$3" --dhcp-leasefile="$4" \
  --pid-file= --user=root --log-dhcp"#;
        let leases = log.with_extension("leases");
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(bundle)
            .arg(&self.name)
            .arg(RANGE)
            .arg(&leases)
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .expect("running unshare (util-linux) and dnsmasq");
        self.dnsmasq = Some(child);
        // Ready once it says so (it logs its TFTP root, then DHCP, on start).
        for _ in 0..100 {
            if fs::read_to_string(log)
                .unwrap_or_default()
                .contains("DHCP, IP range")
            {
                return;
            }
            if let Some(status) = self.dnsmasq.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "dnsmasq exited with {status}:\n{}",
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "dnsmasq did not start:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// Boots a guest on a new tap device until `done`.
    fn boot(
        &mut self,
        arch: &str,
        machine: &[&str],
        mac: &str,
        dir: &Path,
        done: impl Fn() -> bool,
    ) -> QemuRun {
        let tap = self.tap();
        let netdev = format!("tap,id=n0,ifname={tap},script=no,downscript=no");
        let mut args = machine.to_vec();
        // The NIC's own option ROM only where it is the point (BIOS): UEFI guests PXE-boot
        // through the firmware's own network stack.
        let device = if arch == "x86_64" && machine.contains(&"-boot") {
            format!("e1000,netdev=n0,mac={mac}")
        } else {
            format!("virtio-net-pci,netdev=n0,mac={mac},romfile=")
        };
        args.extend(["-netdev", &netdev, "-device", &device]);
        qemu_watch_in(
            Some(&self.name),
            arch,
            &args,
            dir,
            Duration::from_secs(240),
            |_| done(),
        )
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if let Some(mut d) = self.dnsmasq.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A profile whose every loader is iPXE, from trixie's ipxe package (it reads the chain
/// script from `autoexec.ipxe` beside itself, as our unpatched iPXE does).
fn ipxe_profile(env: &Env) -> String {
    env.deb_recipe(
        "deb-ipxe",
        "ipxe-trixie",
        &[
            "usr/lib/ipxe/ipxe-amd64.efi",
            "usr/lib/ipxe/snponly.efi",
            "usr/lib/ipxe/ipxe-arm64.efi",
            "usr/lib/ipxe/undionly.kpxe",
        ],
    );
    write_profile(
        env,
        "netboot",
        "loaders:\n  bios: ipxe\n  uefi-x64: ipxe\n  uefi-arm64: ipxe\n\
         files:\n  ipxe.efi: ../deb-ipxe.yaml:usr/lib/ipxe/ipxe-amd64.efi\n\
         \x20 snponly.efi: ../deb-ipxe.yaml:usr/lib/ipxe/snponly.efi\n\
         \x20 snp-arm64.efi: ../deb-ipxe.yaml:usr/lib/ipxe/ipxe-arm64.efi\n\
         \x20 undionly.kpxe: ../deb-ipxe.yaml:usr/lib/ipxe/undionly.kpxe\n",
    )
}

/// An x86_64 UEFI guest: OVMF.
fn ovmf() -> Vec<String> {
    ["-m", "256", "-bios", "/usr/share/ovmf/OVMF.fd"]
        .map(str::to_owned)
        .to_vec()
}

/// An arm64 UEFI guest: AAVMF, with a copy of its variable store in `dir`.
fn aavmf(dir: &Path) -> Vec<String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let vars = dir.join(format!(
        "aavmf-vars-{}.fd",
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::copy("/usr/share/AAVMF/AAVMF_VARS.fd", &vars).unwrap();
    [
        "-machine".to_owned(),
        "virt".to_owned(),
        "-cpu".to_owned(),
        "cortex-a57".to_owned(),
        "-m".to_owned(),
        "512".to_owned(),
        "-drive".to_owned(),
        format!("if=pflash,format=raw,unit=0,readonly=on,file={AAVMF_CODE}"),
        "-drive".to_owned(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
    ]
    .to_vec()
}

/// `package --target pxe-bundle -o out` with the chain URL and HTTP boot URL, unpacked into
/// `bundle/`.
fn bundle(env: &Env, profile: &str, chain_url: &str, http_boot_url: &str) -> PathBuf {
    env.run(&[
        "package",
        "--target",
        "pxe-bundle",
        "--profile",
        profile,
        "--set",
        &format!("chain_url={chain_url}"),
        "--set",
        &format!("http_boot_url={http_boot_url}"),
        "-o",
        "out",
    ])
    .ok();
    unpack_bundle(env, "bundle")
}

#[test]
fn bios_and_uefi_guests_boot_through_real_dnsmasq_to_the_chain_url() {
    let env = Env::new();
    let profile = ipxe_profile(&env);
    let mut net = TestNet::new();
    let served = HttpServer::start_in(&net.name, SERVER, |_| {
        "#!ipxe\necho bootforge-test: chain script served\nsleep 600\n".to_owned()
    });
    let server = &served;
    let chain = format!("http://{SERVER}:{}/boot.ipxe", server.port);
    package(&env, "pxe-bundle", &profile, &chain);
    let bundle = unpack_bundle(&env, "bundle");
    let conf = fs::read_to_string(bundle.join("dhcp/dnsmasq.conf")).unwrap();
    let log = env.path().join("dnsmasq.log");
    net.serve(&bundle, &log);
    let asked = |q: &str| {
        let want = format!("/boot.ipxe?{q}");
        move || server.requests().contains(&want)
    };
    let failed = |what: &str, run: &QemuRun| -> String {
        format!(
            "{what}: requests {:?}\n--- dnsmasq.conf ---\n{conf}\n--- dnsmasq ---\n{}\n--- serial ---\n{}",
            server.requests(),
            fs::read_to_string(&log).unwrap_or_default(),
            run.serial
        )
    };

    // BIOS: SeaBIOS boots the NIC's option ROM, an iPXE that is not ours. It matches the
    // `iPXE` user class and is handed the chain URL (not our iPXE again), with the query
    // in iPXE's setting syntax, which it expands.
    let mac = "52:54:00:77:00:01";
    let want = query(mac, "pcbios", "i386");
    let run = net.boot(
        "x86_64",
        &["-m", "256", "-boot", "n"],
        mac,
        env.path(),
        asked(&want),
    );
    assert!(asked(&want)(), "{}", failed("BIOS", &run));
    let dnsmasq = fs::read_to_string(&log).unwrap();
    assert!(
        !dnsmasq.contains("sent /srv/tftp/undionly.kpxe"),
        "an iPXE client was handed iPXE again:\n{dnsmasq}"
    );

    // x86_64 UEFI: OVMF's own PXE (client architecture 7) loads ipxe.efi over TFTP, which
    // asks for the chain URL with the query; arm64 UEFI: AAVMF (11) loads arm64/snp.efi.
    for (arch, machine, mac, loader) in [
        ("x86_64", ovmf(), "52:54:00:77:00:02", "ipxe.efi"),
        (
            "aarch64",
            aavmf(env.path()),
            "52:54:00:77:00:03",
            "arm64/snp.efi",
        ),
    ] {
        let buildarch = if arch == "aarch64" { "arm64" } else { arch };
        let want = query(mac, "efi", buildarch);
        let args: Vec<&str> = machine.iter().map(String::as_str).collect();
        let run = net.boot(arch, &args, mac, env.path(), asked(&want));
        assert!(asked(&want)(), "{}", failed(arch, &run));
        assert!(
            fs::read_to_string(&log)
                .unwrap()
                .contains(&format!("sent /srv/tftp/{loader}")),
            "{}",
            failed(&format!("{arch} (TFTP)"), &run)
        );
    }
}

#[test]
fn isc_dhcpd_accepts_the_shipped_snippet_included_in_a_dhcpd_conf() {
    let env = Env::new();
    let profile = ipxe_profile(&env);
    let bundle = bundle(
        &env,
        &profile,
        "http://boot.example/boot.ipxe?site=lab",
        "http://boot.example/bundle",
    );
    let snippet = bundle.join("dhcp/dhcpd.conf");
    let text = fs::read_to_string(&snippet).unwrap();
    assert!(
        text.contains(&format!(
            "filename \"http://boot.example/boot.ipxe?site=lab&{}\";",
            "mac=${net0/mac:hexhyp}&platform=${platform}&arch=${buildarch}"
        )),
        "{text}"
    );
    assert!(
        text.contains("filename \"http://boot.example/bundle/ipxe.efi\";"),
        "{text}"
    );
    let conf = env.path().join("dhcpd.conf");
    fs::write(
        &conf,
        format!(
            "authoritative;\ninclude \"{}\";\nsubnet 10.77.0.0 netmask 255.255.255.0 {{\n  \
             range 10.77.0.50 10.77.0.99;\n  next-server {SERVER};\n}}\n",
            snippet.display()
        ),
    )
    .unwrap();
    let checked: Run = Command::new("dhcpd")
        .args(["-t", "-cf"])
        .arg(&conf)
        .output()
        .expect("running dhcpd (isc-dhcp-server)")
        .into();
    let checked = checked.ok();
    assert!(!checked.stderr.contains("error"), "dhcpd -t: {checked}");
}

#[test]
fn uefi_http_boot_takes_the_loader_over_http_without_tftp() {
    let env = Env::new();
    let profile = ipxe_profile(&env);
    let mut net = TestNet::new();
    let bundle = env.path().join("bundle");
    fs::create_dir(&bundle).unwrap();
    // One server inside the namespace serves the unpacked bundle (the loaders, and
    // autoexec.ipxe beside them) and records the chain URL's requests.
    let web = HttpServer::serve_dir_in(&net.name, SERVER, bundle.clone());
    let base = format!("http://{SERVER}:{}", web.port);
    let bundle = self::bundle(&env, &profile, &format!("{base}/boot.ipxe"), &base);
    let conf = fs::read_to_string(bundle.join("dhcp/dnsmasq.conf")).unwrap();
    let log = env.path().join("dnsmasq.log");
    net.serve(&bundle, &log);

    // OVMF and AAVMF with their PXE boot options off (QEMU's fw_cfg knobs), so they boot
    // over HTTP: client architectures 16 and 19, answered with the loader's URL and
    // HTTPClient; then the iPXE they loaded chains to the URL with its query.
    const NO_PXE: [&str; 4] = [
        "-fw_cfg",
        "name=opt/org.tianocore/IPv4PXESupport,string=n",
        "-fw_cfg",
        "name=opt/org.tianocore/IPv6PXESupport,string=n",
    ];
    for (arch, machine, mac, loader, code) in [
        ("x86_64", ovmf(), "52:54:00:77:00:04", "ipxe.efi", "00016"),
        (
            "aarch64",
            aavmf(env.path()),
            "52:54:00:77:00:05",
            "arm64/snp.efi",
            "00019",
        ),
    ] {
        let buildarch = if arch == "aarch64" { "arm64" } else { arch };
        let want = format!("/boot.ipxe?{}", query(mac, "efi", buildarch));
        let asked = || web.requests().contains(&want);
        let mut args = machine;
        args.extend(NO_PXE.map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = net.boot(arch, &args, mac, env.path(), asked);
        let dnsmasq = fs::read_to_string(&log).unwrap_or_default();
        let context = format!(
            "{arch}: requests {:?}\n--- dnsmasq.conf ---\n{conf}\n--- dnsmasq ---\n{dnsmasq}\n--- serial ---\n{}",
            web.requests(),
            run.serial
        );
        assert!(
            web.requests().contains(&format!("/{loader}")),
            "no HTTP boot: {context}"
        );
        assert!(
            dnsmasq.contains(&format!("vendor class: HTTPClient:Arch:{code}")),
            "{context}"
        );
        assert!(asked(), "iPXE did not chain: {context}");
        assert!(
            !dnsmasq.contains("sent /srv/tftp/"),
            "TFTP was used: {context}"
        );
    }
}
