//! Configuration from the environment, with the Jaeger client conventions
//! (jaeger-client-go's `config.FromEnv`). Parsing is pure: it reads through a lookup
//! function, so tests need no process environment.

use crate::connections::Limits;
use crate::downstream::Url;
use crate::propagation::Formats;
use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::str::FromStr;
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
    pub(crate) var: &'static str,
    pub(crate) value: String,
    pub(crate) accepted: Cow<'static, str>,
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
                                  after it began (slow heads, stuck clients), 100ms-1h; with
                                  DOWNSTREAM_URL set, longer than DOWNSTREAM_TIMEOUT [30s]
  JAEGER_SERVICE_NAME             service name in Jaeger [myhelloworld]
  JAEGER_AGENT_HOST               Jaeger agent host name or IP (IPv6 bare or in brackets),
                                  resolved again while it fails [localhost]
  JAEGER_AGENT_PORT               agent UDP port, jaeger.thrift compact [6831]
  JAEGER_SAMPLER_TYPE             const | probabilistic | ratelimiting, for traces that arrive
                                  without a sampling decision [const]
  JAEGER_SAMPLER_PARAM            const: 0 off, any other number on; probabilistic: 0.0-1.0;
                                  ratelimiting: traces per second [1, 0.001, 1 respectively]
  JAEGER_TAGS                     process tags k=v,k2=v2; a value ${VAR:default} reads VAR
                                  [none]
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

// What some variables accept, for the error line (numbers and durations say their range).
const BOOL: &str = "a boolean (true, false, 1, 0)";
const IP: &str = "an IP address such as 0.0.0.0, :: or 127.0.0.1";
const AGENT_HOST: &str = "a host name, an IPv4 address or an IPv6 address, bare or in brackets";
const TAGS: &str = "comma-separated key=value pairs (value may be ${VAR:default})";
const PROPAGATION: &str = "a comma list of b3 and w3c in order of precedence, such as b3,w3c";
const URL: &str = "an http:// URL such as http://myhelloworld-backend:8080/gettime";

impl Config {
    /// Reads the configuration through `env` (normally `std::env::var`).
    pub fn from_lookup(
        env: impl Fn(&str) -> Option<String>,
        cpus: usize,
    ) -> Result<Config, ConfigError> {
        let v = Vars(|var: &'static str| env(var).filter(|v| !v.is_empty()));
        let (ms, s) = (Duration::from_millis, Duration::from_secs);
        Ok(Config {
            host: v.or("HOST", Ipv4Addr::UNSPECIFIED.into(), IP, parse_ip)?,
            port: v.or(
                "PORT",
                8080,
                "a port number 0-65535",
                number_in(0..=u16::MAX),
            )?,
            workers: v.number("WORKERS", (4 * cpus).max(4), 1..=1024)?,
            service_name: v.0("JAEGER_SERVICE_NAME").unwrap_or_else(|| "myhelloworld".into()),
            agent_host: v.or(
                "JAEGER_AGENT_HOST",
                "localhost".into(),
                AGENT_HOST,
                parse_agent_host,
            )?,
            agent_port: v.or(
                "JAEGER_AGENT_PORT",
                6831,
                "a port number 1-65535",
                number_in(1..=u16::MAX),
            )?,
            sampler: parse_sampler(v.0("JAEGER_SAMPLER_TYPE"), v.0("JAEGER_SAMPLER_PARAM"))?,
            tags: v.or("JAEGER_TAGS", Vec::new(), TAGS, |t| parse_tags(t, &env))?,
            max_queue_size: v.number("JAEGER_REPORTER_MAX_QUEUE_SIZE", 4096, 1..=1_000_000)?,
            flush_interval: v.duration("JAEGER_REPORTER_FLUSH_INTERVAL", s(1), ms(1)..=s(3600))?,
            log_spans: v.or("JAEGER_REPORTER_LOG_SPANS", false, BOOL, parse_bool)?,
            disabled: v.or("JAEGER_DISABLED", false, BOOL, parse_bool)?,
            shared_rpc_span: v.or("ZIPKIN_SHARED_RPC_SPAN", false, BOOL, parse_bool)?,
            propagation: v.or(
                "JAEGER_PROPAGATION",
                Formats::default(),
                PROPAGATION,
                Formats::parse,
            )?,
            downstream_url: v.or("DOWNSTREAM_URL", None, URL, |u| Url::parse(u).map(Some))?,
            downstream_timeout: v.duration("DOWNSTREAM_TIMEOUT", s(2), ms(1)..=s(300))?,
            connections: Limits {
                max_connections: v.number("HTTP_MAX_CONNECTIONS", 512, 1..=100_000)?,
                idle_timeout: v.duration("HTTP_IDLE_TIMEOUT", s(3900), ms(100)..=s(86_400))?,
                request_timeout: v.duration("HTTP_REQUEST_TIMEOUT", s(30), ms(100)..=s(3600))?,
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
                accepted: "a duration shorter than HTTP_REQUEST_TIMEOUT".into(),
            });
        }
        Ok(self)
    }
}

/// The variables, read through a lookup that treats empty as unset.
struct Vars<G>(G);

impl<G: Fn(&'static str) -> Option<String>> Vars<G> {
    /// `parse` of the variable's value, or `default` when it is unset.
    fn or<T>(
        &self,
        var: &'static str,
        default: T,
        accepted: impl Into<Cow<'static, str>>,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        match self.0(var) {
            None => Ok(default),
            Some(value) => parse(value.trim()).ok_or(ConfigError {
                var,
                value,
                accepted: accepted.into(),
            }),
        }
    }

    /// A whole number within `range`, or `default`.
    fn number<T>(
        &self,
        var: &'static str,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display,
    {
        let accepted = format!("a whole number {}-{}", range.start(), range.end());
        self.or(var, default, accepted, number_in(range))
    }

    /// A Go duration within `range`, or `default`.
    fn duration(
        &self,
        var: &'static str,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let accepted = format!(
            "a Go duration from {} to {}, such as {}",
            go_duration(*range.start()),
            go_duration(*range.end()),
            go_duration(default)
        );
        self.or(var, default, accepted, move |v| {
            parse_go_duration(v).filter(|d| range.contains(d))
        })
    }
}

/// A number within `range`.
fn number_in<T: FromStr + PartialOrd>(range: RangeInclusive<T>) -> impl Fn(&str) -> Option<T> {
    move |v| v.parse().ok().filter(|n| range.contains(n))
}

fn parse_sampler(
    kind: Option<String>,
    param: Option<String>,
) -> Result<SamplerConfig, ConfigError> {
    let kind = kind.unwrap_or_else(|| "const".into());
    let param_error = |accepted: &'static str| ConfigError {
        var: "JAEGER_SAMPLER_PARAM",
        value: param.clone().unwrap_or_default(),
        accepted: accepted.into(),
    };
    let number = param.as_deref().map(|p| p.trim().parse::<f64>());
    match kind.trim() {
        // As jaeger-client-go's `SamplerConfig.NewSampler`: `NewConstSampler(sc.Param != 0)`.
        "const" => match number {
            None => Ok(SamplerConfig::Const(true)),
            Some(Ok(n)) => Ok(SamplerConfig::Const(n != 0.0)),
            _ => Err(param_error(
                "a number for the const sampler: 0 off, any other on",
            )),
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
            accepted: "const, probabilistic or ratelimiting".into(),
        }),
    }
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
fn parse_bool(v: &str) -> Option<bool> {
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
fn parse_go_duration(s: &str) -> Option<Duration> {
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

/// `d` as a Go duration, shortest form (`1h5m`, `30s`, `100ms`): whole milliseconds below a
/// second, whole seconds above (what the bounds and defaults here are).
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    [(secs / 3600, "h"), (secs / 60 % 60, "m"), (secs % 60, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
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
            // Any number, non-zero on, as jaeger-client-go.
            ("const", Some("0.5"), SamplerConfig::Const(true)),
            ("const", Some("-1"), SamplerConfig::Const(true)),
            ("const", Some("0.0"), SamplerConfig::Const(false)),
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
            (&[("JAEGER_SAMPLER_PARAM", "on")], "JAEGER_SAMPLER_PARAM"),
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

    /// The accepted ranges are said from the ranges used.
    #[test]
    fn errors_say_the_range_accepted() {
        let cases = [
            ("WORKERS", "0", "a whole number 1-1024"),
            (
                "JAEGER_REPORTER_FLUSH_INTERVAL",
                "2h",
                "a Go duration from 1ms to 1h, such as 1s",
            ),
            (
                "HTTP_IDLE_TIMEOUT",
                "1ms",
                "a Go duration from 100ms to 24h, such as 1h5m",
            ),
            ("JAEGER_AGENT_PORT", "0", "a port number 1-65535"),
        ];
        for (var, value, accepted) in cases {
            assert_eq!(config(&[(var, value)]).unwrap_err().accepted, accepted);
        }
    }

    #[test]
    fn go_durations_written_read_back() {
        for (d, text) in [
            (Duration::from_millis(1), "1ms"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(3900), "1h5m"),
            (Duration::from_secs(86_400), "24h"),
            (Duration::from_secs(3661), "1h1m1s"),
        ] {
            assert_eq!(go_duration(d), text);
            assert_eq!(parse_go_duration(text), Some(d));
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

    /// `--help`'s variables and their defaults (the last `[…]` of each entry), in order.
    fn help_defaults() -> Vec<(String, String)> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in HELP
            .lines()
            .skip_while(|l| !l.starts_with("Configuration"))
            .skip(1)
        {
            match line.strip_prefix("  ") {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_uppercase()) => {
                    let (var, text) = rest.split_once(' ').unwrap_or((rest, ""));
                    entries.push((var.to_owned(), text.trim().to_owned()));
                }
                Some(more) if !entries.is_empty() => {
                    let text = &mut entries.last_mut().unwrap().1;
                    text.push(' ');
                    text.push_str(more.trim());
                }
                _ => break,
            }
        }
        entries
            .into_iter()
            .map(|(var, text)| {
                let default = text
                    .strip_suffix(']')
                    .and_then(|t| t.rsplit_once('['))
                    .unwrap_or_else(|| panic!("{var}: no [default] in {text:?}"))
                    .1;
                (var, default.to_owned())
            })
            .collect()
    }

    /// `--help` and README's configuration table list the same variables, in the same order,
    /// with the same defaults; and a default written back is the default read.
    #[test]
    fn help_and_readme_agree_on_every_default() {
        let help = help_defaults();
        let readme: Vec<(String, String)> = crate::readme::table("Configuration")
            .into_iter()
            .map(|row| (row[0].clone(), row[1].clone()))
            .collect();
        assert_eq!(help, readme);
        // Defaults that are not a value of the variable itself.
        let described = [
            "WORKERS",
            "JAEGER_SAMPLER_PARAM",
            "JAEGER_TAGS",
            "DOWNSTREAM_URL",
            "RUST_LOG",
        ];
        let defaults = config(&[]).unwrap();
        for (var, default) in help
            .iter()
            .filter(|(v, _)| !described.contains(&v.as_str()))
        {
            assert_eq!(
                config(&[(var, default)]),
                Ok(defaults.clone()),
                "{var}={default}"
            );
        }
        assert_eq!(help.len(), 21, "{help:?}");
    }
}
