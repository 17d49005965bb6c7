//! Secrets: the bucket's secret key, a signing key's password and the key itself never
//! appear in anything bootforge prints, logs, or writes into the store or the bucket.

use std::fs;
use std::path::Path;

use crate::common::noise;
use crate::common::s3::{S3Server, SECRET_KEY, build_files};
use crate::common::{Env, Run};

const PASSWORD: &str = "canary-password-6b1f0e";

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_owned(), fs::read(e.path()).unwrap()))
        .collect()
}

#[test]
fn no_secret_reaches_the_output_the_store_or_the_bucket() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    build_files(&env, "files", &[("a.bin", &noise(4096, 1))]);
    let to = s3.url("lab");
    let mut runs: Vec<Run> = Vec::new();
    let with_password = [("BOOTFORGE_KEY_PASSWORD", PASSWORD)];
    runs.push(
        s3.run_with(&env, &with_password, &["keygen", "--out", "locked"])
            .ok(),
    );
    runs.push(env.run(&["keygen", "--out", "plain"]).ok());
    // The secret parts of both key files: what they hold besides the comment line.
    let key_lines: Vec<String> = ["locked.key", "plain.key"]
        .iter()
        .map(|k| fs::read_to_string(env.path().join(k)).unwrap())
        .map(|t| t.lines().nth(1).unwrap().to_owned())
        .collect();

    let publish = |key: &str, channel: &str| {
        vec![
            "--json",
            "publish",
            "--to",
            &to,
            "--channel",
            channel,
            "--sign",
            key,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    let args = publish("locked.key", "nightly");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    runs.push(s3.run_with(&env, &with_password, &args).ok());
    // The key given through the environment, as CI secrets are.
    let plain = env.path().join("plain.key");
    let mut c = env.cmd();
    s3.apply(&mut c).env("BOOTFORGE_SIGN_KEY", &plain).args([
        "publish",
        "--to",
        &to,
        "--channel",
        "stable",
    ]);
    runs.push(Run::from(c.output().unwrap()).ok());
    runs.push(s3.fetch(&env, "a.bin", "nightly", "got.bin").ok());
    runs.push(
        s3.run(
            &env,
            &[
                "fetch",
                "a.bin",
                "--from",
                &to,
                "--channel",
                "stable",
                "-o",
                "b.bin",
                "--verify-key",
                "plain.pub",
            ],
        )
        .ok(),
    );
    runs.push(s3.run(&env, &["ls", "--from", &to]).ok());
    runs.push(s3.run(&env, &["--json", "ls", "--from", &to]).ok());
    // Failures print the most context: a wrong password, a wrong secret key.
    let wrong = [("BOOTFORGE_KEY_PASSWORD", "not-it")];
    runs.push(s3.run_with(&env, &wrong, &args).fails());
    let bad_secret = format!("{SECRET_KEY}-wrong");
    let bad = [("AWS_SECRET_ACCESS_KEY", bad_secret.as_str())];
    runs.push(s3.run_with(&env, &bad, &["ls", "--from", &to]).fails());
    runs.push(s3.run_with(&env, &bad, &args).fails());

    let mut canaries: Vec<&str> = vec![SECRET_KEY, PASSWORD];
    canaries.extend(key_lines.iter().map(String::as_str));
    for run in &runs {
        for c in &canaries {
            assert!(
                !run.stdout.contains(c) && !run.stderr.contains(c),
                "a secret was printed:\n{run}"
            );
        }
    }
    let written: Vec<_> = files(&env.store())
        .into_iter()
        .chain(files(&s3.data.join(crate::common::s3::BUCKET)))
        .collect();
    assert!(written.len() > 10, "nothing to search: {}", written.len());
    for (path, bytes) in &written {
        for c in &canaries {
            assert!(
                memchr::memmem::find(bytes, c.as_bytes()).is_none(),
                "{} holds a secret",
                path.display()
            );
        }
    }
}
