//! Generates the gRPC/protobuf code from `proto/` without a system `protoc`:
//! protox compiles the files to a descriptor set, madsim-tonic-build generates
//! both the real tonic code and the madsim-simulated variant from it.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/tachyon.proto"];
    let fds = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds_path = out_dir.join("tachyon_descriptor.bin");
    std::fs::write(&fds_path, prost::Message::encode_to_vec(&fds))?;
    madsim_tonic_build::configure()
        .file_descriptor_set_path(&fds_path)
        .skip_protoc_run()
        .bytes(["."])
        // Ordered maps: checkpoints and digests must encode the same bytes every time.
        .btree_map(["."])
        .compile_protos(&protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
