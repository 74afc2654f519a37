//! `myelin-net` binary: a thin shell over the [`myelin_net`] library.

fn main() {
    eprintln!("myelin-net: not implemented yet");
    std::process::exit(1);
}
