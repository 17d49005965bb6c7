//! The fuzz targets' seeds and every input a fuzzer ever broke something with, replayed
//! through the same entry points on every test run (the fuzzers themselves run from
//! `ci/fuzz.sh`).

use std::fs;

use crate::common::root;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 8] = [
    ("recipe", bootforge::fuzzing::recipe),
    ("profile", bootforge::fuzzing::profile),
    ("config", bootforge::fuzzing::config),
    ("documents", bootforge::fuzzing::documents),
    ("unpack", bootforge::fuzzing::unpack),
    ("patch", bootforge::fuzzing::patch),
    ("zinfo", bootforge::fuzzing::zinfo),
    ("xz_index", bootforge::fuzzing::xz_index),
];

#[test]
fn every_seed_and_regression_input_runs_clean() {
    let fuzz = root().join("tests/fuzz");
    let listed = fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    assert_eq!(
        listed.matches("[[bin]]").count(),
        TARGETS.len(),
        "a fuzz target is not replayed here"
    );
    let mut seeds = 0;
    for (target, run) in TARGETS {
        assert!(
            listed.contains(&format!("name = \"{target}\"")),
            "tests/fuzz has no target {target}"
        );
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = fs::read_dir(fuzz.join(kind).join(target)) else {
                assert_eq!(kind, "regressions", "{target} has no seed corpus");
                continue;
            };
            for e in entries {
                let path = e.unwrap().path();
                eprintln!("{}", path.display());
                run(&fs::read(&path).unwrap());
                seeds += usize::from(kind == "corpus");
            }
        }
    }
    assert!(seeds >= 20, "only {seeds} seeds");
}
