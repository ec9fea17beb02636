//! Compiles every `.proto` file under the workspace's `proto/` directory with protox (pure Rust,
//! no system `protoc`) and generates prost messages and tonic services from the result. The
//! encoded file descriptor set is kept for gRPC server reflection. Services and clients use
//! `crate::codec::RosterCodec`: prost's encoding, with requests that do not decode answered as
//! INVALID_ARGUMENT.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not baked in with env!: a build script compiled for one checkout may
    // be reused by another that shares the target directory.
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.join("../../proto");
    let mut files = Vec::new();
    collect_protos(&root, &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("roster_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // RPCs a service does not implement yet answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        // A request that does not decode is INVALID_ARGUMENT, not tonic's INTERNAL; the codec
        // tells requests from responses by the message's name (prost::Name).
        .codec_path("crate::codec::RosterCodec")
        .compile_fds_with_config(descriptors, {
            let mut config = tonic_prost_build::Config::new();
            config.enable_type_names();
            config
        })?;
    Ok(())
}

fn collect_protos(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    Ok(())
}
