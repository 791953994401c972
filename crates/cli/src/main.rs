//! `gracedown`: the demo worker (`serve`), the load generator (`bench`), the
//! restart experiment (`experiment`) and an embedded `start-server`. All
//! logic lives in the `gracedown_cli` library.

fn main() -> std::process::ExitCode {
    gracedown_cli::main()
}

/// The `gracedown` binary allocates through jemalloc. An idle keep-alive
/// connection goes dormant and frees hyper's buffers; after a burst of
/// connections, glibc's allocator cannot give back the pages those buffers
/// shared with the connections' long-lived objects (5.7 KB per idle
/// connection, against 1.9 KB with jemalloc, whose size classes keep small
/// long-lived objects apart from buffers; see BENCHMARKS.md). Its background
/// thread purges freed pages after about a second (`.cargo/config.toml`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
