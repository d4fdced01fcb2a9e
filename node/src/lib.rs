//! Silkgate: the compliance node of a multi-jurisdiction blockchain hosting network.
//!
//! This crate is the shell around the pure core (`silkgate_core`: requests, policies,
//! decisions) and the verifier (`silkgate_verify`: proofs, checkpoints, envelopes): it
//! does the I/O.
//!
//! # Layout
//! - [`loader`] reads policy directories and [`reload`] watches them; [`authority`]
//!   checks signed policy releases and logs activations; [`keys`] reads and writes the
//!   key file;
//! - [`wire`] decodes requests as received; [`service`] answers `Compliance` calls
//!   (evaluate, sign, log); [`log_service`] answers `DecisionLog` calls;
//! - [`server`] runs the gRPC server with [`limits`] and [`tls`]; [`metrics`] keeps the
//!   Prometheus metrics; [`http`] serves them, the log as C2SP tiles, the witness and
//!   the browser [`console`]; [`witness`] cosigns other nodes' checkpoints; [`waivers`]
//!   reads signed waivers; [`tracebuf`] buffers tracing output;
//! - [`log`]: the decision log's storage: files, recovery, group commit, sealing;
//! - [`network`]: the network roster (trust, reload) and `Network.Certify`, the gateway;
//! - the `silkgate` binary's `cli` dispatches the commands.

pub mod authority;
pub mod console;
pub mod http;
pub mod keys;
pub mod limits;
pub mod loader;
pub mod log;
pub mod log_service;
pub mod metrics;
pub mod network;
pub mod reload;
pub mod server;
pub mod service;
pub mod tls;
#[cfg(test)]
mod trace_fields;
pub mod tracebuf;
pub mod waivers;
pub mod wire;
pub mod witness;

/// The `silkgate.v1` API: its messages (from `silkgate_verify::proto`) and the gRPC
/// clients and servers generated over them.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    pub use silkgate_verify::proto::*;
    tonic::include_proto!("silkgate.v1");

    /// The server side of `Compliance`, declared in build.rs over [`crate::wire`] types.
    pub mod server {
        include!(concat!(env!("OUT_DIR"), "/server/silkgate.v1.Compliance.rs"));
        include!(concat!(env!("OUT_DIR"), "/server/silkgate.v1.Network.rs"));
    }

    /// The encoded file descriptor set of the API, for gRPC reflection.
    pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/silkgate_descriptor.bin"));
}

/// The version of this build, reported in NodeInfo.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
