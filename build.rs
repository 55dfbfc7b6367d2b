//! Generates the man page and shell completions from the clap definition, so
//! they can never drift from what the binary accepts. They land beside the
//! binary in `target/<profile>/assets/` (the build output a package or the
//! SD-card image picks up).

use std::path::{Path, PathBuf};

use clap::CommandFactory;

#[allow(dead_code)]
mod cli {
    include!("src/cli.rs");
}

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=src/cli.rs");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    // OUT_DIR is target/<triple?>/<profile>/build/piha-<hash>/out.
    let profile_dir = out_dir.ancestors().nth(3).unwrap_or(Path::new("."));
    let assets = profile_dir.join("assets");
    std::fs::create_dir_all(&assets)?;

    let mut cmd = cli::Cli::command();
    let mut man = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut man)?;
    std::fs::write(assets.join("piha.1"), man)?;

    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd, "piha", &assets)?;
    }
    Ok(())
}
