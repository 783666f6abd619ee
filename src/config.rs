//! Configuration from the environment, with the Jaeger client conventions
//! (jaeger-client-go's `config.FromEnv`). Parsing is pure: it reads through a lookup
//! function, so tests need no process environment.

use crate::connections::Limits;
use crate::downstream::Url;
use crate::propagation::Formats;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Everything the service reads at start-up.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub workers: usize,
    pub service_name: String,
    pub agent_host: String,
    pub agent_port: u16,
    pub sampler: SamplerConfig,
    pub tags: Vec<(String, String)>,
    pub max_queue_size: usize,
    pub flush_interval: Duration,
    pub log_spans: bool,
    pub disabled: bool,
    pub shared_rpc_span: bool,
    /// Trace context formats read and written, in order of precedence.
    pub propagation: Formats,
    /// What `/chain` calls.
    pub downstream_url: Option<Url>,
    pub downstream_timeout: Duration,
    /// Bounds on client connections (see `connections.rs`).
    pub connections: Limits,
}

/// `JAEGER_SAMPLER_TYPE` with its `JAEGER_SAMPLER_PARAM`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerConfig {
    /// Sample all (`true`) or none.
    Const(bool),
    /// Sample this fraction of new traces, 0.0 to 1.0.
    Probabilistic(f64),
    /// At most this many new traces per second.
    RateLimiting(f64),
}

/// A setting that could not be used: start-up stops with this one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub accepted: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.var, self.value, self.accepted
        )
    }
}

impl std::error::Error for ConfigError {}

/// The variables, their defaults and what they take: the `--help` text and the README table
/// say the same.
pub const HELP: &str = "\
myhelloworld: hello-world HTTP service traced with B3 or W3C trace context and a Jaeger UDP
reporter.

Usage: myhelloworld [--help | --version]

Configuration (environment variables, default in brackets):
  HOST                            IP address to listen on, such as 0.0.0.0, :: or
                                  127.0.0.1 [0.0.0.0]
  PORT                            TCP port, 0 picks a free one [8080]
  WORKERS                         request worker threads, 1-1024 [4 x CPUs, at least 4]
  HTTP_MAX_CONNECTIONS            open client connections kept; beyond, the longest waiting
                                  for an answer are closed, 1-100000 [512]
  HTTP_IDLE_TIMEOUT               close a keep-alive connection idle this long, a Go duration,
                                  100ms-24h; longer than Envoy's 1h so the sidecar closes
                                  first [1h5m]
  HTTP_REQUEST_TIMEOUT            close a connection whose request is not answered this long
                                  after it began (slow heads, stuck clients), 100ms-1h,
                                  longer than DOWNSTREAM_TIMEOUT [30s]
  JAEGER_SERVICE_NAME             service name in Jaeger [myhelloworld]
  JAEGER_AGENT_HOST               Jaeger agent host name or IP (IPv6 bare or in brackets),
                                  resolved again while it fails [localhost]
  JAEGER_AGENT_PORT               agent UDP port, jaeger.thrift compact [6831]
  JAEGER_SAMPLER_TYPE             const | probabilistic | ratelimiting, for traces that arrive
                                  without a sampling decision [const]
  JAEGER_SAMPLER_PARAM            const: 1 or 0; probabilistic: 0.0-1.0; ratelimiting: traces
                                  per second [1, 0.001, 1 respectively]
  JAEGER_TAGS                     process tags k=v,k2=v2; a value ${VAR:default} reads VAR []
  JAEGER_REPORTER_MAX_QUEUE_SIZE  spans waiting for the reporter before new ones are dropped
                                  and counted, 1-1000000 [4096]
  JAEGER_REPORTER_FLUSH_INTERVAL  longest a span waits before it is sent, a Go duration
                                  such as 500ms or 1s, 1ms-1h [1s]
  JAEGER_REPORTER_LOG_SPANS       also log every finished span (useful without Jaeger) [false]
  JAEGER_DISABLED                 record no spans; trace headers are still read, logged and
                                  propagated [false]
  JAEGER_PROPAGATION              trace context formats read and written, b3 and/or w3c, in
                                  order of precedence: the first with a valid context wins
                                  [b3,w3c]
  ZIPKIN_SHARED_RPC_SPAN          reuse the caller's span id as the server span (classic
                                  Zipkin; the Go original's ZipkinSharedRPCSpan) [false]
  DOWNSTREAM_URL                  what GET /chain calls, an http:// URL such as
                                  http://myhelloworld-backend:8080/gettime [unset: /chain is 404]
  DOWNSTREAM_TIMEOUT              total time for that call, a Go duration, 1ms-5m [2s]
  RUST_LOG                        log filter, e.g. info, debug, myhelloworld=debug [info]

Booleans take 1, t, true, TRUE, True, 0, f, false, FALSE, False.
An invalid value stops start-up with exit status 2.
";

const BOOL: &str = "a boolean (true, false, 1, 0)";

impl Config {
    /// Reads the configuration through `env` (normally `std::env::var`).
    pub fn from_lookup(
        env: impl Fn(&str) -> Option<String>,
        cpus: usize,
    ) -> Result<Config, ConfigError> {
        let get = |var: &'static str| env(var).filter(|v| !v.is_empty());
        let sampler = parse_sampler(get("JAEGER_SAMPLER_TYPE"), get("JAEGER_SAMPLER_PARAM"))?;
        Ok(Config {
            host: parse_or(
                "HOST",
                &get,
                Ipv4Addr::UNSPECIFIED.into(),
                "an IP address such as 0.0.0.0, :: or 127.0.0.1",
                parse_ip,
            )?,
            port: parse_or("PORT", &get, 8080, "a port number 0-65535", |v| {
                v.parse().ok()
            })?,
            workers: parse_or(
                "WORKERS",
                &get,
                (4 * cpus).max(4),
                "a whole number 1-1024",
                |v| v.parse().ok().filter(|n| (1..=1024).contains(n)),
            )?,
            service_name: get("JAEGER_SERVICE_NAME").unwrap_or_else(|| "myhelloworld".into()),
            agent_host: parse_or(
                "JAEGER_AGENT_HOST",
                &get,
                "localhost".into(),
                "a host name, an IPv4 address or an IPv6 address, bare or in brackets",
                parse_agent_host,
            )?,
            agent_port: parse_or(
                "JAEGER_AGENT_PORT",
                &get,
                6831,
                "a port number 1-65535",
                |v| v.parse().ok().filter(|&p| p != 0),
            )?,
            sampler,
            tags: match get("JAEGER_TAGS") {
                None => Vec::new(),
                Some(v) => parse_tags(&v, &env).ok_or(ConfigError {
                    var: "JAEGER_TAGS",
                    value: v,
                    accepted: "comma-separated key=value pairs (value may be ${VAR:default})",
                })?,
            },
            max_queue_size: parse_or(
                "JAEGER_REPORTER_MAX_QUEUE_SIZE",
                &get,
                4096,
                "a whole number 1-1000000",
                |v| v.parse().ok().filter(|n| (1..=1_000_000).contains(n)),
            )?,
            flush_interval: parse_or(
                "JAEGER_REPORTER_FLUSH_INTERVAL",
                &get,
                Duration::from_secs(1),
                "a Go duration from 1ms to 1h, such as 500ms or 1s",
                duration_in(Duration::from_millis(1), Duration::from_secs(3600)),
            )?,
            log_spans: parse_or("JAEGER_REPORTER_LOG_SPANS", &get, false, BOOL, parse_bool)?,
            disabled: parse_or("JAEGER_DISABLED", &get, false, BOOL, parse_bool)?,
            shared_rpc_span: parse_or("ZIPKIN_SHARED_RPC_SPAN", &get, false, BOOL, parse_bool)?,
            propagation: parse_or(
                "JAEGER_PROPAGATION",
                &get,
                Formats::default(),
                "a comma list of b3 and w3c in order of precedence, such as b3,w3c",
                Formats::parse,
            )?,
            downstream_url: match get("DOWNSTREAM_URL") {
                None => None,
                Some(v) => Some(Url::parse(v.trim()).ok_or(ConfigError {
                    var: "DOWNSTREAM_URL",
                    value: v,
                    accepted: "an http:// URL such as http://myhelloworld-backend:8080/gettime",
                })?),
            },
            downstream_timeout: parse_or(
                "DOWNSTREAM_TIMEOUT",
                &get,
                Duration::from_secs(2),
                "a Go duration from 1ms to 5m, such as 2s",
                duration_in(Duration::from_millis(1), Duration::from_secs(300)),
            )?,
            connections: Limits {
                max_connections: parse_or(
                    "HTTP_MAX_CONNECTIONS",
                    &get,
                    512,
                    "a whole number 1-100000",
                    |v| v.parse().ok().filter(|n| (1..=100_000).contains(n)),
                )?,
                idle_timeout: parse_or(
                    "HTTP_IDLE_TIMEOUT",
                    &get,
                    Duration::from_secs(3900),
                    "a Go duration from 100ms to 24h, such as 1h5m",
                    duration_in(Duration::from_millis(100), Duration::from_secs(86_400)),
                )?,
                request_timeout: parse_or(
                    "HTTP_REQUEST_TIMEOUT",
                    &get,
                    Duration::from_secs(30),
                    "a Go duration from 100ms to 1h, such as 30s",
                    duration_in(Duration::from_millis(100), Duration::from_secs(3600)),
                )?,
            },
        })
        .and_then(Config::consistent)
    }

    /// A `/chain` call must be able to finish before its request times out.
    fn consistent(self) -> Result<Config, ConfigError> {
        if self.downstream_url.is_some()
            && self.downstream_timeout >= self.connections.request_timeout
        {
            return Err(ConfigError {
                var: "DOWNSTREAM_TIMEOUT",
                value: format!("{:?}", self.downstream_timeout),
                accepted: "a duration shorter than HTTP_REQUEST_TIMEOUT",
            });
        }
        Ok(self)
    }
}

/// `parse` of the variable's value, or `default` when it is unset or empty.
fn parse_or<T>(
    var: &'static str,
    get: &impl Fn(&'static str) -> Option<String>,
    default: T,
    accepted: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => parse(v.trim()).ok_or(ConfigError {
            var,
            value: v,
            accepted,
        }),
    }
}

fn parse_sampler(
    kind: Option<String>,
    param: Option<String>,
) -> Result<SamplerConfig, ConfigError> {
    let kind = kind.unwrap_or_else(|| "const".into());
    let param_error = |accepted| ConfigError {
        var: "JAEGER_SAMPLER_PARAM",
        value: param.clone().unwrap_or_default(),
        accepted,
    };
    let number = param.as_deref().map(|p| p.trim().parse::<f64>());
    match kind.trim() {
        "const" => match number {
            None => Ok(SamplerConfig::Const(true)),
            Some(Ok(1.0)) => Ok(SamplerConfig::Const(true)),
            Some(Ok(0.0)) => Ok(SamplerConfig::Const(false)),
            _ => Err(param_error("1 or 0 for the const sampler")),
        },
        "probabilistic" => match number {
            None => Ok(SamplerConfig::Probabilistic(0.001)),
            Some(Ok(n)) if (0.0..=1.0).contains(&n) => Ok(SamplerConfig::Probabilistic(n)),
            _ => Err(param_error(
                "a sampling rate from 0.0 to 1.0 for the probabilistic sampler",
            )),
        },
        "ratelimiting" => match number {
            None => Ok(SamplerConfig::RateLimiting(1.0)),
            Some(Ok(n)) if n.is_finite() && n >= 0.0 => Ok(SamplerConfig::RateLimiting(n)),
            _ => Err(param_error(
                "traces per second, 0 or more, for the ratelimiting sampler",
            )),
        },
        _ => Err(ConfigError {
            var: "JAEGER_SAMPLER_TYPE",
            value: kind,
            accepted: "const, probabilistic or ratelimiting",
        }),
    }
}

/// A Go duration within `min..=max`.
fn duration_in(min: Duration, max: Duration) -> impl Fn(&str) -> Option<Duration> {
    move |v| parse_go_duration(v).filter(|d| (min..=max).contains(d))
}

/// An IP address; IPv6 bare or in brackets (`::1`, `[::1]`). A listening address is an IP
/// literal: a name would be resolved at start, to whatever DNS says then.
fn parse_ip(v: &str) -> Option<IpAddr> {
    match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(inner) => inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => v.parse().ok(),
    }
}

/// A host name or an IP address; IPv6 bare or in brackets, as jaeger-client-go takes it (it
/// writes `host:port`, so there only `[::1]` works), kept without the brackets that name
/// resolution does not take.
fn parse_agent_host(v: &str) -> Option<String> {
    if v.starts_with('[') || v.contains(':') {
        return parse_ip(v).map(|ip| ip.to_string());
    }
    let name = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
    v.bytes().all(name).then(|| v.to_owned())
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `k=v,k2=v2`; a value `${VAR:default}` (or `${VAR}`) is read from the environment, as the
/// Jaeger clients do.
fn parse_tags(v: &str, env: &impl Fn(&str) -> Option<String>) -> Option<Vec<(String, String)>> {
    v.split(',')
        .map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() {
                return None;
            }
            let value = match value.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                None => value.to_owned(),
                Some(reference) => {
                    let (var, default) = reference.split_once(':').unwrap_or((reference, ""));
                    env(var)
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| default.to_owned())
                }
            };
            Some((key.to_owned(), value))
        })
        .collect()
}

/// A Go `time.ParseDuration` string without a sign: `300ms`, `1.5s`, `2m30s`, `0`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total_ns: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ns_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total_ns += number * ns_per_unit;
    }
    // Bounded so the conversion below cannot overflow (Go's own limit is ~292 years).
    (total_ns <= 1e18).then(|| Duration::from_nanos(total_ns.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned(), 2)
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(
            c,
            Config {
                host: Ipv4Addr::UNSPECIFIED.into(),
                port: 8080,
                workers: 8,
                service_name: "myhelloworld".into(),
                agent_host: "localhost".into(),
                agent_port: 6831,
                sampler: SamplerConfig::Const(true),
                tags: vec![],
                max_queue_size: 4096,
                flush_interval: Duration::from_secs(1),
                log_spans: false,
                disabled: false,
                shared_rpc_span: false,
                propagation: Formats::default(),
                downstream_url: None,
                downstream_timeout: Duration::from_secs(2),
                connections: Limits {
                    max_connections: 512,
                    idle_timeout: Duration::from_secs(3900),
                    request_timeout: Duration::from_secs(30),
                },
            }
        );
        // Empty counts as unset, as in the Jaeger clients.
        assert_eq!(config(&[("PORT", "")]).unwrap().port, 8080);
    }

    #[test]
    fn valid_values() {
        let c = config(&[
            ("PORT", "0"),
            ("WORKERS", "3"),
            ("JAEGER_SERVICE_NAME", "backend"),
            (
                "JAEGER_AGENT_HOST",
                "jaeger-agent.observability.svc.cluster.local",
            ),
            ("JAEGER_AGENT_PORT", "6832"),
            ("JAEGER_SAMPLER_TYPE", "probabilistic"),
            ("JAEGER_SAMPLER_PARAM", "0.25"),
            (
                "JAEGER_TAGS",
                "zone=a, pod=${POD_NAME:unknown},node=${NODE:n1}",
            ),
            ("POD_NAME", "p-1"),
            ("JAEGER_REPORTER_MAX_QUEUE_SIZE", "10"),
            ("JAEGER_REPORTER_FLUSH_INTERVAL", "250ms"),
            ("JAEGER_REPORTER_LOG_SPANS", "True"),
            ("JAEGER_DISABLED", "0"),
            ("ZIPKIN_SHARED_RPC_SPAN", "t"),
            ("JAEGER_PROPAGATION", "w3c, b3"),
            ("DOWNSTREAM_URL", "http://myhelloworld-backend:8080/gettime"),
            ("DOWNSTREAM_TIMEOUT", "1500ms"),
            ("HTTP_MAX_CONNECTIONS", "64"),
            ("HTTP_IDLE_TIMEOUT", "1h5m"),
            ("HTTP_REQUEST_TIMEOUT", "2s"),
        ])
        .unwrap();
        assert_eq!(
            c.downstream_url.map(|u| u.to_string()).as_deref(),
            Some("http://myhelloworld-backend:8080/gettime")
        );
        assert_eq!(c.downstream_timeout, Duration::from_millis(1500));
        assert_eq!(c.port, 0);
        assert_eq!(c.workers, 3);
        assert_eq!(c.service_name, "backend");
        assert_eq!(c.agent_port, 6832);
        assert_eq!(c.sampler, SamplerConfig::Probabilistic(0.25));
        assert_eq!(
            c.tags,
            vec![
                ("zone".into(), "a".into()),
                ("pod".into(), "p-1".into()),
                ("node".into(), "n1".into())
            ]
        );
        assert_eq!(c.max_queue_size, 10);
        assert_eq!(c.flush_interval, Duration::from_millis(250));
        assert!(c.log_spans && !c.disabled && c.shared_rpc_span);
        assert_eq!(c.propagation.to_string(), "w3c,b3");
        assert_eq!(
            c.connections,
            Limits {
                max_connections: 64,
                idle_timeout: Duration::from_secs(3900),
                request_timeout: Duration::from_secs(2),
            }
        );
    }

    #[test]
    fn samplers() {
        let cases: &[(&str, Option<&str>, SamplerConfig)] = &[
            ("const", None, SamplerConfig::Const(true)),
            ("const", Some("0"), SamplerConfig::Const(false)),
            ("const", Some("1"), SamplerConfig::Const(true)),
            ("probabilistic", None, SamplerConfig::Probabilistic(0.001)),
            (
                "probabilistic",
                Some("1"),
                SamplerConfig::Probabilistic(1.0),
            ),
            ("ratelimiting", None, SamplerConfig::RateLimiting(1.0)),
            (
                "ratelimiting",
                Some("2.5"),
                SamplerConfig::RateLimiting(2.5),
            ),
        ];
        for (kind, param, want) in cases {
            let mut vars = vec![("JAEGER_SAMPLER_TYPE", *kind)];
            vars.extend(param.map(|p| ("JAEGER_SAMPLER_PARAM", p)));
            assert_eq!(config(&vars).unwrap().sampler, *want, "{kind} {param:?}");
        }
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("PORT", "http")], "PORT"),
            (&[("PORT", "65536")], "PORT"),
            (&[("WORKERS", "0")], "WORKERS"),
            (&[("WORKERS", "100000")], "WORKERS"),
            (&[("JAEGER_AGENT_PORT", "0")], "JAEGER_AGENT_PORT"),
            (&[("JAEGER_SAMPLER_TYPE", "remote")], "JAEGER_SAMPLER_TYPE"),
            (&[("JAEGER_SAMPLER_PARAM", "0.5")], "JAEGER_SAMPLER_PARAM"),
            (
                &[
                    ("JAEGER_SAMPLER_TYPE", "probabilistic"),
                    ("JAEGER_SAMPLER_PARAM", "1.5"),
                ],
                "JAEGER_SAMPLER_PARAM",
            ),
            (
                &[
                    ("JAEGER_SAMPLER_TYPE", "ratelimiting"),
                    ("JAEGER_SAMPLER_PARAM", "-1"),
                ],
                "JAEGER_SAMPLER_PARAM",
            ),
            (&[("JAEGER_TAGS", "novalue")], "JAEGER_TAGS"),
            (&[("JAEGER_TAGS", "=v")], "JAEGER_TAGS"),
            (
                &[("JAEGER_REPORTER_MAX_QUEUE_SIZE", "-5")],
                "JAEGER_REPORTER_MAX_QUEUE_SIZE",
            ),
            (
                &[("JAEGER_REPORTER_FLUSH_INTERVAL", "1000")],
                "JAEGER_REPORTER_FLUSH_INTERVAL",
            ),
            (
                &[("JAEGER_REPORTER_FLUSH_INTERVAL", "0s")],
                "JAEGER_REPORTER_FLUSH_INTERVAL",
            ),
            (
                &[("JAEGER_REPORTER_FLUSH_INTERVAL", "2h")],
                "JAEGER_REPORTER_FLUSH_INTERVAL",
            ),
            (
                &[("JAEGER_REPORTER_LOG_SPANS", "yes")],
                "JAEGER_REPORTER_LOG_SPANS",
            ),
            (&[("JAEGER_DISABLED", "on")], "JAEGER_DISABLED"),
            (&[("ZIPKIN_SHARED_RPC_SPAN", "2")], "ZIPKIN_SHARED_RPC_SPAN"),
            (&[("JAEGER_PROPAGATION", "jaeger")], "JAEGER_PROPAGATION"),
            (&[("JAEGER_PROPAGATION", "b3,b3")], "JAEGER_PROPAGATION"),
            (&[("JAEGER_PROPAGATION", "b3,")], "JAEGER_PROPAGATION"),
            (&[("DOWNSTREAM_URL", "https://b/")], "DOWNSTREAM_URL"),
            (&[("DOWNSTREAM_TIMEOUT", "10m")], "DOWNSTREAM_TIMEOUT"),
            (
                &[
                    ("DOWNSTREAM_URL", "http://b/"),
                    ("DOWNSTREAM_TIMEOUT", "30s"),
                ],
                "DOWNSTREAM_TIMEOUT",
            ),
            (&[("HTTP_MAX_CONNECTIONS", "0")], "HTTP_MAX_CONNECTIONS"),
            (&[("HTTP_IDLE_TIMEOUT", "10ms")], "HTTP_IDLE_TIMEOUT"),
            (&[("HTTP_REQUEST_TIMEOUT", "2h")], "HTTP_REQUEST_TIMEOUT"),
            (&[("HOST", "notanip")], "HOST"),
            (&[("HOST", "localhost")], "HOST"),
            (&[("HOST", "[127.0.0.1]")], "HOST"),
            (&[("HOST", "1.2.3.4:80")], "HOST"),
            (&[("JAEGER_AGENT_HOST", "[notanip]")], "JAEGER_AGENT_HOST"),
            (&[("JAEGER_AGENT_HOST", "[::1")], "JAEGER_AGENT_HOST"),
            (&[("JAEGER_AGENT_HOST", "agent:6831")], "JAEGER_AGENT_HOST"),
            (&[("JAEGER_AGENT_HOST", "a b")], "JAEGER_AGENT_HOST"),
        ];
        for (vars, var) in cases {
            let err = config(vars).unwrap_err();
            assert_eq!(err.var, *var, "{vars:?}");
            let line = err.to_string();
            assert!(line.starts_with(&format!("invalid {var}=")), "{line}");
            assert!(line.contains("expected"), "{line}");
        }
    }

    #[test]
    fn listening_and_agent_addresses() {
        let host = |v: &str| config(&[("HOST", v)]).map(|c| c.host.to_string());
        for (input, want) in [
            ("127.0.0.1", "127.0.0.1"),
            ("::", "::"),
            ("[::1]", "::1"),
            (" 10.0.0.1 ", "10.0.0.1"),
        ] {
            assert_eq!(host(input).as_deref(), Ok(want), "{input:?}");
        }
        let agent = |v: &str| config(&[("JAEGER_AGENT_HOST", v)]).map(|c| c.agent_host);
        for (input, want) in [
            (
                "jaeger-agent.observability.svc",
                "jaeger-agent.observability.svc",
            ),
            ("10.1.2.3", "10.1.2.3"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("[fe80::1]", "fe80::1"),
        ] {
            assert_eq!(agent(input).as_deref(), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn go_durations() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("1s", Some(Duration::from_secs(1))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("2m30s", Some(Duration::from_secs(150))),
            ("1h", Some(Duration::from_secs(3600))),
            ("100us", Some(Duration::from_micros(100))),
            ("100µs", Some(Duration::from_micros(100))),
            ("10ns", Some(Duration::from_nanos(10))),
            ("0", Some(Duration::ZERO)),
            ("", None),
            ("1", None),
            ("s", None),
            ("-1s", None),
            ("1x", None),
            ("1..5s", None),
            ("1e3s", None),
            ("99999999999h", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_go_duration(input), *want, "{input:?}");
        }
    }

    #[test]
    fn help_lists_every_variable() {
        for var in [
            "HOST",
            "PORT",
            "WORKERS",
            "JAEGER_SERVICE_NAME",
            "JAEGER_AGENT_HOST",
            "JAEGER_AGENT_PORT",
            "JAEGER_SAMPLER_TYPE",
            "JAEGER_SAMPLER_PARAM",
            "JAEGER_TAGS",
            "JAEGER_REPORTER_MAX_QUEUE_SIZE",
            "JAEGER_REPORTER_FLUSH_INTERVAL",
            "JAEGER_REPORTER_LOG_SPANS",
            "JAEGER_DISABLED",
            "ZIPKIN_SHARED_RPC_SPAN",
            "JAEGER_PROPAGATION",
            "DOWNSTREAM_URL",
            "DOWNSTREAM_TIMEOUT",
            "HTTP_MAX_CONNECTIONS",
            "HTTP_IDLE_TIMEOUT",
            "HTTP_REQUEST_TIMEOUT",
            "RUST_LOG",
        ] {
            assert!(HELP.contains(&format!("\n  {var} ")), "{var} missing");
        }
    }
}
