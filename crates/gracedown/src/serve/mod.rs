//! Serving HTTP/1.1 (with upgrades), h2c and TLS (ALPN) on listening
//! sockets, with the drain rules that make a restart lose nothing.
//!
//! A [`Server`] takes any tower service on [`RequestBody`] requests: an axum
//! `Router`, a `tower::ServiceBuilder` stack, or a closure through
//! [`service_fn`]. Every request carries [`ConnectionInfo`] and
//! [`crate::shutdown::Draining`] in its extensions.

mod accept;
mod app;
mod body;
mod conn;
mod framing;
mod info;
mod io;
mod link;
mod options;
mod server;
mod service;
mod service_fn;
mod shared;
mod streams;
mod trim;

#[cfg(feature = "fuzzing")]
pub(crate) use framing::{Finding, Framing};

pub use app::{
    AsMakeService, AsService, BoxError, HttpService, IntoApp, MakeService, ResponseBody,
    SharedService,
};
pub use body::{BodyError, RequestBody};
pub use info::ConnectionInfo;
pub use options::{Timeouts, Tuning};
pub use server::Serve;
pub use server::Server;
pub use service_fn::{ServiceFn, service_fn};
