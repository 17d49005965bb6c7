fn main() -> std::process::ExitCode {
    // SIGPIPE stays ignored (Rust's default): a closed stdout is handled where results are
    // printed, and a socket whose server went away mid-upload must be an error naming the
    // server, not a silent death by signal.
    bootforge::cli::main()
}
