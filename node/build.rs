//! Compiles `proto/` with protox (a pure-Rust protobuf compiler, so no system `protoc`).
//!
//! Two outputs: the tonic clients and servers of the public API over the messages of
//! `silkgate_verify::proto` (generated there, and kept in the repository), and a hand-
//! declared server for `Compliance` whose request types keep the `DeploymentRequest`
//! bytes exactly as received (see `src/wire.rs`), so decisions can hash them.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from("../proto");
    println!("cargo:rerun-if-changed=../proto");
    let fds = protox::compile(["silkgate/v1/silkgate.proto"], [&proto_root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("silkgate_descriptor.bin"), fds.encode_to_vec())?;

    // The messages are silkgate_verify's: only the services are generated here.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .extern_path(".silkgate.v1", "::silkgate_verify::proto")
        .compile_fds(fds)?;

    let method = |name: &str, route: &str, input: &str, output: &str| {
        tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type(input)
            .output_type(output)
            .codec_path("tonic_prost::ProstCodec")
            .build()
    };
    let compliance = tonic_build::manual::Service::builder()
        .name("Compliance")
        .package("silkgate.v1")
        .method(method("evaluate", "Evaluate", "crate::wire::EvaluateRequest", "crate::wire::EvaluateResponse"))
        .method(method(
            "evaluate_batch",
            "EvaluateBatch",
            "crate::wire::EvaluateBatchRequest",
            "crate::wire::EvaluateBatchResponse",
        ))
        .method(method("node_info", "NodeInfo", "crate::proto::NodeInfoRequest", "crate::proto::NodeInfoResponse"))
        .build();
    // Network.Certify forwards the DeploymentRequest bytes as received (src/network/certify.rs).
    let network = tonic_build::manual::Service::builder()
        .name("Network")
        .package("silkgate.v1")
        .method(method(
            "certify",
            "Certify",
            "crate::network::certify::CertifyRequest",
            "crate::proto::CertifyResponse",
        ))
        .build();
    let server_out = out.join("server");
    std::fs::create_dir_all(&server_out)?;
    tonic_build::manual::Builder::new().build_client(false).out_dir(&server_out).compile(&[compliance, network]);
    Ok(())
}
