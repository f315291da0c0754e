//! The `parley` binary.

fn main() -> std::process::ExitCode {
    parley::main_with_args()
}
