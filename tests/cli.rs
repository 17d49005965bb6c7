//! The command line as a newcomer meets it: `--help` with examples on every command,
//! completions read by real bash, zsh and fish, manual pages read by real man and groff,
//! and `doctor` on this machine and on one missing what builds need.

use std::fs;
use std::process::Command;

use crate::common::{Env, Run};

/// Every command path (`build`, `cache gc`, …), from the binary's own help.
fn commands(env: &Env) -> Vec<Vec<String>> {
    fn walk(env: &Env, prefix: Vec<String>, into: &mut Vec<Vec<String>>) {
        let mut args: Vec<&str> = prefix.iter().map(String::as_str).collect();
        args.push("--help");
        let help = env.run(&args).ok().stdout;
        let Some(list) = help.split("Commands:\n").nth(1) else {
            return;
        };
        for line in list.lines().take_while(|l| l.starts_with("  ")) {
            let name = line.split_whitespace().next().unwrap().to_owned();
            if name == "help" {
                continue;
            }
            let mut path = prefix.clone();
            path.push(name);
            into.push(path.clone());
            walk(env, path, into);
        }
    }
    let mut all = Vec::new();
    walk(env, Vec::new(), &mut all);
    all
}

#[test]
fn every_commands_help_ends_with_examples_of_itself() {
    let env = Env::bare();
    let commands = commands(&env);
    assert!(commands.len() >= 20, "{commands:?}");
    for path in std::iter::once(Vec::new()).chain(commands) {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = env.run(&args).ok().stdout;
        let examples = help
            .split("\nExamples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("`bootforge {}` has no examples:\n{help}", path.join(" ")));
        let invocation = format!("bootforge {}", path.join(" "));
        assert!(
            examples
                .lines()
                .any(|l| l.trim_start().starts_with(invocation.trim_end())),
            "`{invocation} --help` examples show other commands:\n{examples}"
        );
    }
}

fn completions(shell: &str) -> String {
    let env = Env::bare();
    let run = env.run(&["completions", shell]).ok();
    assert!(run.stdout.len() > 1000, "{run}");
    run.stdout
}

#[test]
fn bash_completes_commands_and_their_flags() {
    let env = Env::bare();
    let script = env.path().join("bootforge.bash");
    fs::write(&script, completions("bash")).unwrap();
    // Bash's own completion protocol: the function fills COMPREPLY for the words so far.
    let complete = |words: &str| -> String {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                 COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
                 _bootforge bootforge \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let commands = complete("bootforge ''");
    for c in [
        "build",
        "package",
        "publish",
        "doctor",
        "completions",
        "man",
    ] {
        assert!(
            commands.lines().any(|l| l == c),
            "{c} not offered:\n{commands}"
        );
    }
    let flags = complete("bootforge package --");
    assert!(flags.lines().any(|l| l == "--target"), "{flags}");
    let targets = complete("bootforge package --target ''");
    for t in ["iso", "usb-img", "rpi-img", "pxe-bundle"] {
        assert!(
            targets.lines().any(|l| l == t),
            "{t} not offered:\n{targets}"
        );
    }
}

#[test]
fn zsh_and_fish_read_their_completions() {
    let env = Env::bare();
    let zsh = env.path().join("_bootforge");
    fs::write(&zsh, completions("zsh")).unwrap();
    let checked = Command::new("zsh").arg("-n").arg(&zsh).output().unwrap();
    assert!(
        checked.status.success(),
        "zsh -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        fs::read_to_string(&zsh)
            .unwrap()
            .starts_with("#compdef bootforge")
    );

    let fish = env.path().join("bootforge.fish");
    fs::write(&fish, completions("fish")).unwrap();
    // fish's own completer, asked what follows `bootforge package --target `.
    let out = Command::new("fish")
        .arg("--no-config")
        .arg("-c")
        .arg(format!(
            "source {}; complete -C 'bootforge package --target '; complete -C 'bootforge bui'",
            fish.display()
        ))
        .output()
        .unwrap();
    let offered = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in ["rpi-img", "build"] {
        assert!(
            offered.lines().any(|l| l.split('\t').next() == Some(want)),
            "fish does not offer {want}:\n{offered}"
        );
    }
}

#[test]
fn man_pages_render_cleanly_with_their_examples() {
    let env = Env::bare();
    let page = env.run(&["man"]).ok().stdout;
    let dir = env.path().join("man1");
    let run = env.run(&["man", "-o", dir.to_str().unwrap()]).ok();
    let pages: Vec<String> = run.stdout.lines().map(str::to_owned).collect();
    assert!(pages.len() >= 20, "{run}");
    assert_eq!(
        fs::read_to_string(&pages[0]).unwrap(),
        page,
        "bootforge.1 is `bootforge man`"
    );
    for name in [
        "bootforge.1",
        "bootforge-build.1",
        "bootforge-cache-gc.1",
        "bootforge-doctor.1",
    ] {
        let path = dir.join(name);
        assert!(
            pages.iter().any(|p| p.ends_with(name)),
            "{name} not listed:\n{run}"
        );
        // groff's warnings (-ww) on stderr are malformed roff.
        let lint = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            lint.status.success() && lint.stderr.is_empty(),
            "groff on {name}: {}",
            String::from_utf8_lossy(&lint.stderr)
        );
        let shown = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "120")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(
            shown.status.success(),
            "man -l {name}: {}",
            String::from_utf8_lossy(&shown.stderr)
        );
        let examples = text
            .split("EXAMPLES")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: no EXAMPLES:\n{text}"));
        assert!(examples.contains("bootforge"), "{name}:\n{text}");
    }
    // Command lines are kept as written, not reflowed into one paragraph.
    let build = fs::read_to_string(dir.join("bootforge-build.1")).unwrap();
    assert!(build.contains(".nf\nbootforge build ipxe "), "{build}");
}

fn doctor(env: &Env, path: Option<&str>, extra: &[&str]) -> (Run, serde_json::Value) {
    let mut cmd = env.cmd();
    cmd.arg("doctor").arg("--json").args(extra);
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let run: Run = cmd.output().unwrap().into();
    let json = run.json();
    (run, json)
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
}

#[test]
fn doctor_passes_here_and_names_the_fix_for_what_is_missing() {
    let env = Env::new();
    // This machine has everything the suite needs, so nothing fails, and a container runs
    // once the test toolchain's image is in the engine.
    env.run(&["build", "hello"]).ok();
    let (run, report) = doctor(&env, None, &[]);
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(report["ok"], true);
    for name in [
        "container engine",
        "debootstrap",
        "git",
        "squashfs-tools",
        "boot tests",
        "store",
        "remote",
    ] {
        assert_eq!(check(&report, name)["status"], "ok", "{report:#}");
    }
    let ran = check(&report, "container run");
    assert_eq!(ran["status"], "ok", "{report:#}");
    assert!(
        ran["detail"]
            .as_str()
            .unwrap()
            .contains("`true` ran in localhost/bootforge-test:"),
        "{ran}"
    );
    let human = env.run(&["doctor"]).ok();
    assert!(
        human.stdout.ends_with("bootforge can build here.\n"),
        "{human}"
    );

    // A machine with podman but without debootstrap or git, QEMU or dnsmasq.
    let bin = env.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    for tool in ["podman", "conmon", "runc", "unshare", "mount"] {
        let real = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists());
        if let Some(real) = real {
            std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
        }
    }
    let (run, report) = doctor(&env, Some(bin.to_str().unwrap()), &[]);
    assert_eq!(run.code, Some(1), "missing debootstrap must fail: {run}");
    assert_eq!(report["ok"], false);
    let deb = check(&report, "debootstrap");
    assert_eq!(deb["status"], "fail");
    assert_eq!(deb["fix"], "apt-get install debootstrap");
    assert_eq!(check(&report, "git")["fix"], "apt-get install git");
    let boot = check(&report, "boot tests");
    assert_eq!(
        boot["status"], "warn",
        "only the boot tests need QEMU: {boot}"
    );
    let mut human = env.cmd();
    human.arg("doctor").env("PATH", &bin);
    let human: Run = human.output().unwrap().into();
    assert_eq!(human.code, Some(1));
    assert!(human.stdout.contains("FAIL  debootstrap"), "{human}");
    assert!(
        human.stdout.contains("fix: apt-get install debootstrap"),
        "{human}"
    );
}

#[test]
fn doctor_reports_a_remote_it_cannot_read_with_the_credentials_fix() {
    let env = Env::bare();
    let server = crate::common::s3::S3Server::start(&env);
    let remote = server.url("shared");
    let bad = server.run_with(
        &env,
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret-key")],
        &["doctor", "--json", "--remote", &remote],
    );
    assert_eq!(bad.code, Some(1), "{bad}");
    let report = bad.json();
    let remote_check = check(&report, "remote");
    assert_eq!(remote_check["status"], "fail", "{report:#}");
    assert!(
        remote_check["detail"].as_str().unwrap().contains(&remote),
        "{remote_check}"
    );
    assert!(
        remote_check["fix"]
            .as_str()
            .unwrap()
            .contains("AWS_SECRET_ACCESS_KEY"),
        "{remote_check}"
    );
    // A store that does not exist is reported, not made.
    assert!(!env.store().exists());

    let good = server.run(&env, &["doctor", "--json", "--remote", &remote]);
    assert_eq!(check(&good.json(), "remote")["status"], "ok", "{good}");
}

/// Runs the binary in `env` under a pseudo-terminal (util-linux `script`), returning what
/// the terminal showed.
fn on_a_terminal(env: &Env, args: &[&str]) -> String {
    let plain = env.cmd();
    let mut c = Command::new("script");
    c.current_dir(env.path());
    for (k, v) in plain.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let line = std::iter::once(env!("CARGO_BIN_EXE_bootforge"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = c
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "under a terminal: {shown}");
    shown
}

#[test]
fn a_terminal_gets_spinners_and_bars_and_a_log_gets_plain_lines() {
    let env = Env::new();
    let recipe = env.make_project(
        "talky",
        "out:\n\t@echo compiling part one\n\t@sleep 1\n\t@echo linking the image\n\t@sleep 1.5\n\t@echo done > out\n",
        "steps:\n  - name: compile\n    run: [make]\noutputs: [out]\n",
    );
    let shown = on_a_terminal(&env, &["build", &recipe]);
    // The spinner redraws its line (erase, carriage return) with the step's last output.
    assert!(shown.contains("\x1b[2K"), "no live line drawn:\n{shown:?}");
    assert!(shown.contains("linking the image"), "{shown:?}");
    assert!(shown.contains("step 1/1 `compile` done in"), "{shown:?}");
    // In a log: the same steps as plain lines, no escape sequences.
    let plain = env.run(&["build", &recipe, "--check"]).ok();
    assert!(!plain.stderr.contains('\x1b'), "{plain}");
    assert!(
        plain.stderr.contains("step 1/1 `compile` done in"),
        "{plain}"
    );

    // A transfer: flashing an image to a file, written then read back.
    let image = env.path().join("disk.img");
    let bytes: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(&image, &bytes).unwrap();
    let target = env.path().join("target.img");
    fs::write(&target, b"").unwrap();
    let (img, dev) = (image.to_str().unwrap(), target.to_str().unwrap());
    let shown = on_a_terminal(&env, &["flash", img, "--device", dev, "--yes"]);
    assert!(shown.contains("ETA"), "no transfer bar:\n{shown:?}");
    assert!(
        shown.contains("48.00 MiB/48.00 MiB"),
        "the bar does not end full:\n{shown:?}"
    );
    let json = on_a_terminal(&env, &["--json", "flash", img, "--device", dev, "--yes"]);
    assert!(
        !json.contains('\x1b'),
        "--json draws no bars, even on a terminal:\n{json:?}"
    );
    let plain = env.run(&["flash", img, "--device", dev, "--yes"]).ok();
    assert!(!plain.stderr.contains('\x1b'), "{plain}");
    assert!(
        plain.stdout.contains(&format!("wrote {} bytes", 48 << 20)),
        "{plain}"
    );
}
