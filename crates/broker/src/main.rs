//! The `sockbroker` binary: everything lives in the library; see `cli`.
fn main() -> std::process::ExitCode {
    sockbroker::cli::main()
}
