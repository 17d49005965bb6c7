fn main() -> std::process::ExitCode {
    // Die quietly on a closed stdout (`bootforge cache ls | head`) like other Unix tools,
    // instead of panicking in println!.
    // SAFETY: setting a signal disposition to SIG_DFL at start-up, before any threads exist.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    bootforge::cli::main()
}
