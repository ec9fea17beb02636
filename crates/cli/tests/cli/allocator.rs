//! The `roster` binary allocates with mimalloc, its options set before the first allocation
//! (roster_runtime::allocator): read from mimalloc's own report of the options it started with
//! (`MIMALLOC_VERBOSE=1`, on standard error).

use std::process::Command;

/// The option lines mimalloc reports when `roster --version` starts with `env` added.
fn options_at_start(env: &[(&str, &str)]) -> Vec<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    command
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
        .env_remove("MIMALLOC_PURGE_DELAY");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("roster runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.starts_with("option '"))
        .map(|line| line.trim().to_owned())
        .collect()
}

fn reports(options: &[String], line: &str) -> bool {
    options.iter().any(|option| option == line)
}

#[test]
fn arenas_are_committed_on_demand_and_memory_returned_after_10_ms() {
    let options = options_at_start(&[]);
    assert!(
        reports(&options, "option 'arena_eager_commit': 0"),
        "{options:#?}"
    );
    assert!(
        reports(&options, "option 'purge_delay': 10"),
        "{options:#?}"
    );
}

#[test]
fn the_environment_still_decides_the_options() {
    let options = options_at_start(&[
        ("MIMALLOC_ARENA_EAGER_COMMIT", "1"),
        ("MIMALLOC_PURGE_DELAY", "1000"),
    ]);
    assert!(
        reports(&options, "option 'arena_eager_commit': 1"),
        "{options:#?}"
    );
    assert!(
        reports(&options, "option 'purge_delay': 1000"),
        "{options:#?}"
    );
}
