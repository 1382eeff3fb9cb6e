//! The `dnrg` command: the explorer (`dnrg`, `dnrg tui`) and batch runs (`dnrg run`).

mod cli;
mod tui;

fn main() -> std::process::ExitCode {
    cli::main()
}
