//! Silkgate's pure core: everything between a deployment request and a signed decision.
//!
//! # Layout (in the order of the pipeline)
//! - [`schema`]: the request attributes policies can read;
//! - [`request`]: the deployment request as plain data, converted from protobuf or read
//!   from a request file's text;
//! - [`policy`]: policy files parsed, compiled and evaluated; [`diag`] their diagnostics;
//! - [`decision`]: the `Decision` built from an outcome, and signed (DSSE, Ed25519);
//! - [`cases`]: policy test cases; [`impact`]: what a policy change would change;
//! - [`waiver`]: signed waivers applied to an outcome (soft rules they cover stop blocking).
//!
//! Re-exported from `silkgate_verify`, which checks what this crate signs: [`proto`],
//! [`time`], [`merkle`], [`checkpoint`].
//!
//! # Invariant
//! The core takes its inputs as arguments and returns values: it does no I/O (no file
//! system, network, threads or async runtime). Text comes in as `&str`, time as a
//! [`time::UnixTime`] argument. `clippy.toml` beside this crate's manifest forbids
//! `std::fs` and `std::net`, and `.ci/run` checks that no runtime or server is among its
//! dependencies.

#![forbid(unsafe_code)]

pub mod cases;
pub mod decision;
pub mod diag;
pub mod impact;
pub mod policy;
pub mod request;
pub mod schema;
pub mod waiver;

pub use silkgate_verify::{checkpoint, merkle, proto, time};
