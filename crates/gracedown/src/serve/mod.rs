//! Serving HTTP/1.1, h2c and TLS (ALPN) on listening sockets, with the drain
//! rules that make a restart lose nothing.

mod conn;
mod io;
mod server;
mod service;

pub use server::Server;
