//! The `portcullis` binary: parse the command line and hand over to the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    portcullis::cli::main(portcullis::cli::Cli::parse())
}
