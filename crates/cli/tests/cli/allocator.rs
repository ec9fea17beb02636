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

/// Asserts that mimalloc, started with `env` added, reports each of `lines`.
fn assert_started_with(env: &[(&str, &str)], lines: &[&str]) {
    let options = options_at_start(env);
    for line in lines {
        assert!(
            options.iter().any(|option| option == line),
            "{line}: {options:#?}"
        );
    }
}

#[test]
fn arenas_are_committed_on_demand_and_memory_returned_after_10_ms() {
    assert_started_with(
        &[],
        &["option 'arena_eager_commit': 0", "option 'purge_delay': 10"],
    );
}

#[test]
fn the_environment_still_decides_the_options() {
    assert_started_with(
        &[
            ("MIMALLOC_ARENA_EAGER_COMMIT", "1"),
            ("MIMALLOC_PURGE_DELAY", "1000"),
        ],
        &[
            "option 'arena_eager_commit': 1",
            "option 'purge_delay': 1000",
        ],
    );
}
