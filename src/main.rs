use clap::Parser;

fn main() {
    let _cli = piha::cli::Cli::parse();
}
