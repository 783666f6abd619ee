//! myhelloworld: a hello-world HTTP service whose request spans join an Istio mesh trace in
//! Jaeger.
//!
//! The request path, in reading order: [`config`] → [`server`] (workers, shutdown) →
//! [`b3`] (trace context in and out) and [`trace`] (sampling, span ids, Jaeger spans) →
//! [`handlers`] (and [`downstream`] for `/chain`) → [`reporter`] (spans to the Jaeger agent
//! over UDP). [`connections`] bounds what clients can hold; [`metrics`] counts it all for
//! `GET /metrics`.

pub mod access_log;
pub mod b3;
pub mod config;
pub mod connections;
pub mod downstream;
pub mod handlers;
pub mod jaeger_thrift;
pub mod metrics;
pub mod reporter;
pub mod server;
pub mod signals;
pub mod trace;
