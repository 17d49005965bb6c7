//! Source archives from the internet are unpacked by a process running as root: nothing in
//! one may write outside the build tree, and a refused archive leaves nothing behind.

use std::fs;
use std::io::Write;

use crate::common::Env;

/// A tar entry written byte by byte (tar writers refuse to make hostile entries).
fn raw(name: &str, kind: u8, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn tar_gz(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&entries.concat()).unwrap();
    gz.write_all(&[0; 1024]).unwrap();
    gz.finish().unwrap()
}

#[test]
fn a_tarball_linking_out_of_the_tree_is_refused_and_leaves_nothing() {
    let env = Env::new();
    let outside = env.path().join("some-dir");
    fs::create_dir(&outside).unwrap();
    let tarball = env.path().join("pkg-1.0.tar.gz");
    fs::write(
        &tarball,
        tar_gz(&[
            raw("pkg/", b'5', "", b""),
            raw("pkg/Makefile", b'0', "", b"all:\n\ttrue\n"),
            raw("pkg/esc", b'2', outside.to_str().unwrap(), b""),
            raw("pkg/esc/pwned", b'0', "", b"owned\n"),
        ]),
    )
    .unwrap();
    let sha = env.import(&tarball);
    let url = "https://downloads.example.invalid/pkg-1.0.tar.gz";
    let recipe = env.write_recipe(
        "evil",
        &format!(
            "source:\n  url: {url}\n  sha256: {sha}\n  strip_components: 1\nepoch: 1\n\
             toolchain: test\nsteps:\n  - run: [make]\noutputs: [Makefile]\n"
        ),
    );
    env.run(&["build", recipe.to_str().unwrap()])
        .fails()
        .says(&[
            url,
            &sha,
            "entry `pkg/esc` is a symbolic link to the absolute path",
            "outside the build tree",
            "removed from the store",
        ]);
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "something was written outside the build tree"
    );
    assert!(
        !env.store().join("blobs/sha256").join(&sha[7..]).exists(),
        "the refused archive is still in the store"
    );
    assert_eq!(env.action_count(), 0);
    assert_eq!(
        fs::read_dir(env.store().join("tmp")).unwrap().count(),
        0,
        "a build tree of the refused source was left behind"
    );
    env.assert_store_intact();
}

#[test]
fn an_output_reached_through_a_link_the_build_made_is_not_read_from_the_host() {
    let env = Env::new();
    // The step (in its container) points `etc` at the container's /etc; read on the host
    // without care, `etc/hostname` would be the host's file.
    let recipe = env.make_project(
        "linker",
        "all:\n\tln -s /etc etc\n",
        "steps:\n  - run: [make]\noutputs: [etc/hostname]\n",
    );
    env.run(&["build", &recipe]).fails().says(&[
        "output `etc/hostname`",
        "a link the build made leads out of it",
    ]);
    assert_eq!(env.action_count(), 0);
    env.assert_store_intact();
}
