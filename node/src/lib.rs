//! Silkgate: the compliance node of a multi-jurisdiction blockchain hosting network.
//!
//! # Layout
//! The pure core takes its inputs as arguments and does no I/O:
//! - [`schema`]: the request attributes policies can read;
//! - [`request`]: the deployment request as plain data, converted from protobuf;
//! - [`policy`]: policy files parsed, compiled and evaluated;
//! - [`decision`]: the signed decision: payload bytes, DSSE PAE, Ed25519.
//!
//! The shell does the I/O: [`loader`] reads policy directories, [`keys`] the key file,
//! [`service`] and [`server`] answer gRPC, and the `silkgate` binary's `cli` dispatches.

pub mod cases;
pub mod checkpoint;
pub mod decision;
pub mod diag;
pub mod impact;
pub mod keys;
pub mod limits;
pub mod loader;
pub mod log;
pub mod log_service;
pub mod logbuf;
pub mod merkle;
pub mod metrics;
pub mod policy;
pub mod reload;
pub mod request;
pub mod schema;
pub mod server;
pub mod service;
pub mod time;
pub mod tls;
#[cfg(test)]
mod trace_fields;
pub mod wire;

/// The generated protobuf messages and client of the `silkgate.v1` API.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("silkgate.v1");

    /// The server side of `Compliance`, declared in build.rs over [`crate::wire`] types.
    pub mod server {
        include!(concat!(env!("OUT_DIR"), "/server/silkgate.v1.Compliance.rs"));
    }

    /// The encoded file descriptor set of the API, for gRPC reflection.
    pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/silkgate_descriptor.bin"));
}

/// The version of this build, reported in NodeInfo.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
