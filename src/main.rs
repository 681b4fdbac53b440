fn main() {
    std::process::exit(knockoff::cli::main());
}
