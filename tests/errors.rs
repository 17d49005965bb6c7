//! Every kind of bad input: a clear error naming file, line and field, a non-zero exit, and
//! a store that `cache verify` still finds intact, with no action recorded.

use std::fs;

use crate::common::{Env, Run};

const GOOD_GIT: &str = "source:
  git: https://github.com/ipxe/ipxe.git
  rev: 12798ec29aa8a64d8675c4378b99f5fe28447afb
toolchain: test
steps:
  - run: [make, \"{targets}\"]
outputs: [out]
";

/// Runs `build` on a recipe written from `text` and checks the failure leaves nothing behind.
fn build_fails(env: &Env, name: &str, text: &str) -> Run {
    let path = env.write_recipe(name, text);
    build_path_fails(env, path.to_str().unwrap())
}

fn build_path_fails(env: &Env, recipe: &str) -> Run {
    let run = env.run(&["build", recipe]).fails();
    assert_eq!(
        env.action_count(),
        0,
        "a failed build recorded an action:\n{run}"
    );
    env.assert_store_intact();
    run
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let env = Env::new();
    let run = build_fails(&env, "broken", "source:\n  path: .\nsteps: [\n");
    let file = env.recipes_dir().join("broken.yaml");
    assert!(
        run.stderr.contains(&format!("{}:", file.display())),
        "{run}"
    );
    assert!(
        run.stderr.contains(":4:") || run.stderr.contains(":3:"),
        "{run}"
    );
}

#[test]
fn unknown_field_gets_its_position_and_a_suggestion() {
    let env = Env::new();
    let text = GOOD_GIT.replace("outputs:", "ouptuts:");
    build_fails(&env, "typo", &text).says(&[
        "typo.yaml:7:1: ",
        "unknown field `ouptuts`",
        "did you mean `outputs`?",
    ]);
}

#[test]
fn a_wrong_type_names_the_field_path() {
    let env = Env::new();
    let text = GOOD_GIT.replace("  - run: [make, \"{targets}\"]", "  - run: make");
    build_fails(&env, "wrongtype", &text).says(&[
        "wrongtype.yaml:6:",
        "steps[0].run",
        "expected a sequence",
    ]);
}

#[test]
fn a_tag_instead_of_a_commit_is_refused() {
    let env = Env::new();
    let text = GOOD_GIT.replace("12798ec29aa8a64d8675c4378b99f5fe28447afb", "v2.0.0");
    build_fails(&env, "tag", &text).says(&[
        "tag.yaml:3:3: source.rev:",
        "`v2.0.0` is not a full 40-hex commit id",
    ]);
}

#[test]
fn an_unpinned_image_is_refused() {
    let env = Env::new();
    let text = GOOD_GIT.replace(
        "toolchain: test",
        "toolchain: docker.io/library/debian:bookworm",
    );
    build_fails(&env, "unpinned", &text).says(&[
        "unpinned.yaml:4:",
        "toolchain:",
        "unpinned image",
        "@sha256:",
    ]);
}

#[test]
fn an_unknown_variable_and_a_missing_pin_are_located() {
    let env = Env::new();
    let text = GOOD_GIT.replace("\"{targets}\"", "\"{tragets}\"");
    build_fails(&env, "var", &text).says(&[
        "var.yaml:6:",
        "steps[0].run[1]",
        "unknown variable `{tragets}`",
    ]);

    let text = "source:\n  url: https://example.invalid/x.tar.gz\nepoch: 1\ntoolchain: test\nsteps:\n  - run: [make]\noutputs: [out]\n";
    build_fails(&env, "nopin", text).says(&["nopin.yaml:", "source", "pinned with `sha256`"]);

    let text =
        "source:\n  path: ../src\ntoolchain: test\nsteps:\n  - run: [make]\noutputs: [out]\n";
    fs::create_dir_all(env.path().join("src")).unwrap();
    build_fails(&env, "noepoch", text).says(&["noepoch.yaml:1:1: epoch:", "required"]);
}

#[test]
fn bad_command_line_values_name_the_recipe() {
    let env = Env::new();
    env.run(&["build", "hello", "--set", "NOPE=1"])
        .fails()
        .says(&[
            "recipe hello",
            "`--set NOPE=...` names no variable",
            "GREETING",
        ]);
    env.run(&["build", "hello", "--target", "nope"])
        .fails()
        .says(&["`nope` is not one of its outputs", "hello, netinfo.txt"]);
    let recipes = crate::common::fixtures().join("recipes");
    env.run(&["build", "helo"]).fails().error_is(&format!(
        "no recipe `helo`: {}/helo.yaml does not exist (did you mean `hello`?); recipes in {}: \
         clock, hello, patchable, zbin, zbin-differs, zbin-newer",
        recipes.display(),
        recipes.display()
    ));
    assert_eq!(env.action_count(), 0);
    env.assert_store_intact();
}

#[test]
fn a_missing_output_is_reported_with_the_log() {
    let env = Env::new();
    let recipe = env.make_project(
        "noout",
        "all:\n\techo built nothing useful\n",
        "steps:\n  - run: [make]\noutputs: [missing.bin]\n",
    );
    let run = build_path_fails(&env, &recipe);
    run.says(&["output `missing.bin` was not produced", "full log:"]);
}

#[test]
fn a_failing_step_reports_step_status_and_log_tail() {
    let env = Env::new();
    let recipe = env.make_project(
        "failing",
        "all:\n\t@echo compiling the thing\n\t@echo 'error: this fixture always fails' >&2\n\t@false\n",
        "steps:\n  - name: compile\n    run: [make]\noutputs: [x]\n",
    );
    let run = build_path_fails(&env, &recipe);
    let run = run.says(&[
        "recipe failing: step 1/1 `compile` exited with exit status: 2",
        "last lines of the log",
        "error: this fixture always fails",
        "full log:",
    ]);
    // The full log is kept in the store.
    let log = run
        .stderr
        .lines()
        .find(|l| l.contains("full log:"))
        .unwrap();
    let path = log
        .split("full log: ")
        .nth(1)
        .unwrap()
        .trim_end_matches(" ---");
    assert!(
        fs::read_to_string(path)
            .unwrap()
            .contains("compiling the thing")
    );
}

#[test]
fn a_missing_executor_names_the_fix() {
    let env = Env::new();
    let empty = env.path().join("empty-path");
    fs::create_dir(&empty).unwrap();
    let run: Run = env
        .cmd()
        .env("PATH", &empty)
        .args(["build", "hello"])
        .output()
        .unwrap()
        .into();
    run.fails().says(&[
        "executor `podman` is not available",
        "apt-get install podman",
        "--executor",
    ]);
    assert_eq!(env.action_count(), 0);
    env.assert_store_intact();
}
