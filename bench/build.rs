//! Compiles the echo service of the CheckUsername baseline (`proto/echo.proto`) with protox and
//! tonic-prost-build, as `crates/proto` does for Roster's own contract.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not when it was compiled: a build script compiled for a
    // checkout elsewhere may be reused for this one.
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let file = root.join("echo.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let descriptors = protox::compile([&file], [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
