//! `invigil-hub`: see `hub::cmds` for the commands.

fn main() {
    std::process::exit(hub::cmds::main());
}
