//! The `pricefeed` binary: everything it does is in [`pricefeed::cli`].

fn main() -> std::process::ExitCode {
    pricefeed::cli::dispatch::main()
}
