//! myhelloworld: a hello-world HTTP service whose request spans join an Istio mesh trace in
//! Jaeger.
//!
//! The request path, in reading order: [`config`] → [`server`] (workers, shutdown) →
//! [`propagation`] (trace context in and out, through [`b3`] and [`w3c`]) and [`trace`] (sampling, span ids, Jaeger spans) →
//! [`handlers`] (and [`downstream`] for `/chain`) → [`reporter`] (spans to the Jaeger agent
//! over UDP). [`connections`] bounds what clients can hold; [`metrics`] counts it all for
//! `GET /metrics`.

pub mod access_log;
pub mod alloc;
pub mod b3;
pub mod config;
pub mod connections;
pub(crate) mod downstream;
pub(crate) mod escape;
pub(crate) mod framing;
pub mod handlers;
pub(crate) mod jaeger_thrift;
// `rep movsb` is x86_64's; musl's aarch64 memcpy is tuned assembly already.
#[cfg(target_arch = "x86_64")]
mod memcpy;
pub mod metrics;
pub mod propagation;
#[cfg(test)]
mod readme;
pub mod reporter;
pub mod server;
pub mod signals;
pub mod trace;
pub mod w3c;
