fn main() -> std::process::ExitCode {
    bootforge::cli::main()
}
