//! `ssm-mla`: the command-line tool. With no arguments it runs the main job: every
//! kernel checked against the CPU path on the default adapter, then a short benchmark table.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
