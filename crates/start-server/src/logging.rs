//! start_server's log: each event's message on its own line on stderr, with
//! no time, level or target, so the lines are byte for byte Perl's
//! (`starting new worker 1234`) and go wherever stderr goes (`--log-file`).
//!
//! A small `tracing` subscriber instead of `tracing-subscriber`'s formatter:
//! start_server stays resident for the life of a service, and this keeps its
//! footprint small (BENCHMARKS.md, "start_server").

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Installs the subscriber for the whole process.
pub(crate) fn init() {
    let _ = tracing::subscriber::set_global_default(PlainLines);
}

struct PlainLines;

struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for PlainLines {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::INFO
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        message.0.push('\n');
        // One write per line, so lines from start_server and its workers,
        // which share the descriptor, do not interleave mid-line.
        let _ = std::io::stderr().lock().write_all(message.0.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
